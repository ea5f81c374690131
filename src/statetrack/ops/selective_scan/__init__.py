"""Mamba-1's selective scan with the eigenvalue map fused in."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from statetrack.eig import EigRange
from statetrack.ops._common import (
    FLOAT_DTYPES,
    check_same_device,
    check_shape,
    check_tensor,
    opaque,
    resolve_backend,
)
from statetrack.ops.selective_scan.reference import selective_scan_reference

__all__ = ["selective_scan", "selective_scan_reference"]

_FLOATS = frozenset(FLOAT_DTYPES)


@opaque
def selective_scan(
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    *,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    dt_bias: torch.Tensor | None = None,
    eig_range: EigRange | Sequence[float] = (0.0, 1.0),
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
    backend: str = "auto",
    chunk_size: int = 64,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Mamba-1 semantics with a signed transition.

    ``Δ = softplus(dt + dt_bias)``; ``a = lo + (hi − lo)·exp(Δ·A)``;
    ``h_t = a_t ⊙ h_{t−1} + Δ_t B_t x_t``; ``y_t = C_t·h_t + D ⊙ x_t``; ``y ← y ⊙ silu(z)``.

    Args:
        x, dt: ``[B, T, Dm]``; A: ``[Dm, N]`` (negative); B, C: ``[B, T, N]``.
        D, dt_bias: ``[Dm]`` or None; z: ``[B, T, Dm]`` or None.
        eig_range: ``[lo, hi]`` with ``-1 <= lo < hi <= 1``; ``[-1, 1]`` gives ``2·exp(ΔA) − 1``.
        initial_state: ``[B, Dm, N]`` or None (= 0).
        output_final_state: also return ``h_T`` (float32, float64 for float64 inputs).
        backend: ``"auto"`` | ``"reference"`` | ``"torch"`` | ``"triton"``.

    Returns:
        ``(y [B, T, Dm] in x's dtype, h_T [B, Dm, N] or None)``.
    """
    eig_range = EigRange.parse(eig_range)
    if not _well_formed(x, dt, A, B, C, D, z, dt_bias, initial_state):
        _check_inputs(x, dt, A, B, C, D, z, dt_bias, initial_state)
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size: expected a positive int, got {chunk_size!r}")

    backend = resolve_backend(backend, x.device)
    args = (x, dt, A, B, C, D, z, dt_bias, eig_range, initial_state)
    if backend == "reference":
        y, h = selective_scan_reference(*args)
    elif backend == "torch":
        from statetrack.ops.selective_scan.chunked import selective_scan_chunked

        y, h = selective_scan_chunked(*args, chunk_size=chunk_size)
    else:
        from statetrack.ops.selective_scan.triton_impl import selective_scan_triton

        y, h = selective_scan_triton(*args, output_final_state=output_final_state)
    return y, (h if output_final_state else None)


def _well_formed(x: torch.Tensor, dt: torch.Tensor, A: torch.Tensor, B: torch.Tensor,
                 C: torch.Tensor, D: torch.Tensor | None, z: torch.Tensor | None,
                 dt_bias: torch.Tensor | None, initial_state: torch.Tensor | None) -> bool:
    """True when every input is a floating tensor of its layout's shape on x's device, which
    ``_check_inputs`` would pass: one pass without its calls (host time at every step). Else
    False, and ``_check_inputs`` names the first bad argument."""
    if not (isinstance(x, torch.Tensor) and isinstance(A, torch.Tensor)
            and x.ndim == 3 and A.ndim == 2):
        return False
    xs = x.shape
    Bsz, T, Dm = xs
    N = A.shape[1]
    device = x.device
    bs = (Bsz, T, N)
    for t, shape, optional in ((x, xs, False), (dt, xs, False), (A, (Dm, N), False),
                               (B, bs, False), (C, bs, False), (D, (Dm,), True),
                               (z, xs, True), (dt_bias, (Dm,), True),
                               (initial_state, (Bsz, Dm, N), True)):
        if t is None and optional:
            continue
        if not (isinstance(t, torch.Tensor) and t.shape == shape and t.dtype in _FLOATS
                and t.device == device):
            return False
    return True


def _check_inputs(x: torch.Tensor, dt: torch.Tensor, A: torch.Tensor, B: torch.Tensor,
                  C: torch.Tensor, D: torch.Tensor | None, z: torch.Tensor | None,
                  dt_bias: torch.Tensor | None, initial_state: torch.Tensor | None) -> None:
    """Raise ``ValueError`` naming the first argument that is not a floating tensor of its
    layout's shape, or inputs on more than one device."""
    check_tensor("x", x, 3, "[B, T, Dm]")
    Bsz, T, Dm = x.shape
    check_tensor("dt", dt, 3, "[B, T, Dm]")
    check_shape("dt", dt, (Bsz, T, Dm), "[B, T, Dm]")
    check_tensor("A", A, 2, "[Dm, N]")
    N = A.shape[1]
    check_shape("A", A, (Dm, N), "[Dm, N]")
    check_tensor("B", B, 3, "[B, T, N]")
    check_shape("B", B, (Bsz, T, N), "[B, T, N]")
    check_tensor("C", C, 3, "[B, T, N]")
    check_shape("C", C, (Bsz, T, N), "[B, T, N]")
    check_tensor("D", D, 1, "[Dm]", optional=True)
    check_shape("D", D, (Dm,), "[Dm]")
    check_tensor("z", z, 3, "[B, T, Dm]", optional=True)
    check_shape("z", z, (Bsz, T, Dm), "[B, T, Dm]")
    check_tensor("dt_bias", dt_bias, 1, "[Dm]", optional=True)
    check_shape("dt_bias", dt_bias, (Dm,), "[Dm]")
    check_tensor("initial_state", initial_state, 3, "[B, Dm, N]", optional=True)
    check_shape("initial_state", initial_state, (Bsz, Dm, N), "[B, Dm, N]")
    check_same_device(x=x, dt=dt, A=A, B=B, C=C, D=D, z=z, dt_bias=dt_bias,
                      initial_state=initial_state)
