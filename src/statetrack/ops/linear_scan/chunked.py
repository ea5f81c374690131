"""The signed diagonal scan ``h_t = a_t ⊙ h_{t−1} + b_t`` in chunkwise-parallel PyTorch.

Inside a chunk the segment products ``Γ[t, s] = ∏_{s<r≤t} a_r`` are built with the sign-parity
trick (magnitude from a cumulative sum of ``log|a|``, sign from the parity of the count of
negative factors, an exact zero from the count of zero factors), so no complex logarithm is ever
needed; chunks are then joined by a short loop over ``T / C`` chunk states. The backward pass is
the same scan run in reverse time, which is exact at ``a = 0`` and ``a = ±1``. README.md beside
this file derives both.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch.autograd.function import FunctionCtx, once_differentiable

# Most elements of the pairwise [rows, C, C, cols] tensor built at once (256 MiB in float32):
# with a [B, T, Dm, N] selective scan (B = T = Dm = 256, N = 16) one chunk alone would need
# gigabytes, so blocks of rows and columns are processed in turn.
PAIRWISE_BUDGET = 2**26


# Tests set this, so that an element the loops below fail to write shows up as NaN; filling is
# a full pass over the buffer, too costly to pay on every call.
POISON = False


def _poisoned(like: torch.Tensor) -> torch.Tensor:
    """An output buffer: NaN-filled when ``POISON`` is set, else uninitialised."""
    return torch.full_like(like, math.nan) if POISON else torch.empty_like(like)


def _chunk_block(a: torch.Tensor, b: torch.Tensor, causal: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Local scan of chunks from a zero state.

    Args:
        a, b: ``[R, C, M]`` (R chunks of C steps, M independent channels), float32 or float64.
        causal: ``[C, C]`` bool, ``s ≤ t``.

    Returns:
        ``h_loc [R, C, M]`` with ``h_loc_t = Σ_{s≤t} Γ[t, s] b_s`` and the prefix products
        ``P [R, C, M]`` with ``P_t = ∏_{r≤t} a_r`` (what the chunk's start state is scaled by).
    """
    zero = a == 0
    # log|a| with exact zeros replaced by log 1 = 0: zeros are counted apart instead, so no −inf
    # enters the cumulative sum (−inf − (−inf) = NaN in the pairwise difference).
    log_mag = torch.log(a.abs().masked_fill(zero, 1.0)).cumsum(1)  # L_t
    # σ_t = (−1)^{N_t} with N_t the number of negative factors so far; σ_t σ_s = (−1)^{N_t−N_s}.
    sign = 1.0 - 2.0 * ((a < 0).cumsum(1) & 1).to(a.dtype)
    zeros = zero.cumsum(1)  # Z_t; Γ[t, s] = 0 exactly when Z_t > Z_s
    keep = causal[:, :, None]
    if zero.any():
        keep = keep & (zeros[:, :, None] == zeros[:, None, :])
    # Masked entries get exponent −inf before exp: above the diagonal L_t − L_s may be large and
    # positive (|a| < 1), and exp(+large)·0 would be NaN.
    gamma = (log_mag[:, :, None] - log_mag[:, None, :]).masked_fill_(~keep, -math.inf).exp_()
    h_loc = sign * gamma.mul_((sign * b)[:, None]).sum(2)
    prefix = (sign * log_mag.exp()).masked_fill_(zeros > 0, 0.0)
    return h_loc, prefix


def _intra_pairwise(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`_chunk_block` over ``[R, C, M]`` in blocks of at most ``PAIRWISE_BUDGET`` pairs."""
    R, C, M = a.shape
    causal = torch.ones(C, C, dtype=torch.bool, device=a.device).tril_()
    cols = min(M, max(1, PAIRWISE_BUDGET // (C * C)))
    rows = min(R, max(1, PAIRWISE_BUDGET // (C * C * cols)))
    if rows == R and cols == M:
        return _chunk_block(a, b, causal)
    h_loc, prefix = _poisoned(b), _poisoned(a)
    for r in range(0, R, rows):
        for m in range(0, M, cols):
            block = (slice(r, r + rows), slice(None), slice(m, m + cols))
            h_loc[block], prefix[block] = _chunk_block(a[block], b[block], causal)
    return h_loc, prefix


def _intra_loop(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The same ``(h_loc, P)`` as :func:`_chunk_block`, by C steps run on all chunks at once.

    Work-efficient (O(1) per element instead of O(C)), which is what a CPU wants. The prefix
    products are plain products of signed factors, so their sign and exact zeros come out of
    the arithmetic itself; no logarithm is taken. (``torch.cumprod`` along a strided dim is
    an order of magnitude slower on CPU than this loop.)
    """
    # h_loc and P obey the same recurrence (P with b = 0 and P_0 = a_0), so one op per step on
    # the stacked pair does both: fewer, larger steps is what makes the loop fast.
    inputs = torch.stack([b, torch.zeros_like(b)])  # [2, R, C, M]
    both = _poisoned(inputs)  # (h_loc, P)
    both[0, :, 0], both[1, :, 0] = b[:, 0], a[:, 0]
    for t in range(1, a.shape[1]):
        torch.addcmul(inputs[:, :, t], a[:, t], both[:, :, t - 1], out=both[:, :, t])
    return both[0], both[1]


INTRA_CHUNK = ("pairwise", "loop")


def default_intra(device: torch.device) -> str:
    """``pairwise`` (few large kernels) on accelerators, ``loop`` (least work) on CPU."""
    return "loop" if device.type == "cpu" else "pairwise"


def scan(a: torch.Tensor, b: torch.Tensor, initial_state: torch.Tensor | None,
         chunk_size: int, intra: str) -> torch.Tensor:
    """All states ``h [B, T, M]`` of ``h_t = a_t h_{t−1} + b_t`` (no autograd).

    a, b ``[B, T, M]`` and initial_state ``[B, M]`` (or None) share one float dtype; ``intra``
    (one of ``INTRA_CHUNK``) picks how each chunk is scanned from a zero state.
    """
    Bsz, T, M = b.shape
    C = min(chunk_size, T)
    n_chunks = -(-T // C)
    pad = n_chunks * C - T
    if pad:  # a = 1, b = 0 past the end leaves the state unchanged
        a = F.pad(a, (0, 0, 0, pad), value=1.0)
        b = F.pad(b, (0, 0, 0, pad))
    intra_chunks = _intra_pairwise if intra == "pairwise" else _intra_loop
    h_loc, prefix = intra_chunks(a.reshape(Bsz * n_chunks, C, M), b.reshape(Bsz * n_chunks, C, M))
    h_loc = h_loc.view(Bsz, n_chunks, C, M)
    prefix = prefix.view(Bsz, n_chunks, C, M)
    # Carry the state across chunks: h_end(c) = P_end(c) · h_start(c) + h_loc_end(c).
    starts = _poisoned(b[:, :n_chunks])
    state = b.new_zeros(Bsz, M) if initial_state is None else initial_state
    for c in range(n_chunks):
        starts[:, c] = state
        state = torch.addcmul(h_loc[:, c, -1], prefix[:, c, -1], state)
    h = torch.addcmul(h_loc, prefix, starts[:, :, None])
    return h.view(Bsz, n_chunks * C, M)[:, :T]


class SignedScan(torch.autograd.Function):
    """``(h, h_T) = scan(a, b, h_0)`` on ``[B, T, M]`` with a reverse-scan backward.

    With ``g_t = ∂L/∂h_t`` accumulated backwards, ``g_t = ḡ_t + a_{t+1} g_{t+1}`` (ḡ the
    upstream gradient, ``g_T`` also takes the gradient of ``h_T``):
    ``∂L/∂b_t = g_t``, ``∂L/∂a_t = g_t h_{t−1}``, ``∂L/∂h_0 = a_1 g_1``. No division by ``a``,
    so the gradient is exact where a factor is exactly 0.
    """

    @staticmethod
    def forward(ctx: FunctionCtx, a: torch.Tensor, b: torch.Tensor,
                initial_state: torch.Tensor | None, chunk_size: int, intra: str
                ) -> tuple[torch.Tensor, torch.Tensor]:
        h = scan(a, b, initial_state, chunk_size, intra)
        ctx.save_for_backward(a, h, initial_state)
        ctx.chunk_size, ctx.intra = chunk_size, intra
        return h, h[:, -1].clone()

    @staticmethod
    @once_differentiable
    def backward(ctx: FunctionCtx, grad_h: torch.Tensor, grad_last: torch.Tensor
                 ) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None,
                            None, None]:
        a, h, initial_state = ctx.saved_tensors
        # Reverse time: u_k = a'_k u_{k−1} + ḡ_{T+1−k} with a'_k = a_{T+2−k} (a' = 1 at k = 1)
        # and u_0 = ∂L/∂h_T; then g_t = u_{T+1−t}.
        a_next = torch.cat([a[:, 1:], torch.ones_like(a[:, :1])], dim=1)
        g = scan(a_next.flip(1), grad_h.flip(1), grad_last, ctx.chunk_size, ctx.intra).flip(1)
        grad_a = grad_h0 = None
        if ctx.needs_input_grad[0]:
            h_prev = torch.cat([torch.zeros_like(h[:, :1]) if initial_state is None
                                else initial_state[:, None], h[:, :-1]], dim=1)
            grad_a = g * h_prev
        if ctx.needs_input_grad[2]:
            grad_h0 = a[:, 0] * g[:, 0]
        return grad_a, g if ctx.needs_input_grad[1] else None, grad_h0, None, None


def linear_scan_chunked(
    a: torch.Tensor,
    b: torch.Tensor,
    initial_state: torch.Tensor | None,
    chunk_size: int = 64,
    *,
    intra: str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``h_t = a_t ⊙ h_{t−1} + b_t`` along dim 1, chunkwise-parallel and differentiable.

    Args:
        a, b: ``[B, T, *]``; a signed, possibly exactly 0 or ±1.
        initial_state: ``[B, *]`` or None (= 0).
        chunk_size: steps per chunk (``pairwise`` work per element grows linearly with it;
            ``loop`` runs ``C + T/C`` small steps).
        intra: ``"pairwise"`` (sign-parity form) | ``"loop"`` | None (by device).

    Returns:
        ``(h [B, T, *] in b's dtype, h_T [B, *] in float32, float64 for float64 inputs)``.
    """
    intra = default_intra(b.device) if intra is None else intra
    if intra not in INTRA_CHUNK:
        raise ValueError(f"intra: expected one of {', '.join(INTRA_CHUNK)}, got {intra!r}")
    acc = torch.float64 if b.dtype == torch.float64 else torch.float32
    Bsz, T, *trailing = b.shape
    M = math.prod(trailing)
    h0 = None if initial_state is None else initial_state.to(acc).reshape(Bsz, M)
    if T == 0:
        last = b.new_zeros(Bsz, M, dtype=acc) if h0 is None else h0
        return b.new_zeros(b.shape), last.reshape(Bsz, *trailing)
    h, last = SignedScan.apply(a.to(acc).reshape(Bsz, T, M), b.to(acc).reshape(Bsz, T, M),
                               h0, chunk_size, intra)
    return h.reshape(b.shape).to(b.dtype), last.reshape(Bsz, *trailing)
