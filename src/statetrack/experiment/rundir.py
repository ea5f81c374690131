"""The run directory: everything a run leaves behind, and all that reports ever read.

```
RUN_DIR/
  config.yaml          the fully resolved config
  metrics.jsonl        one JSON line per log step (step, lr, loss, accuracy, …, val_*, code)
  eval.csv             length, n, accuracy, scaled_accuracy of the final evaluation
  summary.json         task, model, seed, accuracy, scaled_accuracy, steps, wall_seconds, …,
                       code: the fingerprints of the code that trained it, in order;
                       eval_code: the one that ran the final evaluation
  checkpoint/          model.safetensors, optimizer.safetensors, state.json (for resume)
  accuracy_by_length.png
```
``summary.json`` is written last, so its presence means the run finished. ``code`` is
``code_fingerprint()`` of the statetrack package that logged a line: a run resumed under changed
code (a GPU sweep spans sessions) names every version that trained it.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import io
import json
import os
from pathlib import Path
from typing import Any

CONFIG = "config.yaml"
METRICS = "metrics.jsonl"
EVAL = "eval.csv"
SUMMARY = "summary.json"
CHECKPOINT = "checkpoint"
PLOT = "accuracy_by_length.png"
EVAL_COLUMNS = ("length", "n", "accuracy", "scaled_accuracy")


def code_fingerprint(root: Path | None = None) -> str:
    """12 hex digits of SHA-256 over the package's Python sources (the statetrack package, or
    ``root``): each file's path relative to the root and its bytes, in path order. It names the
    code without git, which the GPU machine's copy of the sources lacks."""
    return _fingerprint(Path(root) if root is not None else Path(__file__).resolve().parents[1])


@functools.cache
def _fingerprint(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


def code_history(records: list[dict[str, Any]]) -> list[str]:
    """The distinct ``code`` fingerprints of metrics records, in the order they first appear;
    lines logged before fingerprints were recorded count as "unrecorded"."""
    return list(dict.fromkeys(r.get("code", "unrecorded") for r in records))


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write to a temporary file beside ``path``, then rename: readers never see half a file."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_bytes(data.encode() if isinstance(data, str) else data)
    os.replace(tmp, path)


def write_json(path: Path, obj: Any) -> None:
    write_atomic(path, json.dumps(obj, indent=2) + "\n")


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


def append_metrics(run_dir: Path, record: dict[str, Any]) -> None:
    with open(run_dir / METRICS, "a") as f:
        f.write(json.dumps(record) + "\n")


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    path = Path(run_dir) / METRICS
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def truncate_metrics(run_dir: Path, last_step: int) -> None:
    """Drop the lines logged after ``last_step``: a resumed run writes them again."""
    kept = [r for r in read_metrics(run_dir) if r["step"] <= last_step]
    write_atomic(run_dir / METRICS, "".join(json.dumps(r) + "\n" for r in kept))


def write_eval_csv(path: Path, rows: list[dict[str, float | int]]) -> None:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=EVAL_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{row[k]:.6f}" if isinstance(row[k], float) else row[k])
                         for k in EVAL_COLUMNS})
    write_atomic(path, out.getvalue())


def read_eval_csv(path: Path) -> list[dict[str, float | int]]:
    with open(path) as f:
        return [{"length": int(r["length"]), "n": int(r["n"]), "accuracy": float(r["accuracy"]),
                 "scaled_accuracy": float(r["scaled_accuracy"])} for r in csv.DictReader(f)]


def find_run_dirs(paths: list[str | Path]) -> list[Path]:
    """The finished runs (directories holding a summary.json) at or below each path, sorted.

    A path may be a run directory or any root above run directories (a sweep's output)."""
    found: set[Path] = set()
    for p in map(Path, paths):
        if not p.exists():
            raise FileNotFoundError(f"no such run directory or root: {p}")
        if (p / SUMMARY).is_file():
            found.add(p)
        found.update(s.parent for s in p.rglob(SUMMARY) if s.is_file())
    return sorted(found)
