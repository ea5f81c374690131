"""The Triton sLSTM recurrence equals the torch token loop (float64): outputs, final state
(y, c, n, m) and the gradients of Wx, R and of a carried state, from the zero state (m = −inf),
a carried state and an explicit zero state; the mixer's ``backend="triton"`` equals
``backend="torch"``; ``backend`` is validated; statetrack works without Triton.

GPU tests run the compiled kernels; one CPU test runs them under TRITON_INTERPRET=1 on tiny
shapes in a subprocess (the variable must be set before triton is imported).
"""

from __future__ import annotations

import contextlib
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from statetrack.layers.registry import build_mixer
from statetrack.layers.slstm import SLSTM, slstm_recurrence_torch

ROOT = Path(__file__).resolve().parents[1]
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
STATE_NAMES = ("y", "c", "n", "m")


def rel(x: torch.Tensor, y: torch.Tensor) -> float:
    """‖x − y‖ / ‖y‖, NaN-propagating (a NaN anywhere makes the check fail)."""
    x, y = x.double(), y.double()
    return ((x - y).norm() / y.norm().clamp_min(1e-30)).item()


def recurrence_inputs(B: int, T: int, H: int, D: int, state: str, device: str, seed: int
                      ) -> tuple[list[torch.Tensor], list[torch.Tensor] | None]:
    """float32 [Wx, R] and a state: None, "carried" (n >= 1, finite m), "zero" (m = −inf) or
    "tie" (carried, with R = 0 and ĩ_t = m_{t−1} = log σ(f̃_t) + m_{t−1})."""
    gen = torch.Generator().manual_seed(seed)

    def g(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=gen).to(device)

    inputs = [g(B, T, 4, H, D), 0.5 * g(H, D, 4, D)]
    if state == "none":
        return inputs, None
    if state == "zero":
        zeros = torch.zeros(B, H, D, device=device)
        return inputs, [zeros, zeros.clone(), zeros.clone(), torch.full_like(zeros, -math.inf)]
    n = 1.0 + torch.rand(B, H, D, generator=gen).to(device)
    init = [0.5 * g(B, H, D), g(B, H, D), n, g(B, H, D)]
    if state == "tie":  # log σ(f̃) + m_{t−1} = ĩ exactly at every step: max's gradient splits
        inputs[1].zero_()
        inputs[0][:, :, 0] = init[3][:, None]
        inputs[0][:, :, 1] = 800.0  # log σ(800) is exactly 0 in float32 and float64
    return inputs, init


def check_recurrence(B: int, T: int, H: int, D: int, state: str, device: str, tol: float,
                     seed: int = 0) -> None:
    """Kernel (float32) vs the torch loop in float64 on the same values: ys, the final state
    and the gradients of Wx, R and the initial state (when one is given)."""
    from statetrack.layers.slstm_triton import slstm_recurrence_triton

    inputs, init = recurrence_inputs(B, T, H, D, state, device, seed)
    ref = [t.double().requires_grad_() for t in inputs + (init or [])]
    tri = [t.clone().requires_grad_() for t in inputs + (init or [])]
    if init is None:
        zeros = torch.zeros(B, H, D, dtype=torch.float64, device=device)
        ys_r, fin_r = slstm_recurrence_torch(*ref, zeros, zeros, zeros,
                                             torch.full_like(zeros, -math.inf))
        ys_t, fin_t = slstm_recurrence_triton(*tri)
    else:
        ys_r, fin_r = slstm_recurrence_torch(*ref)
        ys_t, fin_t = slstm_recurrence_triton(tri[0], tri[1], tuple(tri[2:]))
    outs_r, outs_t = [ys_r, *fin_r], [ys_t, *fin_t]
    gen = torch.Generator().manual_seed(seed + 1)
    weights = [torch.randn(o.shape, generator=gen, dtype=torch.float64).to(device)
               for o in outs_r]
    sum((o * w).sum() for o, w in zip(outs_r, weights, strict=True)).backward()
    sum((o.double() * w).sum() for o, w in zip(outs_t, weights, strict=True)).backward()
    names = ["ys", *(f"{s}_T" for s in STATE_NAMES)]
    errs = {n: rel(t, r) for n, t, r in zip(names, outs_t, outs_r, strict=True)}
    grad_names = ["dWx", "dR", *(f"d{s}0" for s in STATE_NAMES)]
    errs.update({n: rel(t.grad, r.grad) for n, t, r in zip(grad_names, tri, ref, strict=False)})
    bad = {k: v for k, v in errs.items() if not v <= tol}
    assert not bad, f"B={B} T={T} H={H} D={D} state={state}: relative errors over {tol}: {bad}"


def paired_mixers(d: int, H: int, device: str) -> tuple[SLSTM, SLSTM]:
    """Two SLSTMs with equal weights (R random, not xLSTM's zero init), torch and triton."""
    torch.manual_seed(0)
    ref = SLSTM(d, num_heads=H, backend="torch").to(device)
    with torch.no_grad():
        ref.R.normal_(0.0, 0.2)
    tri = SLSTM(d, num_heads=H, backend="triton").to(device)
    tri.load_state_dict(ref.state_dict())
    return ref, tri


def check_mixer(d: int, H: int, T: int, device: str, autocast: bool, tol: float) -> None:
    """backend="triton" vs "torch": outputs of a run and of a second run carrying its state,
    the final state and the gradients of x and of every parameter."""
    ref, tri = paired_mixers(d, H, device)
    x = torch.randn(3, 2 * T, d, generator=torch.Generator().manual_seed(T)).to(device)
    x_r, x_t = x.clone().requires_grad_(), x.clone().requires_grad_()
    results = []
    for mixer, xin in ((ref, x_r), (tri, x_t)):
        ctx = torch.autocast(device, dtype=torch.bfloat16) if autocast else contextlib.nullcontext()
        with ctx:
            y1, s1 = mixer(xin[:, :T])
            y2, s2 = mixer(xin[:, T:], s1)
        out = torch.cat([y1, y2], dim=1).float()
        loss = (out * torch.linspace(-1, 1, out.numel(), device=device).view_as(out)).sum()
        (loss + sum(s.float().sum() for s in s2[1:])).backward()
        results.append((out, s2, xin.grad, {n: p.grad for n, p in mixer.named_parameters()}))
    (o_r, s_r, gx_r, gp_r), (o_t, s_t, gx_t, gp_t) = results
    errs = {"out": rel(o_t, o_r), "dx": rel(gx_t, gx_r)}
    errs.update({f"{n}_T": rel(a, b) for n, a, b in zip(STATE_NAMES, s_t[1:], s_r[1:],
                                                         strict=True)})
    errs.update({f"d{n}": rel(gp_t[n], gp_r[n]) for n in gp_r})
    bad = {k: v for k, v in errs.items() if not v <= tol}
    assert not bad, f"T={T}, autocast={autocast}: relative errors over {tol}: {bad}"


def test_backend_option_is_validated() -> None:
    """An unknown backend is a ValueError naming it and the allowed values; "torch" is the
    default."""
    with pytest.raises(ValueError, match=r"torch, triton, auto, reference, got 'bogus'"):
        build_mixer("slstm", 16, {"backend": "bogus"})
    assert build_mixer("slstm", 16).backend == "torch"


NO_TRITON = textwrap.dedent("""
    import sys
    sys.modules["triton"] = None  # any `import triton` now raises ImportError
    import torch
    import statetrack
    from statetrack.layers.registry import build_mixer
    x = torch.randn(2, 3, 16)
    y, _ = build_mixer("slstm", 16, {"num_heads": 2})(x)
    assert torch.isfinite(y).all()
    torch.manual_seed(0)
    auto = build_mixer("slstm", 16, {"num_heads": 2, "backend": "auto"})
    torch.manual_seed(0)
    assert torch.equal(auto(x)[0], build_mixer("slstm", 16, {"num_heads": 2})(x)[0])
    try:
        build_mixer("slstm", 16, {"num_heads": 2, "backend": "triton"})(x)
    except ValueError as err:
        assert "triton" in str(err), err
    else:
        raise AssertionError("backend='triton' without triton did not raise")
    print("no triton ok")
""")


def test_works_without_triton() -> None:
    """With triton unimportable, statetrack imports, the torch backend runs, "auto" runs the
    torch loop (it never picks the unverified kernel), and backend="triton" is a ValueError
    that names triton."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"),
                                                        os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", NO_TRITON], env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0 and "no triton ok" in proc.stdout, proc.stderr[-3000:]


INTERPRETED = textwrap.dedent("""
    import math
    import torch
    import test_slstm_triton as tst

    # every torch.empty / empty_like is NaN-filled: an output the kernels never write shows
    def poison(make):
        def made(*args, **kwargs):
            out = make(*args, **kwargs)
            return out.fill_(math.nan) if out.is_floating_point() else out
        return made
    torch.empty, torch.empty_like = poison(torch.empty), poison(torch.empty_like)
    for T in (1, 5):
        for state in ("none", "carried", "zero", "tie"):
            tst.check_recurrence(2, T, 2, 8, state, "cpu", 1e-4)
    tst.check_recurrence(2, 5, 2, 16, "carried", "cpu", 1e-4, seed=1)
    tst.check_recurrence(2, 5, 2, 6, "carried", "cpu", 1e-4, seed=2)  # masked lanes (D < BD)
    tst.check_mixer(16, 2, 4, "cpu", False, 1e-4)
    print("interpreted kernels ok")
""")


def test_triton_kernels_interpreted_match_reference(tmp_path: Path) -> None:
    """TRITON_INTERPRET=1, fp32, B=2, H=2, D in {8, 16, 6}, T in {1, 5}: ys, final state and
    all gradients equal the float64 loop to 1e-4, from no state, a carried state, an explicit
    zero state (m = −inf) and exact ties in m's max; the mixer's two backends agree."""
    script = tmp_path / "interpreted.py"
    script.write_text(INTERPRETED)
    env = {**os.environ, "TRITON_INTERPRET": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT / "tests"),
                                          os.environ.get("PYTHONPATH", "")])}
    shim = ROOT / "tests" / "triton_interpreter_shim.py"  # works around a Triton 3.6 bug
    proc = subprocess.run([sys.executable, str(shim), str(script)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "interpreted kernels ok" in proc.stdout, proc.stderr[-3000:]


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("T", [1, 40, 256])
@pytest.mark.parametrize("D", [32, 64, 20])
@pytest.mark.parametrize("state", ["none", "carried", "zero", "tie"])
@pytest.mark.usefixtures("nan_empty")
def test_recurrence_triton_matches_float64_loop(T: int, D: int, state: str) -> None:
    """Compiled kernels, fp32: ys, final state and all gradients within 1e-4 of float64."""
    check_recurrence(4, T, 3, D, state, "cuda", 1e-4, seed=T + D)


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("T", [1, 40, 256])
@pytest.mark.parametrize(("autocast", "tol"), [(False, 1e-4), (True, 1e-2)], ids=["fp32", "bf16"])
@pytest.mark.usefixtures("nan_empty")
def test_mixer_triton_matches_torch(T: int, autocast: bool, tol: float) -> None:
    """The paper's shape (d_model 128, 4 heads of 32), fp32 and bf16 autocast: outputs, carried
    state and every gradient of backend="triton" within tol of backend="torch"."""
    check_mixer(128, 4, T, "cuda", autocast, tol)
