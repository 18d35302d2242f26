"""Multi-controller JAX: sweeps over 2 local processes x 2 CPU devices (gloo collectives) equal one process's.

Each child process calls ``jax.distributed.initialize`` with a coordinator on 127.0.0.1, so the
default member mesh spans the 4 devices of both processes; every process must see every member's
results, and only process 0 of the sweep CLI writes files.
"""

import json
import pathlib
import socket
import subprocess
import sys
import textwrap
import time

import jax
import numpy as np
import pytest
from PIL import Image

from nst_jax import StylizeConfig, make_weights, stack_weights, sweep
from nst_jax.host import member_mesh

from .conftest import EXAMPLES, host_devices_env, smooth_image

ROOT = pathlib.Path(__file__).resolve().parent.parent
CONTENT = smooth_image(32, 32, seed=1)
STYLE = smooth_image(32, 32, seed=2)
LAYERS = dict(content_layers=("relu2_1",), style_layers=("relu1_1", "relu2_1"))
TIMEOUT = 300  # seconds for a group of processes; the coordinator would wait 300 s for a missing peer


def run_cases(vgg, mesh=None, callback=None) -> dict[str, np.ndarray]:
    """The sweeps compared here, as ``{"case/key": array}``: 6 Adam members (padded to 8 over 4 devices)
    and 3 L-BFGS members (padded to 4: process 1 holds member 2 and a copy)."""
    out = {}
    for name, optimizer, k in (("adam", "adam", 6), ("lbfgs", "lbfgs", 3)):
        config = StylizeConfig(optimizer=optimizer, iterations=4, chunk_size=2, **LAYERS)
        weights = stack_weights([make_weights(config, style_weight=10.0 ** (i % 3), learning_rate=0.05 * (1 + i % 2))
                                 for i in range(k)])
        result = sweep(vgg, weights=weights, seeds=list(range(k)), content=CONTENT, style=STYLE, config=config,
                       mesh=mesh, callback=callback)
        out[f"{name}/images"] = result.images
        out.update({f"{name}/{key}": value for key, value in result.history.items()})
    return out


CHILD = textwrap.dedent("""
    import sys
    import jax

    address, pid, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(address, num_processes=2, process_id=pid)
    assert (jax.device_count(), jax.local_device_count(), jax.process_count(), jax.process_index()) == (4, 2, 2, pid)

    import numpy as np
    from nst_jax import load_vgg19
    from nst_jax._src.driver import to_host
    from tests.test_distributed import run_cases

    seen = []

    def check(progress):
        # The member axis really spans both processes, and the callback can read every member.
        image = progress.state.image
        seen.append((image.is_fully_addressable, sorted({d.process_index for d in image.sharding.device_set}),
                     to_host(progress.image).shape[0] == progress.num_members))

    results = run_cases(load_vgg19(), callback=check)
    assert seen and all(s == (False, [0, 1], True) for s in seen), seen
    np.savez(out, **results)
    print("CHILD_DONE", pid, flush=True)
""")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Processes:
    """Commands started together; :meth:`wait` fails with their stderr if any fails or they time out,
    and any still running when the block ends are killed (a peer left alone would wait for the other)."""

    def __init__(self, logs: pathlib.Path, commands: list[tuple[list[str], dict[str, str]]]):
        self.logs, self.commands, self.procs = logs, commands, []

    def __enter__(self):
        self.logs.mkdir(parents=True, exist_ok=True)
        for i, (argv, env) in enumerate(self.commands):
            with open(self.logs / f"{i}.out", "w") as out, open(self.logs / f"{i}.err", "w") as err:
                self.procs.append(subprocess.Popen([str(a) for a in argv], stdout=out, stderr=err, env=env, cwd=ROOT))
        return self

    def __exit__(self, *exc):
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()

    def wait(self, timeout: float = TIMEOUT) -> list[str]:
        """Every process's stdout once all have exited with 0."""
        deadline = time.monotonic() + timeout
        while any(p.poll() is None for p in self.procs) and time.monotonic() < deadline:
            if any(p.poll() not in (None, 0) for p in self.procs):
                break  # its peers would wait for it until the coordinator's timeout
            time.sleep(0.2)
        codes = [p.poll() for p in self.procs]
        if codes != [0] * len(codes):
            self.__exit__()
            report = "\n".join(f"--- process {i} (exit {code}) stderr:\n{(self.logs / f'{i}.err').read_text()[-4000:]}"
                               for i, code in enumerate(codes))
            raise AssertionError(f"processes did not all succeed (None: still running after {timeout} s):\n{report}")
        return [(self.logs / f"{i}.out").read_text() for i in range(len(self.procs))]


@pytest.mark.slow
def test_sweep_over_two_processes_equals_one_process(vgg, tmp_path):
    address = f"127.0.0.1:{free_port()}"
    env = host_devices_env(2)
    commands = [([sys.executable, "-c", CHILD, address, pid, tmp_path / f"out{pid}.npz"], env) for pid in (0, 1)]
    with Processes(tmp_path / "logs", commands) as procs:
        # The reference, one ordinary process on one device, computed while the children run.
        reference = run_cases(vgg, mesh=member_mesh(jax.devices()[:1]))
        stdout = procs.wait()
    assert [f"CHILD_DONE {pid}" in out for pid, out in enumerate(stdout)] == [True, True]
    results = [dict(np.load(tmp_path / f"out{pid}.npz")) for pid in (0, 1)]
    diffs = {}
    for key, expected in reference.items():
        for pid, result in enumerate(results):
            got = result[key]
            assert got.shape == expected.shape and got.dtype == expected.dtype, (key, pid)
            diffs[f"{key}@{pid}"] = float(np.abs(got.astype(np.float64) - expected).max()) if got.size else 0.0
            if np.issubdtype(expected.dtype, np.integer):  # step counts and evaluation counts: exact
                np.testing.assert_array_equal(got, expected, err_msg=f"{key} process {pid}")
            else:
                np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6, err_msg=f"{key} process {pid}")
    print(f"max |distributed - single| over {len(diffs)} arrays (2 processes): {max(diffs.values())}")
    assert reference["adam/images"].shape == (6, 32, 32, 3) and reference["lbfgs/total"].shape == (3, 3)
    assert np.abs(reference["adam/images"][0] - reference["adam/images"][1]).mean() > 1e-3  # members differ


# scripts/sweep.py as __main__, with JAX's exit-time shutdown barrier cut from 300 s to 5 s and process 0's
# last write delayed by 10 s: a process left waiting at that barrier while process 0 writes would abort (both
# would, with exit code 134) unless the CLI leaves the distributed runtime before writing.
SLOW_WRITER = textwrap.dedent("""
    import functools, runpy, sys, time
    import jax
    import nst_jax._src.figures as figures

    jax.distributed.initialize = functools.partial(jax.distributed.initialize, shutdown_timeout_seconds=5)
    save_json = figures.save_json

    def slow_save_json(*args, **kwargs):
        time.sleep(10)
        save_json(*args, **kwargs)

    figures.save_json = slow_save_json
    sys.argv = sys.argv[1:]
    runpy.run_path(sys.argv[0], run_name="__main__")
""")
SWEEP_ARGS = ["--content", EXAMPLES / "chelsea.png", "--style", EXAMPLES / "swirls.png", "--size", 48,
              "--iterations", 3, "--optimizer", "adam", "--style-weights", "1e1:1e3:3", "--seeds", 0, 1,
              "--style-layers", "relu1_1", "relu2_1", "--content-layer", "relu2_1"]


@pytest.mark.slow
def test_sweep_cli_distributed_writes_once_and_equals_one_process(tmp_path):
    script = [ROOT / "scripts" / "sweep.py", *SWEEP_ARGS]
    address = f"127.0.0.1:{free_port()}"
    # Each process gets its own --output-dir, so a write by process 1 would show.
    commands = [([sys.executable, "-c", SLOW_WRITER, *script, "--output-dir", tmp_path / f"dist{pid}", "--distributed",
                  "--coordinator", address, "--num-processes", 2, "--process-id", pid], host_devices_env(2))
                for pid in (0, 1)]
    commands.append(([sys.executable, *script, "--output-dir", tmp_path / "single"], host_devices_env(None)))
    with Processes(tmp_path / "logs", commands) as procs:
        stdout = procs.wait()
    assert "6 members on 4 devices of 2 processes" in stdout[0]
    assert ["wrote 6 images" in out for out in stdout] == [True, False, True]
    assert not (tmp_path / "dist1").exists()
    expected = {"losses.json", "contact_sheet.png", *(f"member_{i:02d}.png" for i in range(6))}
    written = tmp_path / "dist0"
    assert {p.name for p in written.iterdir()} == expected
    assert {p.name for p in (tmp_path / "single").iterdir()} == expected

    dist, single = (json.loads((tmp_path / d / "losses.json").read_text()) for d in ("dist0", "single"))
    assert (dist["devices"], dist["processes"], single["devices"], single["processes"]) == (4, 2, 1, 1)
    assert len(dist["members"]) == len(single["members"]) == 6
    for i, (a, b) in enumerate(zip(dist["members"], single["members"], strict=True)):
        assert (a["file"], a["seed"], a["style_weight"]) == (b["file"], b["seed"], b["style_weight"])
        got, want = (np.asarray(Image.open(tmp_path / d / a["file"]), np.int16) for d in ("dist0", "single"))
        print(f"member {i}: max |distributed - single| pixel = {np.abs(got - want).max()}, final total "
              f"{a['final']['total']!r} vs {b['final']['total']!r}")
        np.testing.assert_array_equal(got, want, err_msg=a["file"])
        for when in ("initial", "final"):
            np.testing.assert_allclose([a[when][t] for t in sorted(a[when])], [b[when][t] for t in sorted(b[when])],
                                       rtol=1e-6, err_msg=f"member {i} {when}")
        np.testing.assert_allclose(list(a["ratios"].values()), list(b["ratios"].values()), rtol=1e-6)
