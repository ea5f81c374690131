"""Forward kernel of the fused selective scan, "time over lanes" layout (Mamba's CUDA design).

Tile ``[BT, BD]``: BT time steps spread over the lanes and warps, BD channels (few) in each
thread's registers. One program owns (batch row, block of BD channels) and walks time chunk by
chunk; inside a chunk a loop visits the N states one after another: for state n it forms a, b
``[BT, BD]``, runs ``tl.associative_scan`` over time with the multiply/add combine (exact at
a = −1 and a = 0), applies the state carried into the chunk and adds C_t[n]·h_t into a
``[BT, BD]`` accumulator, so the sum over n is a loop-carried sum in registers, never a
cross-thread reduction. Registers cannot be indexed by n, so the carried state of state n lives
in memory: in ``hT [B, Dm, N]`` itself (read at the chunk's start, written from its last row;
L1/L2-resident, one program owns each row), which at the end is the final state. With the
carries in memory the state loop need not be unrolled: a runtime ``range(N)`` compiles to fewer
registers than ``tl.static_range(NP)`` (README: 112 vs 128 forward, 108 vs 164 backward at the
default tiles), and no padding states are computed. For the
backward the state before every SEG steps is written as ``hseg [B, T/SEG, N, Dm]``, the format
the chunked backward (``triton_bwd.py``) restarts from.
"""

from __future__ import annotations

import triton
import triton.language as tl

from statetrack.ops.selective_scan.triton_kernels import (
    LOG2E,
    _bias_and_skip,
    _channel_block,
    _combine,
    _load_td,
    _softplus,
    _store_y,
)


@triton.jit
def _load_col(p, i_b, o_t, n, T, N, m_t):
    """Column n of a ``[B, T, N]`` tensor over steps o_t as float32 ``[BT]`` (0 outside)."""
    return tl.load(p + i_b * T * N + o_t * N + n, mask=m_t, other=0.0).to(tl.float32)


@triton.jit
def _init_state(h0, hT, hseg, i_b, i_d, Dm, N, n_seg,
                NP: tl.constexpr, BD: tl.constexpr, HAS_H0: tl.constexpr, SAVE: tl.constexpr):
    """hT[b, block] ← h0 (or 0), and hseg[b, 0] ← the same (the state before step 0)."""
    o_d, o_n, m_d, m_nd, o_nd = _channel_block(i_d, Dm, N, NP, BD)
    b_h = tl.zeros([NP, BD], dtype=tl.float32)
    if HAS_H0:
        b_h = tl.load(h0 + i_b * Dm * N + o_nd, mask=m_nd, other=0.0).to(tl.float32)
    tl.store(hT + i_b * Dm * N + o_nd, b_h, mask=m_nd)
    if SAVE:
        tl.store(hseg + i_b * n_seg * N * Dm + o_n[:, None] * Dm + o_d[None, :], b_h, mask=m_nd)


@triton.jit
def _lanes_state(Bm, Cm, A, hT, hseg, b_dxd, b_delta, b_y, i_b, o_t, o_d, m_t, m_d, n,
                 T, Dm, N, n_seg, lo, width,
                 BT: tl.constexpr, SEG: tl.constexpr, SAVE: tl.constexpr):
    """State n over one chunk: scan, add C_t[n]·h_t to b_y, store the carry; returns b_y."""
    b_A2 = tl.load(A + o_d * N + n, mask=m_d, other=0.0).to(tl.float32) * LOG2E
    b_B = _load_col(Bm, i_b, o_t, n, T, N, m_t)
    b_C = _load_col(Cm, i_b, o_t, n, T, N, m_t)
    # steps past T are the identity map (a = 1, b = 0), so the last row is the carried state
    b_a = tl.where(m_t[:, None], lo + width * tl.exp2(b_delta * b_A2[None, :]), 1.0)
    b_b = b_dxd * b_B[:, None]
    c_a, c_b = tl.associative_scan((b_a, b_b), 0, _combine)
    p_h = hT + i_b * Dm * N + o_d * N + n
    b_hs = c_a * tl.load(p_h, mask=m_d, other=0.0)[None, :] + c_b
    b_y += b_hs * b_C[:, None]
    if SAVE:
        # the state after step t is the state before step t + 1 = s·SEG (s ≥ 1)
        o_s = (o_t + 1) // SEG
        m_s = m_t & ((o_t + 1) % SEG == 0) & (o_s < n_seg)
        p_s = hseg + ((i_b * n_seg + o_s[:, None]) * N + n) * Dm + o_d[None, :]
        tl.store(p_s, b_hs, mask=m_s[:, None] & m_d[None, :])
    last = (tl.arange(0, BT) == BT - 1)[:, None]
    b_hn = tl.sum(tl.where(last, b_hs, 0.0), axis=0)
    tl.debug_barrier()  # every thread has read the old carry
    tl.store(p_h, b_hn, mask=m_d)
    return b_y


@triton.jit
def ss_lanes_fwd_kernel(x, dt, A, Bm, Cm, D, z, dt_bias, h0, y, hT, hseg,
                        T, Dm, N, lo, width,
                        NP: tl.constexpr, BT: tl.constexpr, BD: tl.constexpr, SEG: tl.constexpr,
                        HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr,
                        HAS_H0: tl.constexpr, SAVE: tl.constexpr):
    """Grid (cdiv(Dm, BD), B). y [B, T, Dm]; hT [B, Dm, N] float32 (also the running carry);
    hseg[b, s] = state before step s·SEG, ``[B, cdiv(T, SEG), N, Dm]`` float32 (if SAVE)."""
    i_d = tl.program_id(0)
    i_b = tl.program_id(1).to(tl.int64)
    o_d = i_d * BD + tl.arange(0, BD)
    m_d = o_d < Dm
    n_seg = tl.cdiv(T, SEG)
    _init_state(h0, hT, hseg, i_b, i_d, Dm, N, n_seg, NP, BD, HAS_H0, SAVE)
    b_bias, b_D = _bias_and_skip(dt_bias, D, o_d, m_d, BD, HAS_BIAS, HAS_D)
    for i_c in range(tl.cdiv(T, BT)):
        tl.debug_barrier()  # the carries written by other threads are visible
        o_t = i_c * BT + tl.arange(0, BT)
        m_t = o_t < T
        m_td = m_t[:, None] & m_d[None, :]
        b_x = _load_td(x, i_b, o_t, o_d, T, Dm, m_td)
        b_delta = _softplus(_load_td(dt, i_b, o_t, o_d, T, Dm, m_td) + b_bias[None, :])
        b_dxd = b_delta * b_x
        b_y = tl.zeros([BT, BD], dtype=tl.float32)
        for n in range(N):
            b_y = _lanes_state(Bm, Cm, A, hT, hseg, b_dxd, b_delta, b_y, i_b, o_t, o_d, m_t, m_d,
                               n, T, Dm, N, n_seg, lo, width, BT, SEG, SAVE)
        _store_y(y, b_y, b_x, b_D, z, i_b, o_t, o_d, m_td, T, Dm, HAS_D, HAS_Z)
