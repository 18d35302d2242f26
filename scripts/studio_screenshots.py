"""The README's screenshots of the studio: the page mid-run, and a finished sweep's grid.

  python scripts/studio_screenshots.py [--out docs]

Runs the real server (uvicorn, in a thread, over a temporary jobs directory, the preset's defaults) and drives
the page in headless Chromium (Debian's ``chromium``) through Playwright, as a person would: the sample images
(nst_jax.data: a CC0 photo and this project's own painting), then a sweep of that painting and a second one drawn
here (colour waves, made by this script: MIT like the code) over three style-weight factors.
Writes OUT/studio_running.jpg and OUT/studio_sweep.jpg.
"""

from __future__ import annotations

import argparse
import pathlib
import shutil
import socket
import tempfile
import threading
import time

import numpy as np
from PIL import Image


def waves(h: int = 192, w: int = 256) -> Image.Image:
    """A painting of our own: diagonal colour waves."""
    y, x = np.mgrid[0:h, 0:w] / 40.0
    r = 0.5 + 0.5 * np.sin(x + 0.6 * np.sin(y * 1.7))
    g = 0.5 + 0.5 * np.sin(y * 1.3 + 0.8 * np.cos(x * 0.9))
    b = 0.5 + 0.5 * np.sin((x + y) * 0.8)
    return Image.fromarray((np.stack([r, 0.6 * g + 0.2, b], -1) * 255).astype(np.uint8))


def serve(jobs: pathlib.Path) -> str:
    import uvicorn

    from nst_jax.cli import _common as common
    from nst_jax.studio._app import create_app
    from nst_jax.studio._jobs import Studio

    sock = socket.create_server(("127.0.0.1", 0))
    app = create_app(Studio(jobs, vgg=common.load_vgg("original")))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return f"http://127.0.0.1:{sock.getsockname()[1]}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="docs", help="folder of the screenshots")
    p.add_argument("--size", type=int, default=256, help="the single run's size")
    p.add_argument("--sweep-size", type=int, default=128, help="the sweep's size")
    args = p.parse_args()
    from playwright.sync_api import sync_playwright

    from nst_jax import data

    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = pathlib.Path(tempfile.mkdtemp(prefix="nst_jax_studio_shots_"))
    waves().save(work / "waves.png")
    shutil.copy(data.path("swirls"), work / "swirls.png")
    base = serve(work / "jobs")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 820})
        page.goto(base + "/")
        page.click("#samples")
        page.wait_for_function("() => document.querySelectorAll('#style-drop img').length === 1")
        page.fill("#size", str(args.size))
        page.click("#start")
        # Mid-run: into the last level (the preset's last 40 of 160 steps at 256 px), its preview shown.
        page.wait_for_function("() => { const s = document.getElementById('status').textContent;"
                               " const m = s.match(/step (\\d+) of (\\d+)/); return m && +m[1] > 0.8 * +m[2]; }",
                               timeout=1_800_000, polling=100)
        page.wait_for_function("() => document.getElementById('result').complete")
        page.screenshot(path=str(out / "studio_running.jpg"), type="jpeg", quality=85)
        page.click("#cancel")
        page.wait_for_selector("#result[data-state=cancelled]", state="attached", timeout=600_000)
        # A sweep: two paintings x three style-weight factors, shown as a grid.
        page.set_input_files("#style", [str(work / "swirls.png"), str(work / "waves.png")])
        page.fill("#size", str(args.sweep_size))
        page.fill("#factors", "0.3, 1, 3")
        page.click("#start")
        page.wait_for_selector("#result[data-state=done]", state="attached", timeout=1_800_000)  # (hidden: a grid)
        page.wait_for_function("() => Array.from(document.querySelectorAll('#grid img'))"
                               ".every(i => i.complete && i.naturalWidth > 0)")
        page.screenshot(path=str(out / "studio_sweep.jpg"), type="jpeg", quality=85, full_page=True)
        browser.close()
    for name in ("studio_running.jpg", "studio_sweep.jpg"):
        print(f"wrote {out / name} ({Image.open(out / name).size[0]}x{Image.open(out / name).size[1]})")


if __name__ == "__main__":
    main()
