"""The studio's responsiveness: time from pressing start (POST /api/jobs) to the first preview, cold and warm, and
the memory the server holds between jobs.

  python scripts/studio_benchmark.py [--size 256] [--preset balanced]

The real server (uvicorn, in a thread of this process, over a fresh jobs directory) runs the package's sample
photo and painting (nst_jax.data) at --size with the preset's levels. Job 1 starts cold (nothing compiled; the
persistent compilation cache is left off) and runs to the end; job 2 (the same shapes and settings, another seed)
starts warm: it must compile nothing, which the compile log (nst_jax.compilation.CompileStats) counts. The first
preview is the first status whose step is past 0 (the end of the first chunk of compiled steps), and its image
must be served. RSS is this process's resident memory (the client's share is a few MB of urllib), read a second
after a job ends (the worker collects garbage and trims the C heap then: nst_jax.studio._jobs.release_memory).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import tempfile
import threading
import time
import urllib.request
import uuid

from nst_jax import data
from nst_jax.compilation import CompileStats


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        kb = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    return kb / 1024


def multipart(fields: dict[str, str], files: list[tuple[str, str, bytes]]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
             for k, v in fields.items()]
    parts += [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"; filename="{name}"\r\n'
              f"Content-Type: image/png\r\n\r\n".encode() + body + b"\r\n" for k, name, body in files]
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=600) as answer:
        return answer.read()


def start_job(base: str, fields: dict[str, str]) -> str:
    body, kind = multipart(fields, [("content", "chelsea.png", data.path("chelsea").read_bytes()),
                                    ("style", "swirls.png", data.path("swirls").read_bytes())])
    request = urllib.request.Request(base + "/api/jobs", data=body, headers={"Content-Type": kind}, method="POST")
    with urllib.request.urlopen(request, timeout=600) as answer:
        return json.loads(answer.read())["id"]


def timed_job(base: str, fields: dict[str, str]) -> dict[str, float]:
    """Seconds from the POST to the first preview (served) and to the end."""
    t0 = time.perf_counter()
    job_id = start_job(base, fields)
    first = None
    while True:
        status = json.loads(get(f"{base}/api/jobs/{job_id}"))
        if first is None and status["step"] > 0:
            get(f"{base}/api/jobs/{job_id}/image")  # the preview itself is served
            first = time.perf_counter() - t0
            first_step = status["step"]
        if status["state"] in ("done", "failed", "cancelled"):
            if status["state"] != "done":
                raise SystemExit(f"job {job_id} {status['state']}: {status['error']}")
            return {"first_preview_s": first, "first_preview_step": first_step, "done_s": time.perf_counter() - t0,
                    "steps": status["total"]}
        time.sleep(0.02)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--preset", default="balanced")
    args = p.parse_args()
    import jax
    import uvicorn

    from nst_jax.cli import _common as common
    from nst_jax.studio._app import create_app
    from nst_jax.studio._jobs import Studio, release_memory

    # The VGG parameters are loaded at start-up, as nst-jax serve does.
    studio = Studio(tempfile.mkdtemp(prefix="nst_jax_studio_bench_"), vgg=common.load_vgg("original"))
    sock = socket.create_server(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(create_app(studio), log_level="warning"))
    threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    idle = rss_mib()
    fields = {"size": str(args.size), "preset": args.preset}
    with CompileStats() as cold_stats:
        cold = timed_job(base, {**fields, "seed": "0"})
    time.sleep(1)  # the worker releases memory as a job ends
    after_one = rss_mib()
    release_memory()
    trimmed = rss_mib()
    with CompileStats() as warm_stats:
        warm = timed_job(base, {**fields, "seed": "1"})
    after_two = rss_mib()
    server.should_exit = True
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor())
    print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}), {os.cpu_count()} cores of {cpu}; "
          f"load average {os.getloadavg()[0]:.1f} at the end (other processes share the cores)")
    print(f"job: the sample photo and painting, {args.size} px, preset {args.preset}, {cold['steps']} steps; "
          "persistent compilation cache off")
    for name, run, stats in (("cold", cold, cold_stats), ("warm", warm, warm_stats)):
        print(f"{name}: first preview {run['first_preview_s']:.2f} s after the POST (step {run['first_preview_step']}),"
              f" done in {run['done_s']:.1f} s; {stats.summary()}")
    print(f"server RSS: {idle:.0f} MiB idle after start-up, {after_one:.0f} MiB between jobs "
          f"({trimmed:.0f} MiB on releasing memory again), "
          f"{after_two:.0f} MiB after the second")


if __name__ == "__main__":
    main()
