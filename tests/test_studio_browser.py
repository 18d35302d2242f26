"""The studio's page in a real browser: headless Chromium (Debian's ``chromium``) driven by Playwright.

The server is the real one (uvicorn, in a thread of this process, over a jobs directory of the test);
its jobs take the test's cheap layer choice, as in tests/test_studio.py.
"""

import shutil
import socket
import threading
import time

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("starlette", reason="the studio extra is not installed (pip install -e '.[studio]')")
uvicorn = pytest.importorskip("uvicorn", reason="the studio extra is not installed (pip install -e '.[studio]')")
sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed (the test extra has it)")

from nst_jax.studio._app import create_app  # noqa: E402
from nst_jax.studio._jobs import Studio  # noqa: E402

from .conftest import EXAMPLES  # noqa: E402
from .test_studio import EXTRA, STEPS  # noqa: E402

CHROMIUM = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)


@pytest.fixture
def server(tmp_path, vgg):
    """The studio on a free loopback port: its base URL."""
    sock = socket.create_server(("127.0.0.1", 0))
    app = create_app(Studio(tmp_path / "jobs", vgg=vgg, extra=EXTRA), trusted_hosts=["127.0.0.1"])
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=2))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    server.should_exit = True
    thread.join(30)


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium executable (.ci/run installs Debian's chromium with apt-get; "
                                             "it could not be installed here)")
def test_page_paints_a_photo(server, tmp_path):
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 800})
            errors = []
            page.on("pageerror", lambda err: errors.append(str(err)))
            page.goto(server + "/")
            page.set_input_files("#photo", str(EXAMPLES / "chelsea.png"))
            page.set_input_files("#style", str(EXAMPLES / "swirls.png"))
            page.fill("#size", "64")
            page.fill("#iterations", str(STEPS))
            page.click("#start")
            page.wait_for_selector("#result[data-state=done]", timeout=60_000)
            page.wait_for_function("() => { const i = document.getElementById('result');"
                                   " return i.complete && i.naturalWidth > 0 && !i.hidden; }", timeout=10_000)
            # What the <img> shows, read back through a canvas, is the job's result as the API serves it.
            shown = page.evaluate("""() => {
                const img = document.getElementById('result'), c = document.createElement('canvas');
                c.width = img.naturalWidth; c.height = img.naturalHeight;
                const ctx = c.getContext('2d'); ctx.drawImage(img, 0, 0);
                return {w: c.width, h: c.height, src: img.src,
                        data: Array.from(ctx.getImageData(0, 0, c.width, c.height).data)};
            }""")
            status = page.text_content("#status")
            download = page.get_attribute("#download", "href")
            page.screenshot(path=str(tmp_path / "studio.png"), full_page=True)
        finally:
            browser.close()
    assert not errors, errors
    assert status.startswith("done") and f"step {STEPS} of {STEPS}" in status, status
    job_id = download.split("/")[3]
    result = tmp_path / "result.png"
    import urllib.request

    with urllib.request.urlopen(f"{server}/api/jobs/{job_id}/image") as answer:
        result.write_bytes(answer.read())
    want = np.asarray(Image.open(result).convert("RGB"), np.int16)
    got = np.asarray(shown["data"], np.int16).reshape(shown["h"], shown["w"], 4)[..., :3]
    assert got.shape == want.shape and max(want.shape[:2]) == 64
    assert np.abs(got - want).max() <= 2  # the same pixels (up to the browser's colour handling)
    assert (tmp_path / "studio.png").stat().st_size > 10_000
