"""The xLSTM sLSTM layer (Beck et al. 2024): scalar memory, exponential gating, head-wise
recurrence."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from statetrack.eig import EigRange
from statetrack.layers._common import HeadNorm, ShortConv, check_heads, no_eig_range
from statetrack.layers.registry import register
from statetrack.ops._common import resolve_backend

# "reference" runs the torch loop (it is the reference of the kernel); "auto": see SLSTM
SLSTM_BACKENDS = ("torch", "triton", "auto", "reference")
FORGET_INITS = ("linspace", "powerlaw")
# (conv buffer [B, k−1, d], y, c, n, m [B, H, D])
SLSTMState = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


@register("slstm")
class SLSTM(nn.Module):
    """sLSTM with ``H`` heads of size ``D = d / H`` and block-diagonal recurrent weights R.

    Pre-activations ``(ĩ, f̃, z̃, õ)_t = W x_t + R y_{t−1} + b`` (i and f read ``silu(conv(x))``,
    z and o read x; W is head-wise block-diagonal); stabiliser
    ``m_t = max(log σ(f̃_t) + m_{t−1}, ĩ_t)``; ``i' = exp(ĩ − m_t)``,
    ``f' = exp(log σ(f̃) + m_{t−1} − m_t)``; ``c_t = f' c + i' tanh(z̃)``; ``n_t = f' n + i'``;
    ``y_t = σ(õ) c_t / n_t``; output ``headnorm(y)``. The zero state has m = −inf, so the
    first step sets m = ĩ. A token loop (``backend`` "torch" or "reference") or one fused
    Triton kernel (``backend="triton"``, CUDA only); "auto" (default) takes the kernel for CUDA
    inputs when Triton imports, else the loop. There is no linear transition to extend, so
    ``eig_range`` must stay [0, 1].

    ``forget_init`` sets the forget-gate bias over each head's channels k = 0..D−1:
    "powerlaw" (default; xLSTM's sLSTM default "powerlaw_blockdependent":
    ``5 − 12 (k / (D−1))^(0.3 + 1.3 r)`` from +5 down to −7, r = block index / (blocks − 1),
    so most channels of the first block start with a short memory, i.e. as a plain nonlinear
    RNN, which is what parity needs) or "linspace" (3 → 6 in every block: every memory long,
    like xLSTM's mLSTM and its sLSTM "small_init"; the init of the runs before this option).
    The model calls :meth:`set_block_position` once the stack is built.
    """

    def __init__(
        self,
        d_model: int,
        *,
        num_heads: int = 4,
        conv_kernel: int = 4,
        eig_range: Sequence[float] | str | EigRange = (0.0, 1.0),
        backend: str = "auto",
        forget_init: str = "powerlaw",
    ) -> None:
        super().__init__()
        no_eig_range("slstm", eig_range)
        if forget_init not in FORGET_INITS:
            raise ValueError(f"forget_init: expected one of {', '.join(FORGET_INITS)}, "
                             f"got {forget_init!r}")
        self.forget_init = forget_init
        if backend not in SLSTM_BACKENDS:
            raise ValueError(f"slstm backend: expected one of {', '.join(SLSTM_BACKENDS)}, "
                             f"got {backend!r}")
        self.backend = backend
        D = self.head_dim = check_heads(d_model, num_heads)
        H = self.num_heads = num_heads
        self.conv = ShortConv(d_model, conv_kernel)
        # Gate order (i, f, z, o); block-diagonal over heads as in xLSTM.
        self.W = nn.Parameter(torch.randn(4, H, D, D) * D ** -0.5)
        self.R = nn.Parameter(torch.zeros(H, D, 4, D))  # xLSTM initialises R to zero
        self.bias = nn.Parameter(torch.zeros(4, H, D))
        self.set_block_position(0, 1)
        self.out_norm = HeadNorm(H, D)

    @torch.no_grad()
    def set_block_position(self, block_idx: int, num_blocks: int) -> None:
        """(Re)initialise the forget-gate bias ``[H, D]`` for block ``block_idx`` of
        ``num_blocks`` (only "powerlaw" depends on it; see the class docstring)."""
        D = self.head_dim
        if self.forget_init == "linspace":
            values = torch.linspace(3.0, 6.0, D)
        else:
            r = block_idx / (num_blocks - 1) if num_blocks > 1 else 0.0
            k = torch.arange(D, dtype=torch.float64) / max(D - 1, 1)
            values = (5.0 - 12.0 * k ** (0.3 + 1.3 * r)).float()
        self.bias[1].copy_(values.to(self.bias).expand(self.num_heads, D))

    def resolved_backend(self, device: torch.device) -> str:
        """"triton" or "torch" (the loop), as :meth:`forward` picks it for inputs on ``device``:
        the ops' own rule (``resolve_backend``), with "reference" meaning the loop."""
        return "triton" if resolve_backend(self.backend, device) == "triton" else "torch"

    def _zero_state(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        B = x.shape[0]
        zeros = x.new_zeros(B, self.num_heads, self.head_dim)
        return zeros, zeros, zeros, torch.full_like(zeros, -math.inf)

    def forward(
        self, x: torch.Tensor, state: SLSTMState | None = None
    ) -> tuple[torch.Tensor, SLSTMState]:
        """x ``[B, T, d]`` → (``[B, T, d]``, (conv buffer, y, c, n, m ``[B, H, D]``))."""
        B, T, d = x.shape
        H, D = self.num_heads, self.head_dim
        xc, buf = self.conv(x, None if state is None else state[0])
        xc = F.silu(xc).view(B, T, H, D)
        xh = x.view(B, T, H, D)
        Wx = torch.stack([
            torch.einsum("bthi,hoi->btho", src, self.W[g])
            for g, src in enumerate((xc, xc, xh, xh))
        ], dim=2) + self.bias  # [B, T, 4, H, D]
        if self.resolved_backend(x.device) == "triton":
            ys, (y, c, n, m) = _triton_recurrence()(
                Wx, self.R, None if state is None else state[1:])
        else:
            y, c, n, m = self._zero_state(x) if state is None else state[1:]
            ys, (y, c, n, m) = slstm_recurrence_torch(Wx, self.R, y, c, n, m)
        out = self.out_norm(ys).reshape(B, T, d)
        return out, (buf, y, c, n, m)


def slstm_recurrence_torch(
    Wx: torch.Tensor, R: torch.Tensor, y: torch.Tensor, c: torch.Tensor, n: torch.Tensor,
    m: torch.Tensor,
) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]:
    """The sLSTM token loop (the reference of the Triton backend).

    Wx ``[B, T, 4, H, D]`` (gates i, f, z, o, bias included), R ``[H, D, 4, D]``, state
    y, c, n, m ``[B, H, D]`` (m = −inf for the zero state) → (ys ``[B, T, H, D]``,
    (y, c, n, m) after the last step).
    """
    ys = []
    for t in range(Wx.shape[1]):
        raw = Wx[:, t] + torch.einsum("bhi,higo->bgho", y, R)
        i, f, z, o = raw.unbind(1)
        logf_m = F.logsigmoid(f) + m
        m_new = torch.maximum(logf_m, i)
        fp, ip = torch.exp(logf_m - m_new), torch.exp(i - m_new)
        c = fp * c + ip * torch.tanh(z)
        n = fp * n + ip  # f' = 1 or i' = 1 at every step, so n >= 1: never near zero
        y = torch.sigmoid(o) * c / n
        m = m_new
        ys.append(y)
    return torch.stack(ys, dim=1), (y, c, n, m)


def _triton_recurrence() -> Callable[..., tuple[torch.Tensor, tuple[torch.Tensor, ...]]]:
    """``slstm_triton.slstm_recurrence_triton``, imported only when asked for (Triton is an
    optional dependency)."""
    try:
        from statetrack.layers.slstm_triton import slstm_recurrence_triton
    except ImportError as err:
        raise ValueError("slstm backend='triton' needs the triton package: "
                         "pip install statetrack[gpu]") from err
    return slstm_recurrence_triton
