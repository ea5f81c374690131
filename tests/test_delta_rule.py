"""The chunked (torch) delta rule equals the token-loop reference, values and gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from statetrack.ops import delta_rule
from statetrack.ops.delta_rule.chunked import delta_rule_chunked
from statetrack.ops.delta_rule.reference import delta_rule_reference

Inputs = list[torch.Tensor | None]


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """‖a − b‖ / ‖b‖ in float64; 0 when both are exactly zero (a gate with nothing to scale)."""
    a, b = a.double(), b.double()
    diff = (a - b).norm().item()
    return diff if diff == 0.0 else diff / max(b.norm().item(), 1e-300)


def make_inputs(
    seed: int, B: int, T: int, H: int, K: int, V: int, *, gate: bool, init: bool,
    beta_range: tuple[float, float] = (0.0, 2.0), special: float = 0.15,
    dtype: torch.dtype = torch.float64,
) -> Inputs:
    """Unit-norm k, β in the range, signed gates in (−1, 1); a fraction ``special`` of positions
    get exact transitions: β ∈ {0, 2}, gate ∈ {0, 1, −1} (eigenvalues exactly −1, 0 and 1)."""
    gen = torch.Generator().manual_seed(seed)
    def rnd(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=gen, dtype=torch.float64)
    def pick(values: list[float], shape: tuple[int, ...]) -> torch.Tensor:
        idx = torch.randint(len(values), shape, generator=gen)
        return torch.tensor(values, dtype=torch.float64)[idx]
    def mask(shape: tuple[int, ...]) -> torch.Tensor:
        return torch.rand(shape, generator=gen, dtype=torch.float64) < special
    lo, hi = beta_range
    q, k, v = rnd(B, T, H, K), F.normalize(rnd(B, T, H, K), dim=-1), rnd(B, T, H, V)
    beta = lo + (hi - lo) * torch.rand(B, T, H, generator=gen, dtype=torch.float64)
    beta = torch.where(mask(beta.shape), pick([0.0, 2.0], beta.shape), beta)
    g = None
    if gate:
        g = 2 * torch.rand(B, T, H, generator=gen, dtype=torch.float64) - 1
        g = torch.where(mask(g.shape), pick([0.0, 1.0, -1.0], g.shape), g)
    S0 = rnd(B, H, K, V) if init else None
    return [None if x is None else x.to(dtype).requires_grad_() for x in (q, k, v, beta, g, S0)]


def run_with_grads(fn, args: Inputs, seed: int) -> list[torch.Tensor]:
    """Outputs, final state and the gradients of every given input under random cotangents."""
    o, S = fn(*args)
    gen = torch.Generator().manual_seed(seed + 1)
    go = torch.randn(o.shape, generator=gen, dtype=torch.float64).to(S.dtype)
    gS = torch.randn(S.shape, generator=gen, dtype=torch.float64).to(S.dtype)
    loss = (o.to(S.dtype) * go).sum() + (S * gS).sum()
    grads = torch.autograd.grad(loss, [a for a in args if a is not None])
    return [o, S, *grads]


def reference_fn(*args: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    return delta_rule_reference(*args)


def chunked_fn(chunk: int):
    return lambda *args: delta_rule_chunked(*args, chunk)


def assert_match(seed: int, T: int, chunk: int, *, gate: bool, init: bool, K: int = 5,
                 V: int = 7, tol: float = 1e-9) -> None:
    args = make_inputs(seed, 2, T, 3, K, V, gate=gate, init=init)
    want = run_with_grads(reference_fn, args, seed)
    got = run_with_grads(chunked_fn(chunk), args, seed)
    grad_names = ["dq", "dk", "dv", "dbeta", "dgate", "dS0"]
    names = ["o", "S_T"] + [n for n, a in zip(grad_names, args, strict=True) if a is not None]
    errs = {n: rel_err(a, b) for n, a, b in zip(names, got, want, strict=True)}
    assert all(e <= tol for e in errs.values()), errs


@pytest.mark.parametrize("T, chunk", [(1, 16), (37, 16), (64, 64), (100, 32), (130, 64), (9, 1)])
@pytest.mark.parametrize("gate", [True, False])
@pytest.mark.parametrize("init", [True, False])
def test_chunked_equals_reference_float64(T: int, chunk: int, gate: bool, init: bool) -> None:
    """torch == reference to 1e-9 relative in float64: o, S_T and all six gradients, with
    β ∈ (0, 2) plus exact 0/2, signed gates plus exact 0/±1, ragged last chunk, K ≠ V."""
    assert_match(T * 7 + chunk, T, chunk, gate=gate, init=init)


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), T=st.integers(1, 90), chunk=st.sampled_from([2, 8, 16, 64]),
       K=st.integers(1, 9), V=st.integers(1, 9), gate=st.booleans(), init=st.booleans())
def test_chunked_equals_reference_hypothesis(seed: int, T: int, chunk: int, K: int, V: int,
                                             gate: bool, init: bool) -> None:
    """The same property over random shapes, chunk sizes and seeds."""
    assert_match(seed, T, chunk, gate=gate, init=init, K=K, V=V)


def test_gate_gradient_exact_at_zero_gate() -> None:
    """d/dgate at positions where gate == 0 exactly (several per chunk) equals the reference:
    the cumprod-based decays never divide by a gate."""
    args = make_inputs(3, 1, 48, 2, 4, 4, gate=True, init=True, special=0.0)
    g = args[4].detach().clone()
    zero_pos = [3, 5, 6, 20, 40]
    g[:, zero_pos] = 0.0
    args[4] = g.requires_grad_()
    want = run_with_grads(reference_fn, args, 0)[6]
    got = run_with_grads(chunked_fn(16), args, 0)[6]
    assert want[:, zero_pos].abs().min() > 0  # the property is not vacuous
    assert rel_err(got[:, zero_pos], want[:, zero_pos]) <= 1e-9
    assert torch.isfinite(got).all()


@pytest.mark.parametrize("gate", [True, False])
def test_float32_close_to_float64_reference(gate: bool) -> None:
    """float32 inputs: o, S_T and gradients within 1e-4 relative of the float64 reference."""
    args64 = make_inputs(11, 2, 100, 2, 8, 6, gate=gate, init=True)
    args32 = [None if a is None else a.detach().float().requires_grad_() for a in args64]
    want = run_with_grads(reference_fn, args64, 5)
    got = run_with_grads(chunked_fn(32), args32, 5)
    assert got[0].dtype == torch.float32 and got[1].dtype == torch.float32
    errs = [rel_err(a, b) for a, b in zip(got, want, strict=True)]
    assert max(errs) <= 1e-4, errs


@pytest.mark.parametrize("gate", [True, False])
def test_long_sequence_beta_near_two_float32_stable(gate: bool) -> None:
    """T = 4096, β ∈ (1.9, 2), float32: finite and within 1e-3 of the float64 reference (the
    triangular solve stays well-conditioned; we measured ~2e-6)."""
    args = make_inputs(7, 1, 4096, 2, 16, 16, gate=gate, init=True, beta_range=(1.9, 2.0),
                       special=0.0)
    args = [None if a is None else a.detach() for a in args]
    if gate:  # near-unit |gate| with random signs: the state barely decays
        g = args[4]
        args[4] = torch.where(g < 0, -1.0, 1.0) * (0.99 + 0.01 * g.abs())
    o_ref, S_ref = delta_rule_reference(*args)
    o, S = delta_rule_chunked(*[None if a is None else a.float() for a in args], 64)
    assert torch.isfinite(o).all() and torch.isfinite(S).all()
    assert rel_err(o, o_ref) <= 1e-3 and rel_err(S, S_ref) <= 1e-3


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32, torch.float64])
def test_output_dtypes(dtype: torch.dtype) -> None:
    """o comes back in v's dtype; S_T is float32 (float64 for float64 inputs)."""
    args = [None if a is None else a.detach().to(dtype)
            for a in make_inputs(0, 1, 20, 2, 4, 4, gate=True, init=False)]
    o, S = delta_rule_chunked(*args, 8)
    assert o.dtype == dtype
    assert S.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)


def test_empty_sequence_keeps_state() -> None:
    """T = 0: no outputs and S_T is the initial state, as in the reference."""
    args = [None if a is None else a.detach()
            for a in make_inputs(0, 2, 0, 2, 3, 4, gate=True, init=True)]
    o, S = delta_rule_chunked(*args, 16)
    o_ref, S_ref = delta_rule_reference(*args)
    assert o.shape == o_ref.shape == (2, 0, 2, 4)
    assert torch.equal(S, S_ref)


@pytest.mark.parametrize("gate", [True, False])
def test_public_backends_agree(gate: bool) -> None:
    """delta_rule(backend="reference") == delta_rule(backend="torch"); without
    output_final_state the state is None."""
    q, k, v, beta, g, S0 = (None if a is None else a.detach() for a in
                            make_inputs(4, 2, 50, 2, 6, 5, gate=gate, init=True))
    outs = {b: delta_rule(q, k, v, beta, gate=g, initial_state=S0, output_final_state=True,
                          backend=b, chunk_size=16) for b in ("reference", "torch")}
    assert rel_err(outs["torch"][0], outs["reference"][0]) <= 1e-9
    assert rel_err(outs["torch"][1], outs["reference"][1]) <= 1e-9
    for b in ("reference", "torch"):
        o, S = delta_rule(q, k, v, beta, gate=g, backend=b)
        assert S is None and o.shape == v.shape
