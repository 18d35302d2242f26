"""The studio's JSON API (nst_jax/studio) through Starlette's ASGI test client.

Jobs run the cheapest settings that still test each property: the first VGG layer only (the server's own
options, as a server may set them), 100 steps (one 64 px run takes about a second on 2 cores); every
one-member job of this file has the same shapes and settings (64 px, 100 steps), so after the first one
nothing compiles again.
"""

import io
import json
import pathlib
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("starlette", reason="the studio extra is not installed (pip install -e '.[studio]')")
pytest.importorskip("httpx", reason="Starlette's test client needs httpx")

from starlette.testclient import TestClient  # noqa: E402

from nst_jax import data as samples  # noqa: E402
from nst_jax import files  # noqa: E402
from nst_jax.cli import _common as common  # noqa: E402
from nst_jax.cli import _stylize as cli  # noqa: E402
from nst_jax.studio._app import create_app  # noqa: E402
from nst_jax.studio._jobs import CHECKPOINT, Studio  # noqa: E402

from .conftest import EXAMPLES, script_env  # noqa: E402
from .image_cases import refused_cases  # noqa: E402

EXTRA = ["--content-layer", "relu1_1", "--style-layers", "relu1_1"]
PHOTO = (EXAMPLES / "chelsea.png").read_bytes()
PAINTING = (EXAMPLES / "swirls.png").read_bytes()
CAP = 2_000_000
STEPS = 100
FINISHED = ("done", "failed", "cancelled")


def studio_client(jobs_dir, vgg):
    return TestClient(create_app(Studio(jobs_dir, vgg=vgg, extra=EXTRA), max_upload_bytes=CAP))


def post_job(client, photo=PHOTO, paintings=(PAINTING,), headers=None, **fields):
    uploads = [("content", ("chelsea.png", photo, "image/png"))]
    uploads += [("style", (f"painting{i}.png", p, "image/png")) for i, p in enumerate(paintings)]
    data = {k: [str(x) for x in v] if isinstance(v, list) else str(v) for k, v in fields.items()}
    return client.post("/api/jobs", files=uploads, data=data, headers=headers or {})


def events(client, job_id):
    """Every status the event stream sends, until the job finishes."""
    seen = []
    with client.stream("GET", f"/api/jobs/{job_id}/events") as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        for line in stream.iter_lines():
            if line.startswith("data: "):
                seen.append(json.loads(line[6:]))
    assert seen and seen[-1]["state"] in FINISHED, seen[-1:]
    return seen


def wait_for(client, job_id, predicate, timeout=300):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = client.get(f"/api/jobs/{job_id}").json()
        if predicate(status):
            return status
        time.sleep(0.02)
    raise AssertionError(f"job {job_id} never got there: {status}")


def png(response, tmp_path, name):
    """A PNG answer: its pixels and the run record it carries (read back with the library's reader)."""
    assert response.status_code == 200 and response.headers["content-type"] == "image/png", response.text[:200]
    return png_bytes(response.content, tmp_path, name)


def png_bytes(data, tmp_path, name):
    path = tmp_path / name
    path.write_bytes(data)
    return np.asarray(Image.open(path).convert("RGB")), files.read_record(path)


def command_spec(command, tmp_path, vgg):
    """The spec ``nst-jax`` resolves from a copied command (its --dry-run's): the command line's own parsing
    (with the session's VGG parameters, the shipped ones, instead of decoding them again)."""
    argv = shlex.split(command)
    assert argv[0] == "nst-jax"
    args, given = cli.parse(argv[1:] + ["-o", str(tmp_path / "from_command.png")])
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(common, "load_vgg", lambda choice: vgg)
        return cli.prepare(args, given).spec.to_json()


def test_job_reaches_done_with_its_record(tmp_path, vgg):
    with studio_client(tmp_path / "jobs", vgg) as client:
        answer = post_job(client, size=64, iterations=STEPS, seed=3)
        assert answer.status_code == 201, answer.text
        job_id = answer.json()["id"]
        seen = events(client, job_id)
        done = seen[-1]
        assert done["state"] == "done" and done["step"] == done["total"] == STEPS and done["error"] is None
        steps = [s["step"] for s in seen]
        assert steps == sorted(steps)  # (the stream sends the newest state; fast chunks coalesce)
        assert all(np.isfinite(s["loss"]) for s in seen if s["step"])
        pixels, record = png(client.get(f"/api/jobs/{job_id}/image"), tmp_path, "result.png")
        assert client.get(f"/api/jobs/{job_id}/members/0/image").content == (tmp_path / "result.png").read_bytes()
        assert client.get(f"/api/jobs/{job_id}/members/1/image").status_code == 404
        listed = client.get("/api/jobs").json()
    assert [j["id"] for j in listed] == [job_id]
    # The image carries the run's record, and the copied command resolves to the same run.
    assert record is not None and record["spec"]["seed"] == 3
    assert record["spec"] == command_spec(done["command"], tmp_path, vgg)
    assert record["spec"]["config"]["content_layers"] == ["relu1_1"]
    h, w = record["spec"]["levels"][-1]["shape"]
    assert pixels.shape == (h, w, 3) and max(h, w) == 64
    photo = np.asarray(Image.open(io.BytesIO(PHOTO)).convert("RGB").resize((w, h), Image.LANCZOS), np.float32)
    assert np.abs(pixels - photo).mean() > 5  # it painted


def test_sweep_members_and_carry_on(tmp_path, vgg):
    with studio_client(tmp_path / "jobs", vgg) as client:
        answer = post_job(client, size=48, iterations=STEPS, style_weight_factor="0.5, 2")
        assert answer.status_code == 201, answer.text
        job_id = answer.json()["id"]
        done = events(client, job_id)[-1]
        assert done["state"] == "done" and done["sweep"] and done["members"] == 2, done
        assert [label["factor"] for label in done["labels"]] == [0.5, 2.0]
        members = [png(client.get(f"/api/jobs/{job_id}/members/{k}/image"), tmp_path, f"m{k}.png") for k in (0, 1)]
        assert client.get(f"/api/jobs/{job_id}/members/2/image").status_code == 404
        assert client.get(f"/api/jobs/{job_id}/image").status_code == 404  # a sweep's images are its members'
        # Carrying member 1 on: a new one-member job whose spec is member 1's (its factor), at another size.
        carried = client.post(f"/api/jobs/{job_id}/members/1/carry", data={"size": "64"})
        assert carried.status_code == 201, carried.text
        status = client.delete(f"/api/jobs/{carried.json()['id']}").json()
        assert client.post(f"/api/jobs/{job_id}/members/7/carry", data={"size": "96"}).status_code == 404
    (image0, record0), (image1, record1) = members
    betas = [[level["weights"]["style"] for level in r["spec"]["levels"]] for r in (record0, record1)]
    np.testing.assert_allclose(np.asarray(betas[1]) / np.asarray(betas[0]), 4.0, rtol=1e-6)
    assert np.abs(image0.astype(float) - image1).mean() > 1  # the factors made different images
    for k, record in enumerate((record0, record1)):  # each member's command makes that member alone
        assert record["spec"] == command_spec(done["commands"][k], tmp_path, vgg)
    assert status["request"]["factors"] == [2.0] and status["request"]["size"] == 64 and not status["sweep"]
    carried_spec = command_spec(status["command"], tmp_path, vgg)
    assert carried_spec["seed"] == record1["spec"]["seed"] and max(carried_spec["levels"][-1]["shape"]) == 64
    photo, painting = shlex.split(status["command"])[1:3]  # its inputs are the sweep's, copied
    assert pathlib.Path(photo).read_bytes() == PHOTO and pathlib.Path(painting).read_bytes() == PAINTING


def test_cancel_running_and_queued(tmp_path, vgg):
    with studio_client(tmp_path / "jobs", vgg) as client:
        running = post_job(client, size=64, iterations=STEPS).json()["id"]
        queued = post_job(client, size=64, iterations=STEPS).json()["id"]
        wait_for(client, running, lambda s: s["step"] > 0)
        assert client.get(f"/api/jobs/{queued}").json()["state"] == "queued"
        assert client.delete(f"/api/jobs/{queued}").json()["state"] == "cancelled"  # at once
        client.delete(f"/api/jobs/{running}")
        last = events(client, running)[-1]
        assert last["state"] == "cancelled" and last["step"] < STEPS
        assert client.delete(f"/api/jobs/{running}").json()["state"] == "cancelled"  # again: nothing changes
    folder = tmp_path / "jobs" / running
    assert not (folder / "result.png").exists() and not (folder / CHECKPOINT).exists()
    assert json.loads((folder / "job.json").read_text())["state"] == "cancelled"


def test_hostile_requests(tmp_path, vgg):
    jobs = tmp_path / "jobs"
    cases = refused_cases(tmp_path)
    with studio_client(jobs, vgg) as client:
        # Past the byte cap: refused from Content-Length, and counted as it arrives when none is sent.
        big = post_job(client, photo=b"\0" * (CAP + 1))
        assert big.status_code == 413 and "bytes" in big.json()["error"]

        def chunks():
            yield b"--x\r\nContent-Disposition: form-data; name=\"content\"; filename=\"a.png\"\r\n\r\n"
            for _ in range(CAP // 65536 + 2):
                yield b"\0" * 65536

        chunked = client.post("/api/jobs", content=chunks(),
                              headers={"content-type": "multipart/form-data; boundary=x"})
        assert chunked.status_code == 413, chunked.text
        # Every file the command line refuses, refused as an upload (4xx, naming the upload, never a server path).
        for name, (path, words) in cases.items():
            if name in ("missing", "directory"):
                continue
            for role in ("photo", "painting"):
                data = path.read_bytes()
                answer = post_job(client, size=64, **({"photo": data} if role == "photo" else {"paintings": (data,)}))
                message = answer.json()["error"]
                assert answer.status_code == 400 and words in message and role in message, (name, role, message)
                assert str(jobs) not in message
        bad_fields = {
            "size": ({"size": "abc"}, "integer"), "small size": ({"size": 8}, "size"),
            "preset": ({"preset": "loud"}, "preset"), "colour": ({"preserve_colour": "rgb"}, "preserve_colour"),
            "nan factor": ({"style_weight_factor": "nan"}, "finite"), "negative": ({"style_weight_factor": -1}, ">= 0"),
            "huge seed": ({"seed": 2**70}, "seed"), "iterations": ({"iterations": 0}, "iterations"),
            "unknown": ({"colour": "none"}, "unknown field"), "twice": ({"size": ["64", "96"]}, "2 times"),
            "too many": ({"style_weight_factor": " ".join(["1"] * 40)}, "members"),
        }
        for name, (fields, words) in bad_fields.items():
            answer = post_job(client, **fields)
            assert answer.status_code == 400 and words in answer.json()["error"], (name, answer.text)
        no_photo = client.post("/api/jobs", files=[("style", ("s.png", PAINTING, "image/png"))])
        assert no_photo.status_code == 400 and "content" in no_photo.json()["error"]
        # Another site's page cannot start or cancel jobs through the user's browser.
        for headers in ({"Origin": "http://evil.example"}, {"Origin": "null"}, {"Sec-Fetch-Site": "cross-site"}):
            answer = post_job(client, size=64, headers=headers)
            assert answer.status_code == 403, headers
        # Unknown or malformed ids, and names that look like paths.
        for path in ("/api/jobs/" + "0" * 32, "/api/jobs/nothex", "/api/jobs/..%2F..%2Fetc%2Fpasswd/image",
                     "/api/jobs/" + "0" * 32 + "/events", "/api/samples/..%2F__init__.py"):
            answer = client.get(path)
            assert answer.status_code == 404 and "error" in answer.json(), path
        assert client.delete("/api/jobs/" + "0" * 32).status_code == 404
        assert client.get("/api/jobs").json() == []  # the server is up, and nothing was queued
        for name in ("chelsea", "swirls"):  # the page's sample images: the package's
            assert client.get(f"/api/samples/{name}.png").content == samples.path(name).read_bytes()
        assert client.get("/").status_code == 200 and "<title>nst-jax studio</title>" in client.get("/").text
    assert list(jobs.iterdir()) == []  # refused requests left nothing behind


def test_restart_resumes_and_a_failing_job_keeps_the_server_up(tmp_path, vgg):
    jobs = tmp_path / "jobs"
    with studio_client(jobs, vgg) as client:
        stopped = post_job(client, size=64, iterations=STEPS).json()["id"]
        broken = post_job(client, size=64, iterations=STEPS).json()["id"]
        wait_for(client, stopped, lambda s: s["step"] >= 10)
    # Leaving the client stops the app, as SIGINT does the server: the running job checkpoints, both stay queued.
    folder = jobs / stopped
    assert json.loads((folder / "job.json").read_text())["state"] == "queued"
    assert (folder / CHECKPOINT).is_file()
    checkpoint_step = files.load_checkpoint(folder / CHECKPOINT).step
    assert 10 <= checkpoint_step < STEPS
    (jobs / broken / "photo.img").write_bytes(b"no longer an image")  # the next start cannot load this job
    _, preview = png_bytes(Studio(jobs, vgg=vgg, extra=EXTRA).image(stopped), tmp_path, "preview.png")
    with studio_client(jobs, vgg) as client:
        listed = {j["id"]: j["state"] for j in client.get("/api/jobs").json()}
        assert listed == {stopped: listed[stopped], broken: listed[broken]}
        resumed = events(client, stopped)[-1]
        failed = events(client, broken)[-1]
        fresh = post_job(client, size=64, iterations=STEPS).json()["id"]  # the same run, uninterrupted
        assert events(client, fresh)[-1]["state"] == "done"
        resumed_image, _ = png(client.get(f"/api/jobs/{stopped}/image"), tmp_path, "resumed.png")
        fresh_image, _ = png(client.get(f"/api/jobs/{fresh}/image"), tmp_path, "fresh.png")
    assert preview["step"] == checkpoint_step  # the preview of the stopped run, carrying its record and step
    assert resumed["state"] == "done" and resumed["resumed_at"] == checkpoint_step
    assert failed["state"] == "failed" and "not an image" in failed["error"]
    np.testing.assert_array_equal(resumed_image, fresh_image)  # resuming ends where the whole run does
    again = Studio(jobs, vgg=vgg, extra=EXTRA)  # finished jobs stay listed, with their results, and queue nothing
    assert {job.id: job.state for job in again.listed()} == {stopped: "done", broken: "failed", fresh: "done"}
    assert not again.queue and again.image(stopped) == (jobs / stopped / "result.png").read_bytes()


@pytest.mark.slow  # a fresh process: importing JAX and decoding the VGG file are most of its 5 to 25 s
def test_serve_prints_its_url_and_stops_cleanly_on_sigint(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "nst_jax.cli._stylize", "serve", "--port", "0", "--jobs-dir",
                             str(tmp_path / "jobs")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=script_env())
    try:
        line = proc.stdout.readline()
        url = re.search(r"http://127\.0\.0\.1:\d+/", line).group(0)
        with urllib.request.urlopen(url + "api/jobs", timeout=30) as answer:
            assert json.loads(answer.read()) == []
        # A name rebound to the loopback (another site's page reaching this server) is refused.
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(urllib.request.Request(url + "api/jobs", headers={"Host": "evil.example"}))
        assert refused.value.code == 400
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert out.strip().endswith("stopped") and "Traceback" not in err, (out, err)


def test_serve_refuses_a_port_in_use_in_one_line(capsys):
    with socket.create_server(("127.0.0.1", 0)) as busy:
        code = cli.main(["serve", "--port", str(busy.getsockname()[1])])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: cannot listen on 127.0.0.1:") and err.count("\n") == 1, err


def test_a_loopback_server_answers_loopback_hosts_only(tmp_path, vgg):
    """IPv6 loopback included (``[::1]:8765``, any port, any spelling of ::1); any other name or address, and a
    malformed header, is refused, so a page of another site cannot reach it by rebinding a name to 127.0.0.1."""
    from nst_jax.studio._serve import LOOPBACK_NAMES

    client = TestClient(create_app(Studio(tmp_path / "jobs", vgg=vgg, extra=EXTRA), trusted_hosts=LOOPBACK_NAMES))
    for host in ("127.0.0.1:8765", "localhost:8765", "LOCALHOST", "[::1]:8765", "[::1]", "[0:0:0:0:0:0:0:1]:80"):
        answer = client.get("/api/jobs", headers={"Host": host})
        assert answer.status_code == 200 and answer.json() == [], host
    for host in ("evil.example", "evil.example:8765", "localhost.evil.example", "127.0.0.2", "[::2]:8765",
                 "[::ffff:127.0.0.1]", "::1", "[::1", "[::1]:8765:1", "[nope]:1", "", "user@localhost"):
        answer = client.get("/api/jobs", headers={"Host": host})
        assert answer.status_code == 400 and "Host" in answer.json()["error"], host


def test_only_loopback_addresses_count_as_local():
    from nst_jax.studio._serve import is_loopback

    assert all(map(is_loopback, ("127.0.0.1", "127.3.2.1", "::1", "localhost")))
    assert not any(map(is_loopback, ("0.0.0.0", "::", "192.168.1.20", "example.com", "localhost.evil.example")))
