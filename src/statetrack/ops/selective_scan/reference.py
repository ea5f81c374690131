"""Mamba-1's selective scan as a token loop: the definition."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from statetrack.eig import DEFAULT, EigRange


def selective_scan_reference(
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    dt_bias: torch.Tensor | None = None,
    eig_range: EigRange = DEFAULT,
    initial_state: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Δ = softplus(dt + dt_bias); a = lo + (hi − lo)·exp(Δ·A); h_t = a_t h_{t−1} + Δ_t B_t x_t;
    y_t = C_t·h_t + D x_t; y ← y · silu(z).

    x, dt, z [B,T,Dm]; A [Dm,N]; B, C [B,T,N]; D, dt_bias [Dm]; h [B,Dm,N].
    Returns (y [B,T,Dm] in x's dtype, h_T).
    """
    acc = torch.float64 if x.dtype == torch.float64 else torch.float32
    x_, dt_, A_, B_, C_ = (t.to(acc) for t in (x, dt, A, B, C))
    if dt_bias is not None:
        dt_ = dt_ + dt_bias.to(acc)
    delta = F.softplus(dt_)
    Bsz, T, Dm = x.shape
    N = A.shape[1]
    h = (torch.zeros(Bsz, Dm, N, dtype=acc, device=x.device) if initial_state is None
         else initial_state.to(acc))
    ys = []
    for t in range(T):
        a_t = eig_range.map(torch.exp(delta[:, t, :, None] * A_))
        h = a_t * h + (delta[:, t] * x_[:, t])[:, :, None] * B_[:, t, None, :]
        ys.append(torch.einsum("bdn,bn->bd", h, C_[:, t]))
    y = torch.stack(ys, dim=1) if ys else x_.new_zeros(Bsz, 0, Dm)
    if D is not None:
        y = y + D.to(acc) * x_
    if z is not None:
        y = y * F.silu(z.to(acc))
    return y.to(x.dtype), h
