"""The xLSTM mLSTM block (Beck et al. 2024): matrix memory with exponential gating."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from statetrack.eig import EigRange
from statetrack.layers._common import HeadNorm, ShortConv, check_heads, check_int, no_eig_range
from statetrack.layers.registry import register

CellState = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # C [B,H,D,D], n [B,H,D], m [B,H]
MLSTMState = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]  # conv buffer + cell


def mlstm_recurrent(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, i: torch.Tensor, f: torch.Tensor,
    state: CellState | None = None,
) -> tuple[torch.Tensor, CellState]:
    """The mLSTM cell as a token loop (the definition).

    ``m_t = max(log σ(f_t) + m_{t−1}, i_t)``; ``f' = exp(log σ(f_t) + m_{t−1} − m_t)``,
    ``i' = exp(i_t − m_t)``; ``C_t = f' C_{t−1} + i' k_t v_tᵀ``; ``n_t = f' n_{t−1} + i' k_t``;
    ``h_t = C_tᵀ q_t / max(|n_tᵀ q_t|, exp(−m_t))`` with k scaled by D^-½.
    q, k, v ``[B, H, T, D]``; i, f ``[B, H, T]`` (pre-activations). The stabiliser m cancels in
    h (C, n and exp(−m) all carry the factor exp(−m)); the zero state has m = −inf, so the
    first step sets m = i exactly as the parallel form's row maximum does.
    """
    Bsz, H, T, D = q.shape
    k = k * D ** -0.5
    if state is None:
        C, n = q.new_zeros(Bsz, H, D, D), q.new_zeros(Bsz, H, D)
        m = q.new_full((Bsz, H), -math.inf)
    else:
        C, n, m = state
    logf = F.logsigmoid(f)
    hs = []
    for t in range(T):
        m_new = torch.maximum(logf[:, :, t] + m, i[:, :, t])
        fp = torch.exp(logf[:, :, t] + m - m_new)
        ip = torch.exp(i[:, :, t] - m_new)
        C = fp[..., None, None] * C + ip[..., None, None] * k[:, :, t, :, None] * v[:, :, t, None]
        n = fp[..., None] * n + ip[..., None] * k[:, :, t]
        m = m_new
        num = torch.einsum("bhd,bhde->bhe", q[:, :, t], C)
        den = torch.maximum((n * q[:, :, t]).sum(-1).abs(), torch.exp(-m))
        hs.append(num / den[..., None])
    return torch.stack(hs, dim=2), (C, n, m)


def mlstm_parallel(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, i: torch.Tensor, f: torch.Tensor,
    state: CellState | None = None,
) -> tuple[torch.Tensor, CellState]:
    """The same cell in its parallel (attention-like) form, continuing from ``state``.

    ``log D_tj = F_t − F_j + i_j`` (j ≤ t) with ``F = cumsum log σ(f)``; the initial state
    enters with log-weight ``F_t + m_0``; the row stabiliser ``m_t`` is the maximum of these,
    which is exactly the recurrent m_t. ``O(T²)`` memory per call.
    """
    Bsz, H, T, D = q.shape
    k = k * D ** -0.5
    Fc = torch.cumsum(F.logsigmoid(f), dim=-1)  # [B, H, T]
    causal = torch.ones(T, T, dtype=torch.bool, device=q.device).tril()
    logD = (Fc[..., :, None] - Fc[..., None, :] + i[..., None, :]).masked_fill(~causal, -math.inf)
    m = logD.amax(dim=-1)
    if state is not None:
        C0, n0, m0 = state
        log_w0 = Fc + m0[..., None]
        m = torch.maximum(m, log_w0)
    W = torch.exp(logD - m[..., None]) * (q @ k.transpose(-1, -2))  # [B, H, T, T]
    num, nq = W @ v, W.sum(-1)
    Wlast = torch.exp(logD[..., -1, :] - m[..., -1:])  # the final state's weights [B, H, T]
    C = torch.einsum("bht,bhtd,bhte->bhde", Wlast, k, v)
    n = torch.einsum("bht,bhtd->bhd", Wlast, k)
    if state is not None:
        w0 = torch.exp(log_w0 - m)
        num = num + w0[..., None] * (q @ C0)
        nq = nq + w0 * (q @ n0[..., None])[..., 0]
        C = C + w0[..., -1, None, None] * C0
        n = n + w0[..., -1, None] * n0
    h = num / torch.maximum(nq.abs(), torch.exp(-m))[..., None]
    return h, (C, n, m[..., -1])


class BlockLinear(nn.Module):
    """Block-diagonal linear map (xLSTM's LinearHeadwiseExpand): blocks of ``blocksize``."""

    def __init__(self, dim: int, blocksize: int) -> None:
        super().__init__()
        self.blocksize = blocksize
        nb = dim // blocksize
        self.weight = nn.Parameter(torch.randn(nb, blocksize, blocksize) * blocksize ** -0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xb = x.view(*x.shape[:-1], -1, self.blocksize)
        return torch.einsum("...ni,noi->...no", xb, self.weight).reshape(x.shape)


@register("mlstm")
class MLSTM(nn.Module):
    """The mLSTM layer of xLSTM's mLSTM block (the block's pre-norm is the model's).

    ``x, z = up(u)`` (``Di = expand·d``); ``c = silu(conv(x))``; ``q, k = blocklinear(c)``,
    ``v = blocklinear(x)``; gates ``i, f = W [q, k, v] + b`` per head; ``h = cell(q, k, v, i, f)``;
    ``y = down((headnorm(h) + D ⊙ c) ⊙ silu(z))``. The parallel form runs each call, continuing
    from the carried (conv buffer, C, n, m). There is no linear transition whose eigenvalues
    could be extended, so ``eig_range`` must stay [0, 1].
    """

    def __init__(
        self,
        d_model: int,
        *,
        num_heads: int = 4,
        expand: int = 2,
        conv_kernel: int = 4,
        qkv_blocksize: int = 4,
        eig_range: Sequence[float] | str | EigRange = (0.0, 1.0),
    ) -> None:
        super().__init__()
        no_eig_range("mlstm", eig_range)
        Di = check_int("expand", expand) * d_model
        self.head_dim = check_heads(Di, num_heads)
        check_int("qkv_blocksize", qkv_blocksize)
        if Di % qkv_blocksize:
            raise ValueError(f"qkv_blocksize: expected a divisor of expand·d_model={Di}, "
                             f"got {qkv_blocksize}")
        self.num_heads, self.d_inner = num_heads, Di
        self.up_proj = nn.Linear(d_model, 2 * Di, bias=False)
        self.conv = ShortConv(Di, conv_kernel)
        self.q_proj, self.k_proj, self.v_proj = (BlockLinear(Di, qkv_blocksize) for _ in range(3))
        self.gates = nn.Linear(3 * Di, 2 * num_heads, bias=True)
        self.out_norm = HeadNorm(num_heads, self.head_dim)
        self.D = nn.Parameter(torch.ones(Di))  # xLSTM's learnable skip
        self.down_proj = nn.Linear(Di, d_model, bias=False)
        with torch.no_grad():  # xLSTM: zero gate weights, i bias ~ N(0, 0.1), f bias 3..6
            self.gates.weight.zero_()
            self.gates.bias[:num_heads].normal_(0.0, 0.1)
            self.gates.bias[num_heads:].copy_(torch.linspace(3.0, 6.0, num_heads))

    def forward(
        self, u: torch.Tensor, state: MLSTMState | None = None
    ) -> tuple[torch.Tensor, MLSTMState]:
        """u ``[B, T, d]`` → (y ``[B, T, d]``, (conv buffer, C ``[B, H, D, D]``, n, m))."""
        Bsz, T, _ = u.shape
        H, D = self.num_heads, self.head_dim
        x, z = self.up_proj(u).chunk(2, dim=-1)
        c, buf = self.conv(x, None if state is None else state[0])
        c = F.silu(c)
        q, k, v = self.q_proj(c), self.k_proj(c), self.v_proj(x)
        i, f = self.gates(torch.cat([q, k, v], dim=-1)).transpose(1, 2).chunk(2, dim=1)
        heads = lambda t: t.view(Bsz, T, H, D).transpose(1, 2)
        h, cell = mlstm_parallel(heads(q), heads(k), heads(v), i, f,
                                 None if state is None else state[1:])
        h = self.out_norm(h.transpose(1, 2)).reshape(Bsz, T, self.d_inner)
        y = self.down_proj((h + self.D * c) * F.silu(z))
        return y, (buf, *cell)
