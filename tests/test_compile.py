"""``training.compile``: torch.compile fuses the code around the ops and leaves the ops' own calls
outside its graphs (``statetrack.ops._common.opaque``), and training through it is the same
training as the eager loop."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from repo_scripts import ROOT
from test_train import TINY, Interrupt, assert_same_run, stop_at, untimed

from statetrack.experiment import rundir
from statetrack.experiment.config import ConfigError, validate
from statetrack.experiment.trainer import train
from statetrack.ops import delta_rule, linear_scan, selective_scan
from statetrack.ops._common import opaque

# test_train's tiny DeltaNet run, checkpointed only at its end and never validated
COMPILE_TRAINING = {"checkpoint_every": 12, "val_every": 0}


def tiny(mixer: str = "deltanet", options: dict | None = None, **training: object):
    raw = json.loads(json.dumps(TINY))
    raw["training"].update(COMPILE_TRAINING)
    if options is not None:
        raw["model"].update(mixer=mixer, mixer_options=options)
    raw["training"].update(training)
    return validate(raw)


def compiled_graphs() -> int:
    """Graphs dynamo has compiled in this process since its last reset."""
    import torch._dynamo

    return torch._dynamo.utils.counters["stats"]["unique_graphs"]


def train_compiled(config, run_dir: Path) -> dict:  # noqa: ANN001 (an ExperimentConfig)
    """``train`` from an empty dynamo cache (earlier compiles in the process count towards its
    recompile limit, past which it runs frames eagerly), checking that it compiled."""
    import torch._dynamo

    torch._dynamo.reset()
    summary = train(config, run_dir, quiet=True)
    assert compiled_graphs() > 0
    return summary


def logged(run_dir: Path) -> list[dict]:
    """The run's metrics records without their timing fields (test_train's ``untimed``)."""
    return untimed(rundir.read_metrics(run_dir))


def test_an_opaque_op_runs_eagerly_inside_a_compiled_function() -> None:
    """The op's body is not traced (it sees no compile), its result and gradient are right,
    and the compiled code around it still runs."""
    seen: list[bool] = []

    @opaque
    def op(x: torch.Tensor) -> torch.Tensor:
        seen.append(torch.compiler.is_compiling())
        return x.cumsum(1) * 2

    def f(x: torch.Tensor) -> torch.Tensor:
        return (op(torch.sigmoid(x) * 3) + 1).square().sum()

    x = torch.randn(3, 7, dtype=torch.float64, requires_grad=True)
    (eager_grad,) = torch.autograd.grad(f(x), x)
    seen.clear()
    compiled = torch.compile(f, backend="aot_eager")  # no code generation: the tracing is tested
    value = compiled(x)
    (grad,) = torch.autograd.grad(value, x)
    assert seen == [False]
    assert value.item() == pytest.approx(f(x).item(), rel=1e-12)
    torch.testing.assert_close(grad, eager_grad, rtol=1e-12, atol=1e-12)


def op_cases() -> dict[str, tuple]:
    """Per op: a function of float64 leaves through the op, and the leaves."""
    g = torch.Generator().manual_seed(0)
    B, T, H, K = 2, 9, 2, 4
    rand = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)  # noqa: E731
    q, k, v = rand(B, T, H, K), rand(B, T, H, K), rand(B, T, H, K)
    beta = torch.rand(B, T, H, generator=g, dtype=torch.float64)
    Dm, N = 3, 4
    x, dt, z = rand(B, T, Dm), rand(B, T, Dm), rand(B, T, Dm)
    A, Bm, C, D = -rand(Dm, N).abs(), rand(B, T, N), rand(B, T, N), rand(Dm)
    a, b = torch.rand(B, T, 5, generator=g, dtype=torch.float64) * 2 - 1, rand(B, T, 5)

    def deltanet(q, k, v, beta):  # noqa: ANN001, ANN202
        k = torch.nn.functional.normalize(torch.nn.functional.silu(k), dim=-1)
        o, S = delta_rule(q * 0.5, k, torch.tanh(v), beta * 2, output_final_state=True)
        return (o.square().sum() + S.sum()) * 3

    def mamba(x, dt, z, A, Bm, C, D):  # noqa: ANN001, ANN202
        y, h = selective_scan(torch.nn.functional.silu(x), dt, A, Bm, C, D=D, z=z,
                              eig_range=(-1, 1), output_final_state=True)
        return y.square().sum() + h.sum()

    def scan(a, b):  # noqa: ANN001, ANN202
        h, last = linear_scan(torch.tanh(a), b * 2)
        return (h.exp() + 1).sum() + last.sum()

    return {"delta_rule": (deltanet, [q, k, v, beta]),
            "selective_scan": (mamba, [x, dt, z, A, Bm, C, D]),
            "linear_scan": (scan, [a, b])}


@pytest.mark.parametrize("name", ["delta_rule", "selective_scan", "linear_scan"])
def test_each_op_under_compile_equals_eager_in_float64(name: str) -> None:
    """Through torch.compile's tracing and autograd split (``aot_eager``: inductor's code
    generation is left to the training test below), value and every input gradient match the
    eager function to 1e-10 in float64: the op runs whole, its backward included."""
    f, leaves = op_cases()[name]
    leaves = [t.clone().requires_grad_() for t in leaves]
    eager_value = f(*leaves)
    eager_grads = torch.autograd.grad(eager_value, leaves)
    value = torch.compile(f, backend="aot_eager")(*leaves)
    grads = torch.autograd.grad(value, leaves)
    assert value.item() == pytest.approx(eager_value.item(), rel=1e-10)
    for got, want in zip(grads, eager_grads, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


def test_eager_op_calls_do_not_import_dynamo() -> None:
    """``opaque`` costs eager callers no import of torch._dynamo (about a second)."""
    code = ("import sys, torch\n"
            "from statetrack.ops import delta_rule\n"
            "x = torch.randn(1, 3, 1, 4)\n"
            "delta_rule(x, x, x, torch.rand(1, 3, 1))\n"
            "print('torch._dynamo' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={"PYTHONPATH": str(ROOT / "src")}).stdout
    assert out.strip() == "False"


def test_compile_must_be_true_or_false() -> None:
    raw = json.loads(json.dumps(TINY))
    raw["training"]["compile"] = "yes"
    with pytest.raises(ConfigError, match="training.compile"):
        validate(raw)


@pytest.fixture(scope="module")
def compiled_run(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    """One compiled tiny DeltaNet [−1, 1] run, checkpointed every 4 steps: (config, run
    directory, summary). Compiling is most of the tests' time, so the tests that compare
    against a compiled run share this one."""
    config = tiny(compile=True, checkpoint_every=4)
    run_dir = tmp_path_factory.mktemp("compiled") / "whole"
    return config, run_dir, train_compiled(config, run_dir)


def test_compiled_training_equals_eager_training(tmp_path: Path, compiled_run) -> None:  # noqa: ANN001
    """12 steps of DeltaNet [−1, 1] with ``training.compile`` log the same losses and
    accuracies as the eager loop (fused float32 may round differently), and the run's config
    records the setting."""
    _, compiled_dir, compiled = compiled_run
    train(tiny(checkpoint_every=4), tmp_path / "eager", quiet=True)
    a, b = logged(tmp_path / "eager"), logged(compiled_dir)
    assert [sorted(r) for r in a] == [sorted(r) for r in b]
    for r, s in zip(a, b, strict=True):
        for key in ("loss", "accuracy"):
            assert s[key] == pytest.approx(r[key], rel=1e-5, abs=1e-6), (r["step"], key)
    assert "compile: true" in (compiled_dir / "config.yaml").read_text()
    assert compiled["steps"] == 12


def test_a_compiled_run_resumes_to_the_same_weights_bitwise(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, compiled_run) -> None:  # noqa: ANN001
    """Cut after its checkpoint at step 4 and resumed, a compiled run ends with bitwise the
    weights and metrics of the same run trained whole."""
    config, whole, _ = compiled_run
    with monkeypatch.context() as m:
        stop_at(m, 6)
        with pytest.raises(Interrupt):
            train(config, tmp_path / "cut", quiet=True)
    train(config, tmp_path / "cut", resume=True, quiet=True)
    assert_same_run(whole, tmp_path / "cut")


GPU_MIXERS = [("deltanet", {"num_heads": 2, "eig_range": [-1, 1]}),
              ("mamba", {"eig_range": [-1, 1]})]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize(("mixer", "options"), GPU_MIXERS)
def test_compiled_graphed_training_equals_eager_on_the_gpu(
        mixer: str, options: dict, tmp_path: Path) -> None:
    """On CUDA with the Triton ops and CUDA graphs: compiled training follows the eager
    loop's losses, in float32."""
    settings = {"device": "cuda", "precision": "fp32", "steps": 24}
    train(tiny(mixer, options, cuda_graphs=False, **settings), tmp_path / "eager", quiet=True)
    train_compiled(tiny(mixer, options, compile=True, **settings), tmp_path / "compiled")
    a, b = logged(tmp_path / "eager"), logged(tmp_path / "compiled")
    assert len(a) == len(b) == 8
    for r, s in zip(a, b, strict=True):
        assert s["loss"] == pytest.approx(r["loss"], rel=1e-4, abs=1e-5), r["step"]
