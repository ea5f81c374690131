"""benchmarks/train_step.py's --concurrent mode, on a CPU: copies in separate processes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
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


@pytest.mark.parametrize("compiled", [False, True])
def test_warm_up_meets_a_second_length_before_timing_when_compiled(compiled: bool) -> None:
    """With ``training.compile`` the warm-up's last step takes its batch one column longer
    (pad tokens, no loss), so dynamo's recompile for a second length happens before the
    timing; the steps then go on from the next batch, and the run's batches are its own
    again. Without compile the warm-up is the n steps alone. (The forward here is not
    compiled: only the batches the steps see are checked.)"""
    from statetrack.tasks import NO_LOSS

    bench = load_script("benchmarks/train_step.py")
    run, params, sums = bench.make_run("mamba_neg", "cpu", False, TINY)
    ref = bench.make_run("mamba_neg", "cpu", False, TINY)[0]  # the same batches, drawn apart
    run.config.training.compile = compiled
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    forward_loss = run.forward_loss

    def record(tokens: torch.Tensor, target: torch.Tensor):  # noqa: ANN202
        seen.append((tokens.clone(), target.clone()))
        return forward_loss(tokens, target)
    run.forward_loss = record
    try:
        nxt = bench.warm_up(run, params, sums, 2)
        assert "get" not in vars(run.batches)
        bench.steps(run, params, sums, nxt, 1)  # in order: the loader accepts it
        want = [ref.batches.get(step) for step in range(nxt + 1)]
    finally:
        run.batches.close()
        ref.batches.close()
    assert nxt == (3 if compiled else 2) and len(seen) == nxt + 1
    for step, ((tokens, target), (t_ref, y_ref)) in enumerate(zip(seen, want, strict=True)):
        if compiled and step == 2:
            assert tokens.shape == (t_ref.shape[0], t_ref.shape[1] + 1)
            assert torch.equal(tokens[:, :-1], t_ref) and torch.equal(target[:, :-1], y_ref)
            assert (tokens[:, -1] == run.task.pad_id).all() and (target[:, -1] == NO_LOSS).all()
        else:
            assert torch.equal(tokens, t_ref) and torch.equal(target, y_ref)
