"""Backward kernel of the fused selective scan, one channel per thread (experimental).

The counterpart of ``triton_fwd_seq.py``: each thread owns one channel's N states (an
``[NP, BD]`` tile, BD = 32·num_warps) and time is walked one step at a time. Per segment of
SEG steps, last segment first:

1. the forward is recomputed from the state the forward saved before the segment, writing the
   state before every step to a per-program scratch (``[SEG, NP, BD]`` float32, L2-resident);
2. the steps are visited last to first with the adjoint carry ``p = a_{t+1} g_{t+1}``:

       g_t = (dy_t·silu(z_t)) C_t + p,   ∂L/∂a_t = g_t ⊙ h_{t−1},   p ← a_t ⊙ g_t,

   and every gradient of step t follows from (g_t, h_{t−1}) as in README.md, with the signed
   map's da/dΔ = (hi − lo)·A·exp(ΔA).

The sums over channels (dB_t, dC_t) cross threads: one reduction and one fp32 atomic add per
state and step and program. Same arguments, grid and outputs as ``ss_bwd_kernel``.
"""

from __future__ import annotations

import triton
import triton.language as tl

from statetrack.ops.selective_scan.triton_fwd_seq import (
    _load_rows,
    _step,
    _step_inputs,
    _store_rows,
)
from statetrack.ops.selective_scan.triton_kernels import LOG2E, _softplus


@triton.jit
def _bwd_step(x, dt, Bm, Cm, D, z, dy, dx, ddt, dz, dB, dC, b_hp, b_p, b_A, b_A2, b_bias, b_D,
              i_b, t, o_d, o_n, m_d, T, Dm, N, lo, width,
              NP: tl.constexpr, HAS_D: tl.constexpr, HAS_Z: tl.constexpr):
    """Gradients of step t from the state before it (b_hp) and the carry b_p = a_{t+1} g_{t+1}.
    Returns (a_t g_t, dA part [NP, BD], dD part [BD], dbias part [BD]); past T every output is
    masked, Δ = 0 and a = 1, so the carry passes through unchanged."""
    m, row, b_x, b_u, b_B, b_C = _step_inputs(x, dt, Bm, Cm, i_b, t, o_d, o_n, m_d, T, Dm, N,
                                              b_bias, NP)
    b_delta = tl.where(m, _softplus(b_u), 0.0)
    b_dy = tl.load(dy + row * Dm + o_d, mask=m, other=0.0).to(tl.float32)
    b_dyg = b_dy
    if HAS_Z:
        b_z = tl.load(z + row * Dm + o_d, mask=m, other=0.0).to(tl.float32)
        b_sz = tl.sigmoid(b_z)
        b_dyg = b_dy * b_z * b_sz
    b_E = tl.exp2(b_delta[None, :] * b_A2)
    b_a = tl.where(m[None, :], lo + width * b_E, 1.0)
    b_dxd = b_delta * b_x
    b_h = b_a * b_hp + b_dxd[None, :] * b_B[:, None]
    b_g = b_dyg[None, :] * b_C[:, None] + b_p
    m_n = (o_n < N) & ((o_n * 0 + t) < T)
    # sums over programs need no ordering: relaxed atomics, not the default acq_rel
    tl.atomic_add(dC + row * N + o_n, tl.sum(b_dyg[None, :] * b_h, axis=1), mask=m_n,
                  sem="relaxed")
    tl.atomic_add(dB + row * N + o_n, tl.sum(b_g * b_dxd[None, :], axis=1), mask=m_n,
                  sem="relaxed")
    b_gB = tl.sum(b_g * b_B[:, None], axis=0)
    b_gE = b_g * b_hp * b_E
    b_ddelta = b_x * b_gB + width * tl.sum(b_gE * b_A, axis=0)
    b_ddt = tl.where(m, b_ddelta * tl.sigmoid(b_u), 0.0)
    b_dx = b_delta * b_gB
    b_yp = tl.sum(b_h * b_C[:, None], axis=0)
    if HAS_D:
        b_dx += b_D * b_dyg
        b_yp += b_D * b_x
    tl.store(dx + row * Dm + o_d, b_dx.to(dx.dtype.element_ty), mask=m)
    tl.store(ddt + row * Dm + o_d, b_ddt.to(ddt.dtype.element_ty), mask=m)
    if HAS_Z:
        b_dz = b_dy * b_yp * b_sz * (1.0 + b_z * (1.0 - b_sz))
        tl.store(dz + row * Dm + o_d, b_dz.to(dz.dtype.element_ty), mask=m)
    return b_a * b_g, b_gE * b_delta[None, :], b_dyg * b_x, b_ddt


@triton.jit
def ss_bwd_seq_kernel(x, dt, A, Bm, Cm, D, z, dt_bias, hseg, dy, dhT,
                      dx, ddt, dz, dB, dC, dA_part, dD_part, dbias_part, dh0, scratch,
                      T, Dm, N, lo, width,
                      NP: tl.constexpr, BT: tl.constexpr, BD: tl.constexpr, SEG: tl.constexpr,
                      HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr,
                      HAS_DHT: tl.constexpr):
    """Grid (cdiv(Dm, BD), B); scratch holds SEG·NP·BD floats per program. dB, dC: float32
    [B, T, N] zeroed, accumulated with atomics; dA_part [B, N, Dm], dD_part / dbias_part
    [B, Dm] summed over B by the caller. BT: steps per static loop (a divisor of SEG)."""
    i_d = tl.program_id(0)
    i_b = tl.program_id(1).to(tl.int64)
    pid = i_b * tl.num_programs(0) + i_d
    o_d = i_d * BD + tl.arange(0, BD)
    o_n = tl.arange(0, NP)
    m_d = o_d < Dm
    b_A = _load_rows(A, 1, N, o_d, o_n, m_d, N, NP, BD)  # A [Dm, N]
    b_A2 = b_A * LOG2E
    b_bias = tl.zeros([BD], dtype=tl.float32)
    if HAS_BIAS:
        b_bias = tl.load(dt_bias + o_d, mask=m_d, other=0.0).to(tl.float32)
    b_D = tl.zeros([BD], dtype=tl.float32)
    if HAS_D:
        b_D = tl.load(D + o_d, mask=m_d, other=0.0).to(tl.float32)
    b_p = tl.zeros([NP, BD], dtype=tl.float32)
    if HAS_DHT:
        b_p = _load_rows(dhT + i_b * Dm * N, 1, N, o_d, o_n, m_d, N, NP, BD)
    b_dA = tl.zeros([NP, BD], dtype=tl.float32)
    b_dD = tl.zeros([BD], dtype=tl.float32)
    b_dbias = tl.zeros([BD], dtype=tl.float32)
    o_c = tl.arange(0, BD)  # scratch [SEG, NP, BD] of this program
    p_sc = scratch + pid * SEG * NP * BD
    n_seg = tl.cdiv(T, SEG)
    for i_r in range(n_seg):
        i_s = n_seg - 1 - i_r
        b_h = _load_rows(hseg + (i_b * n_seg + i_s) * N * Dm, Dm, 1, o_d, o_n, m_d, N, NP, BD)
        tl.debug_barrier()  # every thread has read the previous segment's scratch
        # BT steps per static loop: their loads are issued together, ahead of the arithmetic
        # (a whole unrolled segment would hoist so many that registers spill)
        for i_c in range(SEG // BT):
            for i in tl.static_range(BT):
                j = i_c * BT + i
                _store_rows(p_sc + j * NP * BD, b_h, BD, 1, o_c, o_n, m_d, N, NP)
                b_h = _step(x, dt, Bm, Cm, z, z, b_h, b_A2, b_bias, b_D, i_b, i_s * SEG + j,
                            o_d, o_n, m_d, T, Dm, N, lo, width, NP, HAS_D, HAS_Z, False)
        tl.debug_barrier()  # the scratch rows are visible to every thread of the program
        for i_rc in range(SEG // BT):
            for ii in tl.static_range(BT):
                j = SEG - 1 - (i_rc * BT + ii)
                b_hp = _load_rows(p_sc + j * NP * BD, BD, 1, o_c, o_n, m_d, N, NP, BD)
                b_p, c_dA, c_dD, c_dbias = _bwd_step(
                    x, dt, Bm, Cm, D, z, dy, dx, ddt, dz, dB, dC, b_hp, b_p, b_A, b_A2,
                    b_bias, b_D, i_b, i_s * SEG + j, o_d, o_n, m_d, T, Dm, N, lo, width, NP,
                    HAS_D, HAS_Z)
                b_dA += c_dA
                b_dD += c_dD
                b_dbias += c_dbias
    _store_rows(dh0 + i_b * Dm * N, b_p, 1, N, o_d, o_n, m_d, N, NP)  # dh0 [B, Dm, N]
    _store_rows(dA_part + i_b * N * Dm, b_dA * width, Dm, 1, o_d, o_n, m_d, N, NP)
    tl.store(dD_part + i_b * Dm + o_d, b_dD, mask=m_d)
    tl.store(dbias_part + i_b * Dm + o_d, b_dbias, mask=m_d)
