"""scripts/dev/run_digest.py: the per-run rows of the results READMEs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from repo_scripts import load_script

digest = load_script("scripts/dev/run_digest.py").digest


def write_run(run: Path, rows: list[tuple[int, int, float]], metrics: list[dict]) -> None:
    run.mkdir(parents=True)
    (run / "summary.json").write_text(json.dumps({"scaled_accuracy": 0.5,
                                                  "final_train_loss": 1e-3}))
    lines = ["length,n,accuracy,scaled_accuracy"]
    lines += [f"{length},{n},{acc},{2 * acc - 1}" for length, n, acc in rows]
    (run / "eval.csv").write_text("\n".join(lines) + "\n")
    (run / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in metrics))


def test_first_length_under_0_9_the_weighted_mean_past_a_length_and_the_last_training_window(
    tmp_path: Path,
) -> None:
    run = tmp_path / "parity" / "deltanet" / "seed=0"
    write_run(run, [(40, 10, 1.0), (99, 10, 0.95), (100, 10, 0.85), (101, 30, 0.6),
                    (150, 10, 1.0)],
              [{"step": 100, "loss": 0.5, "accuracy": 0.7},
               {"step": 200, "loss": 0.1, "accuracy": 0.99, "val_accuracy": 0.3}])
    row = digest(run, above=100)
    assert row["first_under"] == 100  # 0.85 at 100, though 150 is back at 1.0
    assert row["mean_above"] == pytest.approx((30 * 0.6 + 10 * 1.0) / 40)  # 101 and 150 only
    assert row["train_acc"] == 0.99
    assert (row["scaled"], row["loss"]) == (0.5, 1e-3)


def test_a_run_that_never_falls_under_0_9_has_no_first_length(tmp_path: Path) -> None:
    run = tmp_path / "run"
    write_run(run, [(40, 5, 0.95), (200, 5, 0.91)], [])
    row = digest(run, above=100)
    assert row["first_under"] is None and row["train_acc"] is None
    assert row["mean_above"] == pytest.approx(0.91)


def test_an_unfinished_run_is_refused(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    with pytest.raises(ValueError, match="not a finished run"):
        digest(tmp_path / "run", above=100)
