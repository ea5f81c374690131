"""benchmarks/train_step.py's --concurrent mode, on a CPU: copies in separate processes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from repo_scripts import load_script

TINY = ["training.batch_size=4", "training.max_len=8"]


def test_concurrent_copies_each_report_a_rate_and_the_sum_is_theirs(tmp_path: Path) -> None:
    """--concurrent 1 2 runs one copy, then two at once, each in its own process: a record
    per K with K positive rates, summed into total_steps_per_s."""
    bench = load_script("benchmarks/train_step.py")
    out = tmp_path / "records.json"
    args = ["--models", "mamba_neg", "--device", "cpu", "--warmup", "1", "--steps", "3",
            "--concurrent", "1", "2", "--seconds", "0.5", "--out", str(out)]
    for item in TINY:
        args += ["--set", item]
    assert bench.main(args) == 0
    records = [r for r in json.loads(out.read_text()) if r["op"] == "train_step_concurrent"]
    assert [r["k"] for r in records] == [1, 2]
    for r in records:
        assert len(r["steps_per_s"]) == r["k"] and all(v > 0 for v in r["steps_per_s"])
        assert r["total_steps_per_s"] == pytest.approx(sum(r["steps_per_s"]))
        assert r["mps"] is False


def test_a_copy_that_fails_is_an_error_that_shows_why() -> None:
    """A copy whose config is invalid ends the measurement with its own error message, not a
    hang waiting for it to get ready."""
    bench = load_script("benchmarks/train_step.py")
    with pytest.raises(RuntimeError, match="batch_size"):
        bench.concurrent("mamba_neg", "cpu", 2, 1, 0.5, ["training.batch_size=0"], {},
                         timeout=120)


def test_only_concurrent_skips_the_table_of_one_step_alone(tmp_path: Path) -> None:
    """--only-concurrent writes the --concurrent records and no one-step timings, and is a
    usage error without --concurrent."""
    bench = load_script("benchmarks/train_step.py")
    out = tmp_path / "records.json"
    args = ["--models", "mamba_neg", "--device", "cpu", "--warmup", "1", "--concurrent", "1",
            "--seconds", "0.5", "--only-concurrent", "--out", str(out)]
    for item in TINY:
        args += ["--set", item]
    assert bench.main(args) == 0
    assert [r["op"] for r in json.loads(out.read_text())] == ["train_step_concurrent"]
    with pytest.raises(SystemExit):
        bench.main(["--models", "mamba_neg", "--device", "cpu", "--only-concurrent"])


def test_table_from_the_json_is_the_table_the_run_printed(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--table JSON rebuilds, row for row, the table a run printed from the records it wrote;
    a JSON without step records is an error naming the file."""
    bench = load_script("benchmarks/train_step.py")
    out = tmp_path / "records.json"
    args = ["--models", "mamba_neg", "deltanet", "--device", "cpu", "--warmup", "1",
            "--steps", "3", "--out", str(out)]
    for item in TINY:
        args += ["--set", item]
    assert bench.main(args) == 0
    printed = [line for line in capsys.readouterr().out.splitlines() if line.startswith("|")]
    assert len(printed) == 2 + 2
    assert bench.main(["--table", str(out)]) == 0
    assert capsys.readouterr().out.splitlines() == printed
    empty = tmp_path / "empty.json"
    empty.write_text("[]")
    with pytest.raises(SystemExit):
        bench.main(["--table", str(empty)])
    assert str(empty) in capsys.readouterr().err
