"""The (gated) delta rule with β in [0, 2]: generalized Householder transitions."""

from __future__ import annotations

import warnings

import torch

from statetrack.ops._common import (
    check_same_device,
    check_shape,
    check_tensor,
    opaque,
    resolve_backend,
)
from statetrack.ops.delta_rule.reference import delta_rule_reference

__all__ = ["delta_rule", "delta_rule_reference"]


@opaque
def delta_rule(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    beta: torch.Tensor,
    *,
    gate: torch.Tensor | None = None,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
    backend: str = "auto",
    chunk_size: int = 64,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The delta rule with a signed scalar gate.

    ``S_t = gate_t · (I − β_t k_t k_tᵀ) S_{t−1} + β_t k_t v_tᵀ``,   ``o_t = S_tᵀ q_t``
    (no implicit scale on q). With ‖k_t‖ = 1 the transition's eigenvalue along k_t is
    ``gate_t·(1 − β_t)``: β ∈ [0, 2] puts it in [−1, 1].

    Args:
        q, k: ``[B, T, H, K]``; v: ``[B, T, H, V]``; beta: ``[B, T, H]``.
        gate: ``[B, T, H]`` or None (= 1); may be negative or exactly zero.
        initial_state: ``[B, H, K, V]`` or None (= 0).
        output_final_state: also return ``S_T`` (float32, float64 for float64 inputs).
        backend: ``"auto"`` | ``"reference"`` | ``"torch"`` | ``"triton"``.
        chunk_size: chunk length of the chunkwise-parallel forms.

    Returns:
        ``(o [B, T, H, V] in v's dtype, S_T [B, H, K, V] or None)``.
    """
    check_tensor("q", q, 4, "[B, T, H, K]")
    Bsz, T, H, K = q.shape
    check_tensor("k", k, 4, "[B, T, H, K]")
    check_shape("k", k, (Bsz, T, H, K), "[B, T, H, K]")
    check_tensor("v", v, 4, "[B, T, H, V]")
    V = v.shape[-1]
    check_shape("v", v, (Bsz, T, H, V), "[B, T, H, V]")
    check_tensor("beta", beta, 3, "[B, T, H]")
    check_shape("beta", beta, (Bsz, T, H), "[B, T, H]")
    check_tensor("gate", gate, 3, "[B, T, H]", optional=True)
    check_shape("gate", gate, (Bsz, T, H), "[B, T, H]")
    check_tensor("initial_state", initial_state, 4, "[B, H, K, V]", optional=True)
    check_shape("initial_state", initial_state, (Bsz, H, K, V), "[B, H, K, V]")
    check_same_device(q=q, k=k, v=v, beta=beta, gate=gate, initial_state=initial_state)
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size: expected a positive int, got {chunk_size!r}")

    backend = resolve_backend(backend, q.device)
    if backend == "reference":
        o, S = delta_rule_reference(q, k, v, beta, gate, initial_state)
    elif backend == "torch":
        from statetrack.ops.delta_rule.chunked import delta_rule_chunked

        o, S = delta_rule_chunked(q, k, v, beta, gate, initial_state, chunk_size)
    else:
        from statetrack.ops.delta_rule.triton_impl import delta_rule_triton

        _warn_mixed_dtypes(q, k, v)
        o, S = delta_rule_triton(q, k, v, beta, gate, initial_state, output_final_state)
    return o, (S if output_final_state else None)


def _warn_mixed_dtypes(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
    """The Triton kernels take their dot precision and stored dtype from q: float32 q and k
    with 16-bit v run the exact-float32 path (several times slower, TRITON.md), which a caller
    under autocast gets without asking (``F.normalize`` returns float32 there)."""
    if q.dtype == k.dtype == v.dtype:
        return
    warnings.warn(
        f"delta_rule (triton): q {q.dtype}, k {k.dtype}, v {v.dtype} differ; the kernels "
        f"compute in q's dtype ({q.dtype}). Cast q and k to v's dtype for the 16-bit path.",
        stacklevel=3,
    )

