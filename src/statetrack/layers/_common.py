"""Pieces shared by the mixers: option checks, a stateful causal conv, a per-head norm."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from statetrack.eig import EigRange
from statetrack.ops._common import BACKENDS


def check_int(name: str, value: Any, minimum: int = 1) -> int:
    """Return ``value`` if it is an int ``>= minimum``, else raise a ``ValueError`` naming it."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name}: expected an int >= {minimum}, got {value!r}")
    return value


def check_heads(d_model: int, num_heads: Any, name: str = "num_heads") -> int:
    """``num_heads`` must divide ``d_model``; returns the head dim."""
    check_int(name, num_heads)
    if d_model % num_heads:
        raise ValueError(f"{name}: expected a divisor of d_model={d_model}, got {num_heads}")
    return d_model // num_heads


def check_backend(backend: Any) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"backend: expected one of {', '.join(BACKENDS)}, got {backend!r}")
    return backend


def no_eig_range(mixer: str, eig_range: Any) -> None:
    """Mixers without a linear transition accept only the default ``[0, 1]``, never silently
    ignore a request for negative eigenvalues."""
    rng = EigRange.parse(eig_range)
    if not rng.is_default:
        raise ValueError(f"eig_range: mixer {mixer!r} has no eigenvalues to extend; "
                         f"allowed: [0, 1], got {rng}")


class _ConvTaps(torch.autograd.Function):
    """``y = b + Σ_j w[:, j] ⊙ xa[:, j : j + T]`` (xa ``[B, T + K − 1, C]``, w ``[C, K]``, b
    ``[C]`` or None for no bias, all one dtype) with a hand-written backward: K in-place
    multiply-adds for dxa and one product and sum each for dw and db. Left to autograd, each
    tap's backward takes a multiply, a reduction and the slice's zero-fill, copy and
    accumulation (about 45 kernels a convolution against 8: the training step is a few hundred
    small kernels)."""

    @staticmethod
    def forward(ctx, xa: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
        T = xa.shape[1] - w.shape[1] + 1
        y = xa[:, :T] * w[:, 0] if b is None else torch.addcmul(b, xa[:, :T], w[:, 0])
        for j in range(1, w.shape[1]):
            y.addcmul_(xa[:, j:j + T], w[:, j])
        ctx.save_for_backward(xa, w)
        return y

    @staticmethod
    def backward(ctx, dy: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        xa, w = ctx.saved_tensors
        K = w.shape[1]
        T = xa.shape[1] - K + 1
        dxa = dw = db = None
        if ctx.needs_input_grad[0]:
            dxa = xa.new_zeros(xa.shape)
            for j in range(K):
                dxa[:, j:j + T].addcmul_(dy, w[:, j])
        if ctx.needs_input_grad[1]:  # the windows xa[b, t + j, c] as [B, T, C, K], no copy
            dw = (dy.unsqueeze(-1) * xa.unfold(1, K, 1)).sum((0, 1))
        if ctx.needs_input_grad[2]:
            db = dy.sum((0, 1))
        return dxa, dw, db


class ShortConv(nn.Module):
    """Causal depthwise conv1d over time whose state is the last ``kernel − 1`` inputs.

    ``y_t = bias + Σ_{j<kernel} w_j ⊙ x_{t−kernel+1+j}`` with ``x_{<0}`` taken from the buffer
    (zeros at the start), so a sequence run in pieces equals the sequence run at once. With
    ``bias=False`` there is no bias (flash-linear-attention's ShortConvolution, as the paper's
    DeltaNet had it).

    Computed as ``kernel`` shifted multiply-adds, at least in float32 (output in x's dtype),
    not with ``F.conv1d``: PyTorch's depthwise conv1d is slow on CUDA, its backward above all
    (pytorch/pytorch#75747), while a few elementwise kernels cost next to nothing; the backward
    is written out (``_ConvTaps``) so that it stays a few kernels too. The weights stay in an
    ``nn.Conv1d`` (``[C, 1, kernel]`` and ``[C]``) so parameter names do not change.
    """

    def __init__(self, channels: int, kernel: int, bias: bool = True) -> None:
        super().__init__()
        self.kernel = check_int("conv_kernel", kernel)
        self.conv = nn.Conv1d(channels, channels, kernel, groups=channels, bias=bias)

    def forward(
        self, x: torch.Tensor, buffer: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """x ``[B, T, C]``, buffer ``[B, kernel − 1, C]`` → (y ``[B, T, C]``, new buffer)."""
        B, T, C = x.shape
        K = self.kernel
        if buffer is None:
            buffer = x.new_zeros(B, K - 1, C)
        xx = torch.cat([buffer.to(x.dtype), x], dim=1)
        acc = torch.promote_types(x.dtype, torch.float32)  # bf16 in, float32 sums
        w = self.conv.weight.reshape(C, K).to(acc)  # [C, 1, K] → [C, K]: a view, no kernel
        xa = xx.to(acc)
        b = None if self.conv.bias is None else self.conv.bias.to(acc)
        if torch.compiler.is_compiling():
            # traced by torch.compile: the same sum in plain ops, whose backward AOT autograd
            # derives and inductor fuses. Traced on CUDA, _ConvTaps gave wrong gradients of
            # every tap and input (session 17, scripts/dev/compile_gpu_probe.py --grads)
            y = sum(xa[:, j:j + T] * w[:, j] for j in range(K))
            y = y if b is None else b + y
        else:
            y = _ConvTaps.apply(xa, w, b)
        return y.to(x.dtype), xx[:, xx.shape[1] - (K - 1):]


class HeadNorm(nn.Module):
    """LayerNorm over each head's channels, a weight per channel, no bias (xLSTM's
    MultiHeadLayerNorm, i.e. a GroupNorm with one group per head). x ``[..., H, D]``."""

    def __init__(self, num_heads: int, head_dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(num_heads, head_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, (x.shape[-1],), eps=self.eps) * self.weight


NORM_TYPES: tuple[type[nn.Module], ...] = (nn.RMSNorm, nn.LayerNorm, nn.GroupNorm, HeadNorm)
"""Modules whose parameters are norm gains (exempt from weight decay)."""
