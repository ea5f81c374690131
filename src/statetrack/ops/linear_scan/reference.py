"""The diagonal linear recurrence as a token loop: the definition."""

from __future__ import annotations

import torch


def linear_scan_reference(
    a: torch.Tensor, b: torch.Tensor, initial_state: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``h_t = a_t ⊙ h_{t−1} + b_t`` along dim 1; a, b [B, T, *]; h_0 [B, *] (zeros if None)."""
    acc = torch.float64 if b.dtype == torch.float64 else torch.float32
    h = (torch.zeros_like(b[:, 0], dtype=acc) if initial_state is None
         else initial_state.to(acc))
    hs = []
    for t in range(b.shape[1]):
        h = a[:, t].to(acc) * h + b[:, t].to(acc)
        hs.append(h)
    out = torch.stack(hs, dim=1) if hs else b.new_zeros(b.shape, dtype=acc)
    return out.to(b.dtype), h
