"""The delta rule as a token loop: the definition every other form is tested against."""

from __future__ import annotations

import torch


def delta_rule_reference(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    beta: torch.Tensor,
    gate: torch.Tensor | None = None,
    initial_state: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``S_t = gate_t·(I − β_t k_t k_tᵀ) S_{t−1} + β_t k_t v_tᵀ``,  ``o_t = S_tᵀ q_t``.

    q, k [B,T,H,K]; v [B,T,H,V]; beta, gate [B,T,H]; S [B,H,K,V] in float32 (or float64).
    Returns (o [B,T,H,V] in v's dtype, S_T).
    """
    B, T, H, K = k.shape
    V = v.shape[-1]
    acc = torch.float64 if q.dtype == torch.float64 else torch.float32
    S = (torch.zeros(B, H, K, V, dtype=acc, device=q.device) if initial_state is None
         else initial_state.to(acc))
    outs = []
    for t in range(T):
        q_t, k_t, v_t = q[:, t].to(acc), k[:, t].to(acc), v[:, t].to(acc)
        b_t = beta[:, t].to(acc)[..., None, None]
        if gate is not None:
            S = gate[:, t].to(acc)[..., None, None] * S
        kS = torch.einsum("bhk,bhkv->bhv", k_t, S)
        # (I − β k kᵀ) S + β k vᵀ  =  S + β k (v − kᵀS)ᵀ
        S = S + b_t * k_t[..., :, None] * (v_t - kS)[..., None, :]
        outs.append(torch.einsum("bhk,bhkv->bhv", q_t, S))
    o = torch.stack(outs, dim=1) if T else v.new_zeros(B, 0, H, V, dtype=acc)
    return o.to(v.dtype), S
