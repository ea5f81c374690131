"""Backward kernel of the fused selective scan, "time over lanes" layout (see ``triton_lanes.py``
for the layout and README.md beside this for the derivation of the signed map's gradients).

Per program (batch row, block of BD channels) the chunks of BT steps are visited last to first,
and inside a chunk a loop visits the N states. For state n: one forward scan with the
4-tuple combine (``_combine_excl``) recomputes h_{t−1} and h_t from the state saved before the
chunk (``hseg``, every SEG steps; BT is a multiple of SEG), one reverse scan over
p_t = a_t·g_t gives the adjoint g_t = dh_t + p_{t+1}, and the per-state terms of dx and dΔ are
added into ``[BT, BD]`` register accumulators (no cross-thread sum over n). The adjoint carried
between chunks, p = a_{t0}·g_{t0}, lives in ``dh0 [B, Dm, N]`` (one program owns each row), which
at the end is ∂L/∂h_0. dB, dC (sums over channels) and dA (a sum over time) go to float32 buffers
with atomics.
"""

from __future__ import annotations

import triton
import triton.language as tl

from statetrack.ops.selective_scan.triton_kernels import (
    LOG2E,
    _add_channel_sums,
    _bias_and_skip,
    _channel_block,
    _combine_excl,
    _gated_dy,
    _load_td,
    _softplus,
    _store_td_grads,
)
from statetrack.ops.selective_scan.triton_lanes import _load_col


@triton.jit
def _init_adjoint(dhT, dh0, i_b, i_d, Dm, N,
                  NP: tl.constexpr, BD: tl.constexpr, HAS_DHT: tl.constexpr):
    """dh0[b, block] ← dhT (or 0): the adjoint carry p entering the last chunk."""
    o_d, o_n, m_d, m_nd, o_nd = _channel_block(i_d, Dm, N, NP, BD)
    b_p = tl.zeros([NP, BD], dtype=tl.float32)
    if HAS_DHT:
        b_p = tl.load(dhT + i_b * Dm * N + o_nd, mask=m_nd, other=0.0)
    tl.store(dh0 + i_b * Dm * N + o_nd, b_p, mask=m_nd)


@triton.jit
def _lanes_bwd_state(Bm, Cm, A, hseg, dB, dC, dA, dh0, b_delta, b_dxd, b_dyg,
                     b_gB, b_gEA, b_yp, i_b, i_s, o_t, o_d, m_t, m_d, n, T, Dm, N, n_seg,
                     lo, width, BT: tl.constexpr):
    """State n over one chunk: gradients of B[:, n], C[:, n], A[:, n]; adds g·B, g·h_{t−1}·E·A
    and C·h to the accumulators and returns them; updates the adjoint carry in dh0."""
    b_A = tl.load(A + o_d * N + n, mask=m_d, other=0.0).to(tl.float32)
    b_B = _load_col(Bm, i_b, o_t, n, T, N, m_t)
    b_C = _load_col(Cm, i_b, o_t, n, T, N, m_t)
    b_E = tl.exp2(b_delta * (b_A * LOG2E)[None, :])
    # steps past T: a = 1, b = 0, dh = 0, so both carries pass through unchanged
    b_a = tl.where(m_t[:, None], lo + width * b_E, 1.0)
    b_b = b_dxd * b_B[:, None]
    ones = tl.full(b_a.shape, 1.0, tl.float32)
    zeros = tl.zeros(b_a.shape, tl.float32)
    _, _, e_a, e_b = tl.associative_scan((b_a, b_b, ones, zeros), 0, _combine_excl)
    b_hc = tl.load(hseg + ((i_b * n_seg + i_s) * N + n) * Dm + o_d, mask=m_d, other=0.0)
    b_hp = e_a * b_hc[None, :] + e_b  # h_{t−1}
    b_h = b_a * b_hp + b_b  # h_t
    b_dh = b_dyg * b_C[:, None]
    # p_t = a_t·g_t = a_t·(dh_t + p_{t+1}); the exclusive reverse prefix gives p_{t+1}
    f_a, f_b, r_a, r_b = tl.associative_scan((b_a, b_a * b_dh, ones, zeros), 0, _combine_excl,
                                             reverse=True)
    p_p = dh0 + i_b * Dm * N + o_d * N + n
    b_p = tl.load(p_p, mask=m_d, other=0.0)
    b_g = b_dh + r_a * b_p[None, :] + r_b
    first = (tl.arange(0, BT) == 0)[:, None]
    b_p = tl.sum(tl.where(first, f_a * b_p[None, :] + f_b, 0.0), axis=0)
    tl.debug_barrier()  # every thread has read the old carry
    tl.store(p_p, b_p, mask=m_d)
    b_gE = b_g * b_hp * b_E  # ∂L/∂a_t · E_t
    o_tn = i_b * T * N + o_t * N + n
    tl.atomic_add(dC + o_tn, tl.sum(b_dyg * b_h, axis=1), mask=m_t, sem="relaxed")
    tl.atomic_add(dB + o_tn, tl.sum(b_g * b_dxd, axis=1), mask=m_t, sem="relaxed")
    # Δ = 0 past T, so those steps add nothing to dA
    tl.atomic_add(dA + o_d * N + n, width * tl.sum(b_gE * b_delta, axis=0), mask=m_d,
                  sem="relaxed")  # no fences: only the final sums matter
    b_gB += b_g * b_B[:, None]
    b_gEA += b_gE * b_A[None, :]
    b_yp += b_h * b_C[:, None]
    return b_gB, b_gEA, b_yp


@triton.jit
def _lanes_bwd_chunk(x, dt, A, Bm, Cm, z, dy, hseg, dx, ddt, dz, dB, dC, dA, dh0,
                     b_bias, b_D, i_b, i_c, o_d, m_d, T, Dm, N, n_seg, lo, width,
                     BT: tl.constexpr, SEG: tl.constexpr,
                     HAS_D: tl.constexpr, HAS_Z: tl.constexpr):
    """Gradients of steps i_c·BT .. i_c·BT+BT−1; returns this chunk's (dD, d dt_bias) ``[BD]``."""
    o_t = i_c * BT + tl.arange(0, BT)
    m_t = o_t < T
    m_td = m_t[:, None] & m_d[None, :]
    b_x = _load_td(x, i_b, o_t, o_d, T, Dm, m_td)
    b_u = _load_td(dt, i_b, o_t, o_d, T, Dm, m_td) + b_bias[None, :]
    # Δ = 0 past T: there g_t is the carried adjoint, not 0, and must not reach dA
    b_delta = tl.where(m_td, _softplus(b_u), 0.0)
    b_dxd = b_delta * b_x
    b_dy, b_dyg, b_z, b_sz = _gated_dy(dy, z, i_b, o_t, o_d, m_td, T, Dm, HAS_Z)
    b_gB = tl.zeros(b_x.shape, dtype=tl.float32)  # Σ_n g·B
    b_gEA = tl.zeros(b_x.shape, dtype=tl.float32)  # Σ_n g·h_{t−1}·E·A
    b_yp = tl.zeros(b_x.shape, dtype=tl.float32)  # Σ_n C·h: y before D and the gate
    i_s = i_c * (BT // SEG)
    for n in range(N):
        b_gB, b_gEA, b_yp = _lanes_bwd_state(
            Bm, Cm, A, hseg, dB, dC, dA, dh0, b_delta, b_dxd, b_dyg, b_gB, b_gEA, b_yp,
            i_b, i_s, o_t, o_d, m_t, m_d, n, T, Dm, N, n_seg, lo, width, BT)
    b_ddt = tl.where(m_td, (b_x * b_gB + width * b_gEA) * tl.sigmoid(b_u), 0.0)
    _store_td_grads(dx, ddt, dz, b_delta * b_gB, b_ddt, b_yp, b_x, b_D, b_dy, b_dyg, b_z, b_sz,
                    i_b, o_t, o_d, m_td, T, Dm, HAS_D, HAS_Z)
    return tl.sum(b_dyg * b_x, axis=0), tl.sum(b_ddt, axis=0)


@triton.jit
def ss_lanes_bwd_kernel(x, dt, A, Bm, Cm, D, z, dt_bias, hseg, dy, dhT,
                        dx, ddt, dz, dB, dC, dA, dD, dbias, dh0,
                        T, Dm, N, lo, width,
                        NP: tl.constexpr, BT: tl.constexpr, BD: tl.constexpr, SEG: tl.constexpr,
                        HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr,
                        HAS_DHT: tl.constexpr):
    """Grid (cdiv(Dm, BD), B); BT a multiple of SEG. dB, dC [B, T, N], dA [Dm, N], dD and
    dbias [Dm]: float32, zeroed, accumulated with atomics; dh0 [B, Dm, N] float32 (also the
    running adjoint carry)."""
    i_d = tl.program_id(0)
    i_b = tl.program_id(1).to(tl.int64)
    o_d = i_d * BD + tl.arange(0, BD)
    m_d = o_d < Dm
    _init_adjoint(dhT, dh0, i_b, i_d, Dm, N, NP, BD, HAS_DHT)
    b_bias, b_D = _bias_and_skip(dt_bias, D, o_d, m_d, BD, HAS_BIAS, HAS_D)
    b_dD = tl.zeros([BD], dtype=tl.float32)
    b_dbias = tl.zeros([BD], dtype=tl.float32)
    n_seg = tl.cdiv(T, SEG)
    n_c = tl.cdiv(T, BT)
    for i_r in range(n_c):
        tl.debug_barrier()  # the carries written by other threads are visible
        c_dD, c_dbias = _lanes_bwd_chunk(
            x, dt, A, Bm, Cm, z, dy, hseg, dx, ddt, dz, dB, dC, dA, dh0, b_bias, b_D,
            i_b, n_c - 1 - i_r, o_d, m_d, T, Dm, N, n_seg, lo, width, BT, SEG, HAS_D, HAS_Z)
        b_dD += c_dD
        b_dbias += c_dbias
    _add_channel_sums(dD, dbias, b_dD, b_dbias, o_d, m_d)
