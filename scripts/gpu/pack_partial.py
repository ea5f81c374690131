"""Pack the newest checkpoints of a sweep's unfinished runs, so a later device session resumes
them instead of starting over (a machine goes back with everything on it).

    PYTHONPATH=src python3 scripts/gpu/pack_partial.py RUNS_ROOT OUT_DIR \
        [--limit-mib 56] [--piece-mib 15]

Runs with a complete checkpoint and no summary.json go in, most trained first, until the limit
(at most 8 files of 16 MiB come back from a device call); each run brings its config.yaml,
metrics.jsonl and checkpoint (or checkpoint.old, if a swap was cut short). The tar is written
to OUT_DIR as pieces partial.tar.part00, part01, ...; `cat partial.tar.part* | tar -x` restores
the run directories under the root's name.
"""

from __future__ import annotations

import argparse
import io
import json
import tarfile
from pathlib import Path

from statetrack.experiment.checkpoint import STATE_FILE, checkpoint_dir

MIB = 1 << 20


def partial_runs(root: Path) -> list[tuple[Path, Path, int]]:
    """(run, checkpoint, step) of every unfinished run with a checkpoint, most trained first."""
    found = []
    for config in root.rglob("config.yaml"):
        run = config.parent
        if (run / "summary.json").exists():
            continue
        checkpoint = checkpoint_dir(run)  # checkpoint.old if a swap was cut short
        if checkpoint is not None:
            step = int(json.loads((checkpoint / STATE_FILE).read_text())["step"])
            found.append((run, checkpoint, step))
    return sorted(found, key=lambda r: -r[2])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--limit-mib", type=float, default=56.0)
    parser.add_argument("--piece-mib", type=float, default=15.0)
    args = parser.parse_args()
    buffer, total, packed = io.BytesIO(), 0, []
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for run, checkpoint, step in partial_runs(args.root):
            files = [run / "config.yaml", run / "metrics.jsonl", *sorted(checkpoint.iterdir())]
            size = sum(f.stat().st_size for f in files if f.is_file()) + 4096 * len(files)
            if total + size > args.limit_mib * MIB:
                print(f"left out (over {args.limit_mib} MiB): {run.relative_to(args.root)}")
                continue
            for f in files:
                if f.is_file():
                    tar.add(f, arcname=str(f.relative_to(args.root.parent)))
            total += size
            packed.append(f"{run.relative_to(args.root)} @ step {step}")
    data = buffer.getvalue()
    piece = int(args.piece_mib * MIB)
    args.out.mkdir(parents=True, exist_ok=True)
    for i in range(0, len(data), piece) if packed else []:
        (args.out / f"partial.tar.part{i // piece:02d}").write_bytes(data[i:i + piece])
    print(f"packed {len(packed)} unfinished runs ({len(data) / MIB:.1f} MiB):")
    for line in packed:
        print(f"  {line}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
