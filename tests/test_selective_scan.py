"""The chunked selective scan (torch backend) equals Mamba-1's token loop for signed ranges."""

from __future__ import annotations

import pytest
import torch

from statetrack.eig import EigRange
from statetrack.ops import selective_scan

NAMES = ["x", "dt", "A", "B", "C", "D", "z", "dt_bias", "initial_state"]


def rel(x: torch.Tensor, y: torch.Tensor) -> float:
    x, y = x.double(), y.double()
    return ((x - y).norm() / y.norm().clamp_min(1e-30)).item()


def make_inputs(gen: torch.Generator, Bsz: int, T: int, Dm: int, N: int, dtype: torch.dtype,
                optional: bool) -> dict[str, torch.Tensor | None]:
    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=gen, dtype=torch.float64).to(dtype)

    inputs: dict[str, torch.Tensor | None] = {
        "x": randn(Bsz, T, Dm), "dt": randn(Bsz, T, Dm),
        "A": -torch.rand(Dm, N, generator=gen, dtype=torch.float64).add(0.1).mul(2).to(dtype),
        "B": randn(Bsz, T, N), "C": randn(Bsz, T, N),
        "D": None, "z": None, "dt_bias": None, "initial_state": None,
    }
    if optional:
        inputs |= {"D": randn(Dm), "z": randn(Bsz, T, Dm), "dt_bias": randn(Dm),
                   "initial_state": randn(Bsz, Dm, N)}
    return inputs


def run(backend: str, inputs: dict[str, torch.Tensor | None], eig_range: EigRange,
        chunk: int, grad_seed: int
        ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """y, h_T and the gradients of every given input for random upstream grads on y and h_T."""
    leaves = {k: v.clone().requires_grad_() for k, v in inputs.items() if v is not None}
    args = {k: leaves.get(k) for k in NAMES}
    y, last = selective_scan(args.pop("x"), args.pop("dt"), args.pop("A"), args.pop("B"),
                             args.pop("C"), **args, eig_range=eig_range,
                             output_final_state=True, backend=backend, chunk_size=chunk)
    g = torch.Generator().manual_seed(grad_seed)
    gy = torch.randn(y.shape, generator=g, dtype=torch.float64).to(y.dtype)
    glast = torch.randn(last.shape, generator=g, dtype=torch.float64).to(last.dtype)
    ((y * gy).sum() + (last * glast).sum()).backward()
    return y.detach(), last.detach(), {k: v.grad for k, v in leaves.items()}


def assert_close(inputs: dict[str, torch.Tensor | None], eig_range: EigRange, chunk: int,
                 tol: float) -> None:
    y, last, grads = run("torch", inputs, eig_range, chunk, 7)
    y_ref, last_ref, grads_ref = run("reference", inputs, eig_range, chunk, 7)
    assert y.dtype == y_ref.dtype and last.dtype == last_ref.dtype
    assert rel(y, y_ref) < tol, ("y", rel(y, y_ref))
    assert rel(last, last_ref) < tol, ("h_T", rel(last, last_ref))
    assert grads.keys() == grads_ref.keys()
    for k in grads:
        assert rel(grads[k], grads_ref[k]) < tol, (k, rel(grads[k], grads_ref[k]))


@pytest.mark.parametrize("eig_range", [(0.0, 1.0), (-1.0, 1.0), (-0.5, 1.0)])
@pytest.mark.parametrize("optional", [False, True])
@pytest.mark.parametrize("T", [1, 13, 32])
def test_chunked_equals_reference_float64(eig_range: tuple[float, float], optional: bool,
                                          T: int) -> None:
    """float64: y, h_T and all nine input gradients match the loop to 1e-9 relative, for the
    classic, the signed and an asymmetric range, T = 1, T not a multiple of the chunk (8)."""
    gen = torch.Generator().manual_seed(T * 10 + optional)
    inputs = make_inputs(gen, 2, T, 5, 3, torch.float64, optional)
    assert_close(inputs, EigRange.parse(eig_range), chunk=8, tol=1e-9)


@pytest.mark.parametrize("eig_range", [(0.0, 1.0), (-1.0, 1.0)])
def test_chunked_equals_reference_float32(eig_range: tuple[float, float]) -> None:
    """float32 matches the float32 loop within 1e-4 relative."""
    gen = torch.Generator().manual_seed(11)
    inputs = make_inputs(gen, 2, 45, 6, 4, torch.float32, optional=True)
    assert_close(inputs, EigRange.parse(eig_range), chunk=16, tol=1e-4)


def test_half_inputs_are_computed_in_float32() -> None:
    """bfloat16 inputs: y in bfloat16, h_T in float32, close to the float32 loop on the same
    (rounded) inputs."""
    gen = torch.Generator().manual_seed(12)
    inputs = make_inputs(gen, 1, 20, 4, 3, torch.bfloat16, optional=True)
    ins = {k: v for k, v in inputs.items() if v is not None}
    y, last = selective_scan(**ins, eig_range=(-1, 1), output_final_state=True, backend="torch")
    ins32 = {k: v.float() for k, v in ins.items()}
    y_ref, last_ref = selective_scan(**ins32, eig_range=(-1, 1), output_final_state=True,
                                     backend="reference")
    assert y.dtype == torch.bfloat16 and last.dtype == torch.float32
    assert rel(y, y_ref) < 1e-2 and rel(last, last_ref) < 1e-5


def test_exact_minus_one_and_plus_one_transitions() -> None:
    """With [-1, 1], exp(ΔA) underflowing to 0 (huge Δ·|A|) makes a = −1 exactly and Δ
    underflowing to 0 (softplus of a very negative dt) makes a = +1 exactly; the scan and all
    its gradients still match the loop to 1e-9."""
    gen = torch.Generator().manual_seed(13)
    inputs = make_inputs(gen, 2, 19, 4, 3, torch.float64, optional=True)
    dt = inputs["dt"]
    dt[:, ::3] = 800.0  # Δ = 800 and A ≤ −2 below: ΔA ≤ −1600, exp underflows to exactly 0
    dt[:, 1::3] = -800.0  # softplus(−800) = 0 in float64: ΔA = 0, exp(ΔA) = 1 exactly
    inputs["dt_bias"] = torch.zeros(4, dtype=torch.float64)
    inputs["A"] = inputs["A"] * 10.0
    delta = torch.nn.functional.softplus(dt)
    a = EigRange(-1, 1).map(torch.exp(delta[..., None] * inputs["A"]))
    assert (a[:, ::3] == -1).all() and (a[:, 1::3] == 1).all()
    assert_close(inputs, EigRange(-1, 1), chunk=4, tol=1e-9)


def test_chunk_size_does_not_change_the_result() -> None:
    """The torch backend gives the same y for chunk sizes 1, 5 and 64 (one chunk)."""
    gen = torch.Generator().manual_seed(14)
    ins = {k: v for k, v in make_inputs(gen, 1, 30, 3, 2, torch.float64, True).items()
           if v is not None}
    ys = [selective_scan(**ins, eig_range=(-1, 1), backend="torch", chunk_size=c)[0]
          for c in (1, 5, 64)]
    assert rel(ys[0], ys[2]) < 1e-12 and rel(ys[1], ys[2]) < 1e-12
