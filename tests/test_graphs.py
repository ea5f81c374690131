"""CUDA-graph training steps: the same training as the eager loop, resumable, and actually
replayed; a tensor learning rate checkpoints as JSON and resumes into an eager optimizer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from statetrack.experiment import graphs, rundir, trainer
from statetrack.experiment.checkpoint import TrainState, load_checkpoint, save_checkpoint
from statetrack.experiment.config import validate
from statetrack.experiment.trainer import train

TIMING = ("steps_per_second", "seconds")
MIXERS = [("deltanet", {"num_heads": 2, "eig_range": [-1, 1]}),
          ("deltanet", {"num_heads": 2, "num_householder": 2, "use_gate": True}),
          ("mamba", {"eig_range": [-1, 1]}),
          ("mlstm", {"num_heads": 2}),
          ("slstm", {"num_heads": 2}),
          ("attention", {"num_heads": 2}),
          ("lstm", {})]


def config(mixer: str, options: dict, **training: object):
    raw = {
        "name": "tiny",
        "task": {"name": "parity"},
        "model": {"d_model": 16, "n_layers": 2, "mixer": mixer, "mixer_options": options},
        "training": {"steps": 24, "batch_size": 8, "min_len": 3, "max_len": 12, "lr": 3e-3,
                     "warmup_steps": 3, "log_every": 3, "checkpoint_every": 8, "val_every": 12,
                     "seed": 1, "data_seed": 2, "precision": "fp32", **training},
        "evaluation": {"min_len": 12, "max_len": 30, "n": 48, "batch_size": 16, "val_n": 8},
    }
    return validate(raw)


def untimed(run_dir: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIMING} for r in rundir.read_metrics(run_dir)]


def close_records(a: list[dict], b: list[dict], rtol: float) -> bool:
    if [sorted(r) for r in a] != [sorted(r) for r in b]:
        return False
    return all(r[k] == pytest.approx(s[k], rel=rtol, abs=rtol) for r, s in zip(a, b, strict=True)
               for k in r)


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run_dir / "checkpoint/model.safetensors"))


class CountingStep(graphs.GraphedStep):
    """Records every instance, so a test can see how many steps were replayed."""

    made: list[graphs.GraphedStep] = []

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        CountingStep.made.append(self)


def test_a_graphed_step_needs_a_cuda_device() -> None:
    with pytest.raises(ValueError, match="CUDA"):
        graphs.GraphedStep(lambda tokens, target: None, torch.device("cpu"))


def test_cuda_graphs_apply_only_on_cuda() -> None:
    c = config("lstm", {}, device="cpu")
    assert c.training.cuda_graphs is True  # the default
    assert not trainer.uses_cuda_graphs(c, torch.device("cpu"))


def test_a_tensor_learning_rate_checkpoints_as_json_and_resumes_eagerly(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    tensor_lr = torch.optim.AdamW(model.parameters(), lr=torch.tensor(0.01), foreach=False)
    model(torch.randn(5, 4)).square().sum().backward()
    tensor_lr.step()
    save_checkpoint(tmp_path, model, tensor_lr, TrainState(1, 0.0, {"loss": 0.0}))
    groups = json.loads((tmp_path / "checkpoint/state.json").read_text())["param_groups"]
    assert groups[0]["lr"] == pytest.approx(0.01)
    eager = torch.optim.AdamW(model.parameters(), lr=0.5, foreach=True)
    load_checkpoint(tmp_path, model, eager)
    group = eager.param_groups[0]
    assert group["foreach"] is True and isinstance(group["lr"], float)  # kept from the new one
    saved = tensor_lr.state[model.weight]["exp_avg"]
    assert torch.equal(eager.state[model.weight]["exp_avg"], saved)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize(("mixer", "options"), MIXERS)
def test_graphed_training_equals_eager_training(
        mixer: str, options: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert_graphed_equals_eager(mixer, options, {}, tmp_path, monkeypatch)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_graphed_training_with_gradient_clipping_equals_eager_training(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # a limit far under the gradients' norm, so that every step clips (the paper text's
    # protocol clips at 1.0: sweeps/deltanet_text_protocol.yaml)
    assert_graphed_equals_eager("deltanet", {"num_heads": 2, "eig_range": [-1, 1]},
                                {"grad_clip": 1e-3}, tmp_path, monkeypatch)


def assert_graphed_equals_eager(mixer: str, options: dict, training: dict, tmp_path: Path,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(trainer, "GraphedStep", CountingStep)
    CountingStep.made.clear()
    eager = train(config(mixer, options, device="cuda", cuda_graphs=False, **training),
                  tmp_path / "eager", quiet=True)
    assert not CountingStep.made
    graphed = train(config(mixer, options, device="cuda", **training), tmp_path / "graphed",
                    quiet=True)
    (step,) = CountingStep.made
    assert step.replays >= 24 - 3 * len(step.seen)  # all but the warm-up steps were replays
    assert close_records(untimed(tmp_path / "eager"), untimed(tmp_path / "graphed"), 1e-4)
    a, b = weights(tmp_path / "eager"), weights(tmp_path / "graphed")
    assert all(torch.allclose(a[k], b[k], rtol=1e-4, atol=1e-5) for k in a)
    assert graphed["scaled_accuracy"] == pytest.approx(eager["scaled_accuracy"], abs=0.05)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_a_graphed_run_resumes_to_the_same_result(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    c = config("deltanet", {"num_heads": 2, "eig_range": [-1, 1]}, device="cuda")
    train(c, tmp_path / "whole", quiet=True)
    original = trainer._train_step

    class Interrupt(Exception):
        pass

    def step(run, index, lr, params, sums):  # noqa: ANN001, ANN202 (the trainer's signature)
        if index == 13:
            raise Interrupt
        return original(run, index, lr, params, sums)

    with monkeypatch.context() as m:
        m.setattr(trainer, "_train_step", step)
        with pytest.raises(Interrupt):
            train(c, tmp_path / "cut", quiet=True)
    train(c, tmp_path / "cut", resume=True, quiet=True)
    assert close_records(untimed(tmp_path / "whole"), untimed(tmp_path / "cut"), 1e-4)
    a, b = weights(tmp_path / "whole"), weights(tmp_path / "cut")
    assert all(torch.allclose(a[k], b[k], rtol=1e-4, atol=1e-5) for k in a)
