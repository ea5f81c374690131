"""The chunked signed scan (torch backend, both intra-chunk forms) equals the token loop."""

from __future__ import annotations

import sys

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from statetrack.ops import linear_scan
from statetrack.ops.linear_scan.chunked import INTRA_CHUNK, linear_scan_chunked

INTRAS = list(INTRA_CHUNK)


def rel(x: torch.Tensor, y: torch.Tensor) -> float:
    """‖x − y‖ / ‖y‖ (absolute when y = 0), NaN-propagating."""
    x, y = x.double(), y.double()
    return ((x - y).norm() / y.norm().clamp_min(1e-30)).item()


def signed_factors(shape: tuple[int, ...], gen: torch.Generator, dtype: torch.dtype
                   ) -> torch.Tensor:
    """a in [−1, 1] with exact −1, 0 and 1 at many positions and runs of 0 and of −1."""
    a = torch.rand(shape, generator=gen, dtype=torch.float64) * 2 - 1
    u = torch.rand(shape, generator=gen)
    a[u < 0.1] = 0.0
    a[(u >= 0.1) & (u < 0.2)] = -1.0
    a[(u >= 0.2) & (u < 0.3)] = 1.0
    T = shape[1]
    if T >= 8:
        a[:, T // 4: T // 4 + 3] = 0.0  # a run of zeros
        a[:, T // 2: T // 2 + 5] = -1.0  # a run of sign flips
    return a.to(dtype)


def run_both(a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor | None, backend_kwargs: dict,
             gen: torch.Generator) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Outputs and input gradients (random upstream grads on h and h_T) of chunked and reference."""
    results = []
    grads_h = grads_last = None
    for fn in (lambda *x: linear_scan_chunked(*x, **backend_kwargs),
               lambda *x: linear_scan(x[0], x[1], initial_state=x[2], backend="reference")):
        leaves = [t.clone().requires_grad_() if t is not None else None for t in (a, b, h0)]
        h, last = fn(*leaves)
        if grads_h is None:
            grads_h = torch.randn(h.shape, generator=gen, dtype=torch.float64).to(h.dtype)
            grads_last = torch.randn(last.shape, generator=gen, dtype=torch.float64).to(last.dtype)
        ((h * grads_h).sum() + (last * grads_last).sum()).backward()
        results.append([h, last] + [t.grad for t in leaves if t is not None])
    return results[0], results[1]


@pytest.mark.parametrize("intra", INTRAS)
@pytest.mark.parametrize("chunk", [4, 16])
@pytest.mark.parametrize("trailing", [(), (3,), (2, 3)])
@pytest.mark.parametrize("T_of", ["one", "chunk-1", "chunk", "chunk+1", "hundred"])
def test_chunked_equals_reference_float64(intra: str, chunk: int, trailing: tuple[int, ...],
                                          T_of: str) -> None:
    """In float64, h, h_T and the gradients of a, b, h_0 match the loop to 1e-9 relative, with
    a full of exact −1, 0, 1 (so the sign parity and zero counts are exercised)."""
    T = {"one": 1, "chunk-1": chunk - 1, "chunk": chunk, "chunk+1": chunk + 1,
         "hundred": 100}[T_of]
    gen = torch.Generator().manual_seed(hash((intra, chunk, trailing, T)) % 2**31)
    a = signed_factors((2, T, *trailing), gen, torch.float64)
    b = torch.randn(2, T, *trailing, generator=gen, dtype=torch.float64)
    h0 = torch.randn(2, *trailing, generator=gen, dtype=torch.float64)
    got, want = run_both(a, b, h0, {"chunk_size": chunk, "intra": intra}, gen)
    for name, g, w in zip(["h", "h_T", "grad a", "grad b", "grad h0"], got, want, strict=True):
        assert g.dtype == w.dtype, name
        assert rel(g, w) < 1e-9, (name, rel(g, w))


@pytest.mark.parametrize("intra", INTRAS)
def test_chunked_equals_reference_float32(intra: str) -> None:
    """float32 inputs match the (float32) loop within 1e-4 relative; h_T stays float32."""
    gen = torch.Generator().manual_seed(3)
    a = signed_factors((2, 70, 4), gen, torch.float32)
    b = torch.randn(2, 70, 4, generator=gen)
    h0 = torch.randn(2, 4, generator=gen)
    got, want = run_both(a, b, h0, {"chunk_size": 16, "intra": intra}, gen)
    assert got[1].dtype == torch.float32
    for name, g, w in zip(["h", "h_T", "grad a", "grad b", "grad h0"], got, want, strict=True):
        assert rel(g, w) < 1e-4, (name, rel(g, w))


def test_half_inputs_return_half_states_and_float32_last() -> None:
    """bfloat16 in: h in bfloat16 and h_T in float32, both close to the float32 loop."""
    gen = torch.Generator().manual_seed(4)
    a = signed_factors((1, 40, 3), gen, torch.float32).bfloat16()
    b = torch.randn(1, 40, 3, generator=gen).bfloat16()
    h, last = linear_scan(a, b, backend="torch", chunk_size=8)
    h_ref, last_ref = linear_scan(a.float(), b.float(), backend="reference")
    assert h.dtype == torch.bfloat16 and last.dtype == torch.float32
    assert rel(h, h_ref) < 1e-2 and rel(last, last_ref) < 1e-5


@pytest.mark.parametrize("intra", INTRAS)
def test_gradient_is_exact_where_a_factor_is_zero(intra: str) -> None:
    """∂h_T/∂a_t is the product of the other factors times h_{t−1} even where a_t = 0: the
    gradient a log-space autograd would lose (it reads 0 or NaN there)."""
    a = torch.tensor([[0.5, 0.0, -1.0, 0.25]], dtype=torch.float64, requires_grad=True)
    b = torch.tensor([[1.0, 2.0, 3.0, 4.0]], dtype=torch.float64)
    _, last = linear_scan_chunked(a, b, None, 2, intra=intra)
    last.sum().backward()
    # h_1 = 1; h_T = a4·a3·(a2·h_1 + 2) + a4·3 + 4 → ∂/∂a2 = a4·a3·h_1 = −0.25.
    assert a.grad[0, 1].item() == pytest.approx(-0.25, abs=1e-15)
    assert torch.isfinite(a.grad).all()


@settings(max_examples=15, deadline=None)
@given(
    batch=st.integers(1, 3),
    T=st.integers(1, 40),
    trailing=st.lists(st.integers(1, 3), max_size=2),
    chunk=st.integers(1, 12),
    seed=st.integers(0, 2**31 - 1),
    intra=st.sampled_from(INTRAS),
    with_h0=st.booleans(),
)
def test_property_random_shapes(batch: int, T: int, trailing: list[int], chunk: int, seed: int,
                                intra: str, with_h0: bool) -> None:
    """For any shape, chunk size and signed a (with exact zeros), chunked = loop in float64."""
    gen = torch.Generator().manual_seed(seed)
    a = signed_factors((batch, T, *trailing), gen, torch.float64)
    b = torch.randn(batch, T, *trailing, generator=gen, dtype=torch.float64)
    h0 = torch.randn(batch, *trailing, generator=gen, dtype=torch.float64) if with_h0 else None
    got, want = run_both(a, b, h0, {"chunk_size": chunk, "intra": intra}, gen)
    for g, w in zip(got, want, strict=True):
        assert rel(g, w) < 1e-9


def test_pairwise_blocks_agree_with_one_block(monkeypatch: pytest.MonkeyPatch) -> None:
    """Splitting the pairwise tensor into row/column blocks (the memory bound) changes nothing."""
    # (``statetrack.ops.linear_scan`` is the function, so reach the module through sys.modules.)
    chunked = sys.modules[linear_scan_chunked.__module__]
    gen = torch.Generator().manual_seed(5)
    a = signed_factors((2, 50, 6), gen, torch.float64)
    b = torch.randn(2, 50, 6, generator=gen, dtype=torch.float64)
    whole, _ = linear_scan_chunked(a, b, None, 8, intra="pairwise")
    monkeypatch.setattr(chunked, "PAIRWISE_BUDGET", 8 * 8 * 4)  # 4 columns, 1 row per block
    blocked, _ = linear_scan_chunked(a, b, None, 8, intra="pairwise")
    assert torch.equal(whole, blocked)


def test_bad_intra_is_named() -> None:
    with pytest.raises(ValueError, match="intra.*pairwise.*'fast'"):
        linear_scan_chunked(torch.ones(1, 2), torch.ones(1, 2), None, 4, intra="fast")
