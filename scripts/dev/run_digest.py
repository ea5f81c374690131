"""One markdown row per finished run: how far past its training lengths it holds.

    python3 scripts/dev/run_digest.py RUN_DIR [RUN_DIR ...] [--above 100]

Columns: the run (its path under the common parent), the scaled accuracy it was scored with
(summary.json), the first evaluation length whose accuracy is under 0.9, the mean accuracy over
the lengths above ``--above`` weighted by their sequences (eval.csv), the training accuracy of
the last logged window and the final training loss (metrics.jsonl, summary.json). The results
READMEs' per-seed tables are these rows.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
from pathlib import Path


def digest(run: Path, above: int) -> dict[str, object]:
    """The row of one finished run directory (ValueError if it has no summary or eval.csv)."""
    summary_path, eval_path = run / "summary.json", run / "eval.csv"
    if not summary_path.is_file() or not eval_path.is_file():
        raise ValueError(f"{run}: not a finished run (summary.json and eval.csv needed)")
    summary = json.loads(summary_path.read_text())
    with eval_path.open() as f:
        rows = [(int(r["length"]), int(r["n"]), float(r["accuracy"])) for r in csv.DictReader(f)]
    first = next((length for length, _, acc in rows if acc < 0.9), None)
    far = [(n, acc) for length, n, acc in rows if length > above]
    seqs = sum(n for n, _ in far)
    train_acc = None
    metrics = run / "metrics.jsonl"
    if metrics.is_file():
        for line in metrics.read_text().splitlines():
            record = json.loads(line)
            if "accuracy" in record and "loss" in record:  # a training window, not a validation
                train_acc = record["accuracy"]
    return {
        "scaled": summary["scaled_accuracy"],
        "first_under": first,
        "mean_above": sum(n * acc for n, acc in far) / seqs if seqs else None,
        "train_acc": train_acc,
        "loss": summary.get("final_train_loss"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--above", type=int, default=100,
                        help="mean accuracy over the lengths above this (default 100)")
    args = parser.parse_args(argv)
    parent = Path(os.path.commonpath([r.resolve() for r in args.runs]))
    if len(args.runs) == 1:
        parent = parent.parent
    print(f"| run | scaled accuracy | first under 0.9 | mean above {args.above} "
          "| training accuracy | final loss |")
    print("|---|---|---|---|---|---|")
    for run in args.runs:
        try:
            d = digest(run, args.above)
        except ValueError as e:
            parser.error(str(e))
        fmt = lambda v, spec: "" if v is None else format(v, spec)  # noqa: E731
        first = "none" if d["first_under"] is None else d["first_under"]
        print(f"| {run.resolve().relative_to(parent)} | {d['scaled']:.3f} | {first} "
              f"| {fmt(d['mean_above'], '.3f')} | {fmt(d['train_acc'], '.4f')} "
              f"| {fmt(d['loss'], '.1e')} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
