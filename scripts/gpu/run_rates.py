"""Training speed of every run under a sweep's root, from the last record of its metrics.jsonl.

    python3 scripts/gpu/run_rates.py ROOT

One line per run (step reached, steps/s over its last logging interval, finished or not), then
the sum of the steps/s of the runs whose last record is within 60 s of the newest one: the
sweep's aggregate throughput at the end of the call.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def main() -> None:
    root = Path(sys.argv[1])
    rows = []
    for path in sorted(root.rglob("metrics.jsonl")):
        lines = path.read_text().splitlines()
        if not lines:
            continue
        last = json.loads(lines[-1])
        done = (path.parent / "summary.json").exists()
        rows.append((path.parent.relative_to(root), last["step"], last["steps_per_second"],
                     done, os.path.getmtime(path)))
    newest = max((r[4] for r in rows), default=0.0)
    live = 0.0
    for run, step, sps, done, mtime in rows:
        recent = not done and newest - mtime < 60
        live += sps if recent else 0.0
        state = "finished" if done else "running" if recent else "stopped"
        print(f"{run}  step {step}  {sps:.0f} steps/s  {state}")
    print(f"aggregate steps/s of the runs still logging: {live:.0f}")


if __name__ == "__main__":
    main()
