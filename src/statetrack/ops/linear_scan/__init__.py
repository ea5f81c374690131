"""The signed diagonal linear recurrence ``h_t = a_t ⊙ h_{t−1} + b_t``."""

from __future__ import annotations

import torch

from statetrack.ops._common import check_same_device, check_shape, opaque, resolve_backend
from statetrack.ops._common import check_tensor as _check
from statetrack.ops.linear_scan.reference import linear_scan_reference

__all__ = ["linear_scan", "linear_scan_reference"]


@opaque
def linear_scan(
    a: torch.Tensor,
    b: torch.Tensor,
    *,
    initial_state: torch.Tensor | None = None,
    backend: str = "auto",
    chunk_size: int = 64,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``h_t = a_t ⊙ h_{t−1} + b_t`` along dim 1.

    a is signed and may be exactly 0 or ±1 (no log of a signed number is taken without its
    sign).

    Args:
        a, b: ``[B, T, *]`` (any trailing shape, the same for both).
        initial_state: ``[B, *]`` or None (= 0).
        backend: ``"auto"`` | ``"reference"`` | ``"torch"`` | ``"triton"``.
        chunk_size: chunk length of the chunkwise-parallel torch form.

    Returns:
        ``(h [B, T, *] in b's dtype, h_T [B, *] in float32, float64 for float64 inputs)``.
    """
    if not isinstance(b, torch.Tensor) or b.ndim < 2:
        raise ValueError(f"b: expected a tensor of shape [B, T, *], got "
                         f"{tuple(b.shape) if isinstance(b, torch.Tensor) else type(b).__name__}")
    _check("b", b, b.ndim, "[B, T, *]")
    _check("a", a, b.ndim, "[B, T, *] (the shape of b)")
    check_shape("a", a, b.shape, "[B, T, *] (the shape of b)")
    _check("initial_state", initial_state, b.ndim - 1, "[B, *]", optional=True)
    check_shape("initial_state", initial_state, (b.shape[0], *b.shape[2:]), "[B, *]")
    check_same_device(a=a, b=b, initial_state=initial_state)
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size: expected a positive int, got {chunk_size!r}")

    backend = resolve_backend(backend, b.device)
    if backend == "reference":
        return linear_scan_reference(a, b, initial_state)
    if backend == "torch":
        from statetrack.ops.linear_scan.chunked import linear_scan_chunked

        return linear_scan_chunked(a, b, initial_state, chunk_size)
    from statetrack.ops.linear_scan.triton_impl import linear_scan_triton

    return linear_scan_triton(a, b, initial_state)
