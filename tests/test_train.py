"""The trainer: resume is exact, divergence keeps the last good checkpoint, batches are padded
only to their longest example, evaluation by length is right for a known model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from statetrack.experiment import rundir, trainer
from statetrack.experiment.config import validate
from statetrack.experiment.evaluation import data_rng, evaluate, scaled_accuracy
from statetrack.experiment.schedule import learning_rate
from statetrack.experiment.trainer import TrainingDiverged, train
from statetrack.models import SequenceModel
from statetrack.tasks import get_task

TINY = {
    "name": "tiny",
    "task": {"name": "parity"},
    "model": {"d_model": 16, "n_layers": 1, "mixer": "deltanet",
              "mixer_options": {"num_heads": 2, "eig_range": [-1, 1]}},
    "training": {"steps": 12, "batch_size": 8, "min_len": 3, "max_len": 12, "lr": 3e-3,
                 "warmup_steps": 3, "log_every": 3, "checkpoint_every": 4, "val_every": 6,
                 "device": "cpu", "seed": 1, "data_seed": 2},
    "evaluation": {"min_len": 12, "max_len": 30, "n": 48, "batch_size": 16, "val_n": 8},
}
TIMING = ("steps_per_second", "seconds")


def tiny(**training: object):
    raw = json.loads(json.dumps(TINY))
    raw["training"].update(training)
    return validate(raw)


def untimed(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIMING} for r in records]


class Interrupt(Exception):
    pass


def stop_at(monkeypatch: pytest.MonkeyPatch, at_step: int, poison: bool = False) -> None:
    """Make the step loop fail at step ``at_step``: interrupt it, or poison a weight with NaN
    so that the loss becomes NaN."""
    original = trainer._train_step

    def step(run, index, lr, params, sums):
        if index == at_step:
            if not poison:
                raise Interrupt
            with torch.no_grad():
                params[0].fill_(float("nan"))
        return original(run, index, lr, params, sums)

    monkeypatch.setattr(trainer, "_train_step", step)


def assert_same_run(whole: Path, cut: Path) -> None:
    """Two run directories end with bitwise the same weights, metrics (timing aside) and
    per-length evaluation."""
    a = load_file(str(whole / "checkpoint/model.safetensors"))
    b = load_file(str(cut / "checkpoint/model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert untimed(rundir.read_metrics(whole)) == untimed(rundir.read_metrics(cut))
    assert (whole / "eval.csv").read_text() == (cut / "eval.csv").read_text()


def test_resume_reaches_the_same_weights_and_metrics_bitwise(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tiny()
    whole = train(config, tmp_path / "whole", quiet=True)
    with monkeypatch.context() as m:
        stop_at(m, 10)  # after the checkpoint at step 8 and log lines up to step 9
        with pytest.raises(Interrupt):
            train(config, tmp_path / "cut", quiet=True)
    assert not (tmp_path / "cut" / rundir.SUMMARY).exists()
    resumed = train(config, tmp_path / "cut", resume=True, quiet=True)
    assert_same_run(tmp_path / "whole", tmp_path / "cut")
    for key in ("accuracy", "scaled_accuracy", "steps", "final_train_loss"):
        assert whole[key] == resumed[key]


def signal_then_cut(monkeypatch: pytest.MonkeyPatch, config, run_dir: Path,
                    taken_at: int | None = None) -> None:
    """Train ``config`` into run_dir, sending CHECKPOINT_SIGNAL to this process during step 5
    (index 4) and interrupting at index 7; with ``taken_at``, SIG_IGN takes the signal over
    after that step (a library taking it mid-run). Checks that the previous handler is back
    once training has ended."""
    import os
    import signal

    original = trainer._train_step

    def step(run, index, lr, params, sums):
        if index == 4:
            os.kill(os.getpid(), trainer.CHECKPOINT_SIGNAL)
        if index == 7:
            raise Interrupt
        out = original(run, index, lr, params, sums)
        if index == taken_at:
            signal.signal(trainer.CHECKPOINT_SIGNAL, signal.SIG_IGN)
        return out

    before = signal.getsignal(trainer.CHECKPOINT_SIGNAL)
    with monkeypatch.context() as m:
        m.setattr(trainer, "_train_step", step)
        with pytest.raises(Interrupt):
            train(config, run_dir, quiet=True)
    assert signal.getsignal(trainer.CHECKPOINT_SIGNAL) is before


@pytest.mark.skipif(trainer.CHECKPOINT_SIGNAL is None, reason="no SIGUSR1 on this platform")
@pytest.mark.parametrize("taken_at", [0, 1])
def test_a_handler_taken_over_during_training_is_put_back(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, taken_at: int) -> None:
    """A library that takes SIGUSR1 during a step (LLVM does, inside Triton's compiler, when a
    process first compiles a kernel) does not keep it: the loop puts its handler back after
    the first step and at each log step (done = 3), so a signal during step 5 still
    checkpoints step 5 (without that, SIG_IGN here would drop it)."""
    signal_then_cut(monkeypatch, tiny(), tmp_path / "cut", taken_at)
    assert json.loads((tmp_path / "cut/checkpoint/state.json").read_text())["step"] == 5


@pytest.mark.skipif(trainer.CHECKPOINT_SIGNAL is None, reason="no SIGUSR1 on this platform")
def test_a_signal_checkpoints_the_current_step_and_resuming_from_it_changes_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGUSR1 during step 5 (done = 5: neither a log step nor a periodic checkpoint, so the
    log window's sums are mid-way) checkpoints step 5; a run cut at step 7 and resumed from it
    ends with the same weights, metrics and evaluation as one never cut. Once training is over
    the previous handler is back."""
    config = tiny()
    whole = train(config, tmp_path / "whole", quiet=True)
    signal_then_cut(monkeypatch, config, tmp_path / "cut")
    state = json.loads((tmp_path / "cut/checkpoint/state.json").read_text())
    assert state["step"] == 5 and state["log_sums"]["steps"] == 2  # steps 4 and 5 of window
    resumed = train(config, tmp_path / "cut", resume=True, quiet=True)
    assert_same_run(tmp_path / "whole", tmp_path / "cut")
    for key in ("accuracy", "scaled_accuracy", "final_train_loss"):
        assert whole[key] == resumed[key]


def test_checkpoints_hold_no_pickles_and_restore_the_optimizer(tmp_path: Path) -> None:
    train(tiny(), tmp_path / "run", quiet=True)
    files = sorted(p.name for p in (tmp_path / "run/checkpoint").iterdir())
    assert files == ["model.safetensors", "optimizer.safetensors", "state.json"]
    state = json.loads((tmp_path / "run/checkpoint/state.json").read_text())
    tensors = load_file(str(tmp_path / "run/checkpoint/optimizer.safetensors"))
    assert state["step"] == 12
    assert any(k.endswith(".exp_avg_sq") for k in tensors) and "rng.torch" in tensors


def test_a_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stop_at(monkeypatch, 9, poison=True)
    with pytest.raises(TrainingDiverged, match="nan"):
        train(tiny(), tmp_path / "run", quiet=True)
    state = json.loads((tmp_path / "run/checkpoint/state.json").read_text())
    weights = load_file(str(tmp_path / "run/checkpoint/model.safetensors"))
    assert state["step"] == 8
    assert all(torch.isfinite(w).all() for w in weights.values())
    assert not (tmp_path / "run" / rundir.SUMMARY).exists()


def test_training_batches_are_padded_only_to_their_longest_example(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tiny(steps=6, max_len=40)
    task = get_task("parity")
    widths: list[int] = []
    original = trainer.build

    def build(config, where=""):
        task_, model = original(config, where)
        forward = model.forward

        def recording(tokens, state=None):
            widths.append(tokens.shape[1])
            return forward(tokens, state)

        model.forward = recording
        return task_, model

    monkeypatch.setattr(trainer, "build", build)
    train(config, tmp_path / "run", quiet=True)
    t = config.training
    expected = [int(task.sample(t.batch_size, t.min_len, t.max_len,
                                data_rng(t.data_seed, 1, s)).lengths.max()) - task.answer_offset
                for s in range(t.steps)]
    assert widths[: t.steps] == expected
    assert max(expected) < t.max_len  # the batches really are shorter than the longest length


def test_metrics_log_the_scheduled_learning_rate(tmp_path: Path) -> None:
    config = tiny()
    train(config, tmp_path / "run", quiet=True)
    records = rundir.read_metrics(tmp_path / "run")
    t = config.training
    assert [r["step"] for r in records] == list(range(t.log_every, t.steps + 1, t.log_every))
    for r in records:
        assert r["lr"] == learning_rate(r["step"] - 1, lr=t.lr, steps=t.steps,
                                        warmup_steps=t.warmup_steps,
                                        final_lr_factor=t.final_lr_factor)
    assert all("val_accuracy" in r for r in records if r["step"] % t.val_every == 0
               and r["step"] < t.steps)


def optimizer_decay(**training: object) -> tuple[SequenceModel, dict[int, float]]:
    """The tiny config's model and, by parameter id, its weight decay in the optimizer a run
    with these training settings builds."""
    config = tiny(weight_decay=0.1, **training)
    model = SequenceModel(config.model_config(len(get_task("parity").vocab)))
    optimizer = trainer.make_optimizer(model, config, torch.device("cpu"))
    return model, {id(p): g["weight_decay"] for g in optimizer.param_groups for p in g["params"]}


@pytest.mark.parametrize("flag", [False, True])
def test_decay_norms_and_biases_reaches_the_optimizer(flag: bool) -> None:
    """training.decay_norms_and_biases decides the weight decay of the norm gains in the
    optimizer a run trains with; the weights decay either way."""
    model, wd = optimizer_decay(decay_norms_and_biases=flag)
    assert wd[id(model.norm.weight)] == (0.1 if flag else 0.0)
    assert wd[id(model.blocks[0].mixer.q_proj.weight)] == 0.1


def test_decay_embedding_reaches_the_optimizer() -> None:
    """training.decay_embedding: false leaves the embedding undecayed and the head decayed."""
    model, wd = optimizer_decay(decay_embedding=False)
    assert wd[id(model.embedding.weight)] == 0.0 and wd[id(model.head.weight)] == 0.1


class ParityOracle(torch.nn.Module):
    """Predicts the running parity of the bits read so far: right at every answer position."""

    def forward(self, tokens: torch.Tensor, state: object = None):
        ones = torch.cumsum((tokens == 1).long(), dim=1) % 2
        return torch.nn.functional.one_hot(ones, 3).float(), state


class Constant(torch.nn.Module):
    def forward(self, tokens: torch.Tensor, state: object = None):
        logits = torch.zeros(*tokens.shape, 3)
        logits[..., 0] = 1.0
        return logits, state


def test_evaluation_by_length_of_known_models() -> None:
    task = get_task("parity")
    kwargs = dict(min_len=5, max_len=60, n=300, batch_size=64, device=torch.device("cpu"))
    perfect = evaluate(ParityOracle(), task, rng=np.random.default_rng(0), **kwargs)
    assert perfect.accuracy == 1.0 and perfect.scaled_accuracy == 1.0
    assert sum(r.n for r in perfect.by_length) == 300
    assert [r.length for r in perfect.by_length] == sorted({r.length for r in perfect.by_length})
    constant = evaluate(Constant(), task, rng=np.random.default_rng(0), **kwargs)
    data = task.sample(300, 5, 60, np.random.default_rng(0))
    share = float((data.answers == 0).mean())  # "0" is right exactly when the parity is even
    assert constant.accuracy == pytest.approx(share)
    assert constant.scaled_accuracy == pytest.approx(scaled_accuracy(share, 2))


def test_batches_drawn_ahead_in_a_thread_equal_those_drawn_in_place() -> None:
    from statetrack.experiment.batches import Batches

    config = tiny(steps=7)
    task = get_task("parity")
    cpu = torch.device("cpu")
    ahead = Batches(task, config.training, cpu, start=2, ahead=3)
    direct = Batches(task, config.training, cpu, start=2, ahead=0)
    try:
        for step in range(2, 7):
            a, b = ahead.get(step), direct.get(step)
            assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    finally:
        ahead.close()


def test_a_batch_holds_its_steps_sample_trimmed_in_memory_of_its_own() -> None:
    from statetrack.experiment.batches import Batches
    from statetrack.experiment.evaluation import TRAIN_STREAM, data_rng, trim

    config = tiny(steps=4, batch_size=64)
    t = config.training
    task = get_task("mod_arith")
    batches = Batches(task, t, torch.device("cpu"), start=3, ahead=0)
    tokens, labels = batches.get(3)
    expected = trim(task.sample(t.batch_size, t.min_len, t.max_len,
                                data_rng(t.data_seed, TRAIN_STREAM, 3)))
    for tensor, array in zip((tokens, labels), expected, strict=True):
        assert tensor.dtype == torch.int64 and tensor.is_contiguous()
        assert torch.equal(tensor, torch.from_numpy(array))
        assert not np.shares_memory(tensor.numpy(), array)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_batches_for_a_cuda_device_are_drawn_into_page_locked_memory() -> None:
    from statetrack.experiment.batches import Batches

    config = tiny(steps=4, batch_size=1024)
    batches = Batches(get_task("parity"), config.training, torch.device("cuda"), start=0,
                      ahead=1)
    try:
        inputs, labels = batches.pending[0][1].result()  # the host tensors, before the copy
        assert inputs.is_pinned() and labels.is_pinned()
        tokens, target = batches.get(0)
        assert tokens.is_cuda and torch.equal(tokens.cpu(), inputs)
    finally:
        batches.close()


def test_weights_that_share_one_buffer_checkpoint_and_restore(tmp_path: Path) -> None:
    """cuDNN's LSTM holds its weights as views of one flat buffer; a checkpoint must still save
    and restore them (safetensors refuses shared storage it does not fully cover)."""
    from statetrack.experiment.checkpoint import TrainState, load_checkpoint, save_checkpoint

    class Flat(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            flat = torch.randn(11)
            self.a = torch.nn.Parameter(flat[:4].view(2, 2))
            self.b = torch.nn.Parameter(flat[4:10].view(2, 3))

    model = Flat()
    assert model.a.untyped_storage().data_ptr() == model.b.untyped_storage().data_ptr()
    optimizer = torch.optim.AdamW(model.parameters())
    save_checkpoint(tmp_path, model, optimizer, TrainState(3, 1.0, {"loss": 0.0}))
    restored = Flat()
    assert load_checkpoint(tmp_path, restored, torch.optim.AdamW(restored.parameters())).step == 3
    assert torch.equal(restored.a, model.a) and torch.equal(restored.b, model.b)


@pytest.mark.parametrize("precision, on_cpu", [("auto", torch.float32), ("fp32", torch.float32),
                                               ("bf16", torch.bfloat16)])
def test_precision_bf16_trains_under_autocast_on_a_cpu_too(
    precision: str, on_cpu: torch.dtype, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``training.precision``: bf16 puts a CPU run's steps and evaluations under bf16 autocast
    (the rounding of a GPU run), auto and fp32 keep a CPU in float32: the delta rule receives
    its inputs in that dtype in training and evaluation alike."""
    import statetrack.layers.deltanet as deltanet

    seen: set[torch.dtype] = set()
    op = deltanet.delta_rule

    def spy(q, k, v, beta, **kwargs):  # noqa: ANN001, ANN003, ANN202 (mirrors delta_rule)
        seen.add(k.dtype)
        return op(q, k, v, beta, **kwargs)

    monkeypatch.setattr(deltanet, "delta_rule", spy)
    train(tiny(steps=3, warmup_steps=1, checkpoint_every=0, val_every=0, precision=precision),
          tmp_path / "run", quiet=True)
    assert seen == {on_cpu}
    assert (tmp_path / "run" / "summary.json").is_file()


def test_code_fingerprint_follows_every_source_file(tmp_path: Path) -> None:
    """The fingerprint of a source tree is the same for an identical copy and changes when any
    .py file's bytes or name change, but not for other files (caches, data)."""
    import shutil

    root = Path(rundir.__file__).resolve().parents[1]
    copy = tmp_path / "a"
    shutil.copytree(root, copy, ignore=shutil.ignore_patterns("__pycache__"))
    same = rundir.code_fingerprint(copy)
    assert same == rundir.code_fingerprint(root) and len(same) == 12
    (copy / "notes.txt").write_text("not code")
    assert rundir.code_fingerprint(tmp_path / "a") == same
    shutil.copytree(copy, tmp_path / "b")
    (tmp_path / "b" / "eig.py").write_text((copy / "eig.py").read_text() + "\n")
    shutil.copytree(copy, tmp_path / "c")
    (tmp_path / "c" / "eig.py").rename(tmp_path / "c" / "eig2.py")
    prints = {rundir.code_fingerprint(tmp_path / d) for d in "abc"}
    assert len(prints) == 3


def test_runs_record_the_code_that_trained_and_evaluated_them(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every metrics line names the code that logged it; a run cut and resumed under other
    code lists both versions in order in summary.json, and the evaluating one apart. Lines
    from before fingerprints existed count as "unrecorded"."""
    config = tiny()
    summary = train(config, tmp_path / "one", quiet=True)
    now = rundir.code_fingerprint()
    assert {r["code"] for r in rundir.read_metrics(tmp_path / "one")} == {now}
    assert summary["code"] == [now] and summary["eval_code"] == now
    with monkeypatch.context() as m:
        m.setattr(rundir, "code_fingerprint", lambda: "old000000000")
        stop_at(m, 10)
        with pytest.raises(Interrupt):
            train(config, tmp_path / "cut", quiet=True)
    resumed = train(config, tmp_path / "cut", resume=True, quiet=True)
    assert resumed["code"] == ["old000000000", now] and resumed["eval_code"] == now
    assert rundir.code_history([{"step": 1}, {"step": 2, "code": "x"}]) == ["unrecorded", "x"]
