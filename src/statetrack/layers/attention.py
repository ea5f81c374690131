"""Causal multi-head softmax attention with rotary positions; its state is a key/value cache."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from statetrack.eig import EigRange
from statetrack.layers._common import check_heads, no_eig_range
from statetrack.layers.registry import register

KVCache = tuple[torch.Tensor, torch.Tensor]  # keys, values [B, H, S, Dh] (rotated keys)


def rotate(x: torch.Tensor, start: int, base: float) -> torch.Tensor:
    """Rotary embedding (rotate-half form) of x ``[B, H, T, Dh]`` at positions start..start+T−1.

    Angles are computed in float64 so that a position gives the same rotation whether it is
    reached in one call or through a cache."""
    T, Dh = x.shape[-2], x.shape[-1]
    inv_freq = base ** (-torch.arange(0, Dh, 2, dtype=torch.float64, device=x.device) / Dh)
    pos = torch.arange(start, start + T, dtype=torch.float64, device=x.device)
    angle = pos[:, None] * inv_freq
    cos, sin = angle.cos().to(x.dtype), angle.sin().to(x.dtype)
    x1, x2 = x[..., : Dh // 2], x[..., Dh // 2:]
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


@register("attention")
class Attention(nn.Module):
    """``softmax(q kᵀ / √Dh + causal mask) v`` per head, q and k rotated by position.

    x ``[B, T, d]``; q, k, v ``[B, H, T, Dh]`` with ``Dh = d / H`` (even). The state is the cache
    of rotated keys and values; a call continues at position ``S = cache length``.
    """

    def __init__(
        self,
        d_model: int,
        *,
        num_heads: int = 4,
        rope_base: float = 10000.0,
        eig_range: Sequence[float] | str | EigRange = (0.0, 1.0),
    ) -> None:
        super().__init__()
        no_eig_range("attention", eig_range)
        self.head_dim = check_heads(d_model, num_heads)
        if self.head_dim % 2:
            raise ValueError(f"num_heads: rotary embeddings need an even head dim, got "
                             f"d_model / num_heads = {d_model} / {num_heads} = {self.head_dim}")
        if not rope_base > 1.0:
            raise ValueError(f"rope_base: expected a number > 1, got {rope_base!r}")
        self.num_heads = num_heads
        self.rope_base = float(rope_base)
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.out_proj = nn.Linear(d_model, d_model, bias=False)

    def forward(
        self, x: torch.Tensor, state: KVCache | None = None
    ) -> tuple[torch.Tensor, KVCache]:
        """x ``[B, T, d]`` → (y ``[B, T, d]``, (keys, values) ``[B, H, S + T, Dh]``)."""
        B, T, d = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        past = 0 if state is None else state[0].shape[2]
        q, k = rotate(q, past, self.rope_base), rotate(k, past, self.rope_base)
        if state is None:
            o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            k, v = torch.cat([state[0], k], dim=2), torch.cat([state[1], v], dim=2)
            # is_causal aligns the mask top-left; with a cache query i sits at position past + i.
            mask = (torch.arange(past + T, device=x.device)[None, :]
                    <= torch.arange(past, past + T, device=x.device)[:, None])
            o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.out_proj(o.transpose(1, 2).reshape(B, T, d)), (k, v)
