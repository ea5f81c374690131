"""Scaled accuracy of a model that gives one answer everywhere, on a run's own test set.

    python3 scripts/dev/constant_answer_baseline.py RUN_DIR [RUN_DIR ...]

For each run directory (its config.yaml; summary.json if finished) it rebuilds the test set the
run was scored on (the same task options, lengths, count and data seed) and prints the run's
scaled accuracy beside that of answering each class c every time. Where the answers are not
uniform (mod_arith_brackets with `mult: true`: about 30% are 0) the best constant answer scores
above 0, the chance level the scaled accuracy assumes.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml

from statetrack.experiment.evaluation import answer_shares, scaled_accuracy


def constant_scores(config: dict) -> dict[str, float]:
    """{answer: scaled accuracy of giving it at every labelled position} on the test set of the
    run ``config`` (a run's config.yaml, loaded)."""
    task, shares = answer_shares(config)
    return {task.vocab[t]: scaled_accuracy(a, task.num_classes) for t, a in shares.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path)
    args = parser.parse_args(argv)
    for run in args.runs:
        if not (run / "config.yaml").is_file():
            parser.error(f"{run} has no config.yaml: not a run directory")
        scores = constant_scores(yaml.safe_load((run / "config.yaml").read_text()))
        summary = run / "summary.json"
        own = (f"{json.loads(summary.read_text())['scaled_accuracy']:.4f}" if summary.is_file()
               else "unfinished")
        best = max(scores, key=scores.get)
        cells = ", ".join(f"{c}: {s:+.4f}" for c, s in scores.items())
        print(f"{run}: run {own}; always c: {cells} (best {best}: {scores[best]:+.4f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
