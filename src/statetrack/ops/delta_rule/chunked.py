"""The delta rule in chunkwise-parallel PyTorch (WY/UT representation); see README.md.

Inside a chunk of ``C`` tokens the state is ``S_t = γ_t S_0 + Σ_{s≤t} Γ_ts k_s w_sᵀ`` with
``Γ_ts = ∏_{s<r≤t} g_r`` and ``γ_t = ∏_{r≤t} g_r``; the "new values" ``w`` solve the unit
lower-triangular system ``(I + L) W = diag(β) V − diag(β γ) K S_0`` with
``L = strictly_lower(diag(β) K Kᵀ ⊙ Γ)``. All chunks are solved at once as batched matmuls; only
the ``[K, K]``-by-``[K, V]`` state recurrence across chunks is a Python loop.
"""

from __future__ import annotations

import torch


def _to_chunks(x: torch.Tensor, n_chunks: int, chunk: int, fill: float) -> torch.Tensor:
    """``[B, T, H, *D]`` → ``[B, H, N, C, *D]``, padding time with ``fill`` to ``N·C``."""
    B, T, H = x.shape[:3]
    pad = n_chunks * chunk - T
    if pad:
        tail = x.new_full((B, pad, *x.shape[2:]), fill)
        x = torch.cat([x, tail], dim=1)
    x = x.reshape(B, n_chunks, chunk, *x.shape[2:])
    return x.movedim(3, 1)  # [B, H, N, C, *D]


def _decays(gate: torch.Tensor | None, shape: torch.Size, like: torch.Tensor
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """Pairwise decays ``Γ [.., C, C]`` (lower triangle incl. diagonal, zero above) and
    ``γ [.., C]`` from a signed gate ``[.., C]``.

    ``Γ_ts = ∏_{s<r≤t} g_r`` is a cumulative product down the columns of the matrix
    ``M_rs = g_r if r > s else 1``. No log is taken, so negative gates keep their sign and an
    exact zero stays an exact zero; autograd through ``torch.cumprod`` is exact at zeros too
    (its backward does not divide by the input when a factor is 0).
    """
    C = shape[-1]
    ones = torch.ones(C, C, dtype=torch.bool, device=like.device)
    lower = torch.tril(ones)
    if gate is None:
        Gam = lower.to(like.dtype).expand(*shape, C)
        return Gam, like.new_ones(shape)
    strict = torch.tril(ones, diagonal=-1)
    M = torch.where(strict, gate[..., :, None], gate.new_ones(()))
    Gam = torch.cumprod(M, dim=-2).masked_fill(~lower, 0.0)
    return Gam, torch.cumprod(gate, dim=-1)


def delta_rule_chunked(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    beta: torch.Tensor,
    gate: torch.Tensor | None = None,
    initial_state: torch.Tensor | None = None,
    chunk_size: int = 64,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``S_t = gate_t·(I − β_t k_t k_tᵀ) S_{t−1} + β_t k_t v_tᵀ``,  ``o_t = S_tᵀ q_t``.

    q, k ``[B, T, H, K]``; v ``[B, T, H, V]``; beta, gate ``[B, T, H]`` (gate signed, may be 0);
    initial_state ``[B, H, K, V]``. Computes in float32 (float64 for float64 inputs).
    Returns ``(o [B, T, H, V] in v's dtype, S_T [B, H, K, V])``. Differentiable by autograd.
    """
    B, T, H, K = k.shape
    V = v.shape[-1]
    acc = torch.float64 if q.dtype == torch.float64 else torch.float32
    S = (q.new_zeros(B, H, K, V, dtype=acc) if initial_state is None
         else initial_state.to(acc).clone())
    if T == 0:
        return v.new_zeros(B, 0, H, V), S
    C = min(chunk_size, T)
    N = -(-T // C)
    # Padding is a no-op token: k = 0, β = 0 writes nothing and reads nothing, gate = 1 keeps S.
    qc, kc, vc = (_to_chunks(x.to(acc), N, C, 0.0) for x in (q, k, v))  # [B, H, N, C, D]
    bc = _to_chunks(beta.to(acc), N, C, 0.0)  # [B, H, N, C]
    gc = None if gate is None else _to_chunks(gate.to(acc), N, C, 1.0)
    Gam, gam = _decays(gc, bc.shape, bc)  # [B, H, N, C, C], [B, H, N, C]

    # (I + L) [U | Wk] = [diag(β) V | diag(βγ) K]; L strictly lower, solved by substitution.
    # With β ∈ [0, 2] and ‖k‖ = 1 the rows of U are intra-chunk states' residuals, bounded by
    # 2·C·max‖v‖, so the solve stays well-conditioned even at β → 2 (see README).
    L = (bc[..., :, None] * (kc @ kc.transpose(-1, -2)) * Gam).tril(diagonal=-1)
    eye = torch.eye(C, dtype=acc, device=q.device)
    rhs = torch.cat([bc[..., None] * vc, (bc * gam)[..., None] * kc], dim=-1)
    UW = torch.linalg.solve_triangular(eye + L, rhs, upper=False, unitriangular=True)
    U, Wk = UW[..., :V], UW[..., V:]  # [B, H, N, C, V], [B, H, N, C, K]

    # Chunk transition S ← M S + R with M = γ_C I − Kdecᵀ Wk (the product of the chunk's C
    # transitions) and R = Kdecᵀ U, where Kdec_s = Γ_Cs k_s.
    k_dec = Gam[..., -1, :, None] * kc  # [B, H, N, C, K]
    M = gam[..., -1, None, None] * torch.eye(K, dtype=acc, device=q.device)
    M = M - k_dec.transpose(-1, -2) @ Wk  # [B, H, N, K, K]
    R = k_dec.transpose(-1, -2) @ U  # [B, H, N, K, V]
    starts = []
    for n in range(N):
        starts.append(S)
        S = M[:, :, n] @ S + R[:, :, n]
    S0 = torch.stack(starts, dim=2)  # [B, H, N, K, V]: the state entering each chunk

    # o_t = γ_t S_0ᵀ q_t + Σ_{s≤t} Γ_ts (q_t·k_s) w_s with W = U − Wk S_0.
    W = U - Wk @ S0
    P = (qc @ kc.transpose(-1, -2)) * Gam
    o = gam[..., None] * (qc @ S0) + P @ W  # [B, H, N, C, V]
    o = o.movedim(1, 3).reshape(B, N * C, H, V)[:, :T]
    return o.to(v.dtype), S
