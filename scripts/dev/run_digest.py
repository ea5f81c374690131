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
import os
from pathlib import Path

from statetrack.experiment.rundir import EVAL, SUMMARY, read_eval_csv, read_json, read_metrics


def digest(run: Path, above: int) -> dict[str, object]:
    """The row of one finished run directory (ValueError if it has no summary or eval.csv)."""
    if not (run / SUMMARY).is_file() or not (run / EVAL).is_file():
        raise ValueError(f"{run}: not a finished run (summary.json and eval.csv needed)")
    summary = read_json(run / SUMMARY)
    rows = read_eval_csv(run / EVAL)
    first = next((r["length"] for r in rows if r["accuracy"] < 0.9), None)
    far = [r for r in rows if r["length"] > above]
    seqs = sum(r["n"] for r in far)
    # the last training window (a record with loss and accuracy; validation adds val_* to it)
    windows = [r for r in read_metrics(run) if "accuracy" in r and "loss" in r]
    return {
        "scaled": summary["scaled_accuracy"],
        "first_under": first,
        "mean_above": sum(r["n"] * r["accuracy"] for r in far) / seqs if seqs else None,
        "train_acc": windows[-1]["accuracy"] if windows else None,
        "loss": summary.get("final_train_loss"),
    }


def cell(value: float | None, spec: str) -> str:
    return "" if value is None else format(value, spec)


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
        first = "none" if d["first_under"] is None else d["first_under"]
        print(f"| {run.resolve().relative_to(parent)} | {d['scaled']:.3f} | {first} "
              f"| {cell(d['mean_above'], '.3f')} | {cell(d['train_acc'], '.4f')} "
              f"| {cell(d['loss'], '.1e')} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
