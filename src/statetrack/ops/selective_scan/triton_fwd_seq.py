"""Forward kernel of the fused selective scan, one channel per thread (experimental).

``ss_fwd_kernel`` (triton_kernels.py) scans chunks of BT steps in parallel over time, with a
``[BT, N, BD]`` tile whose N states are spread over the warps: 236 registers per thread at
BT = 16, two programs per multiprocessor, and a cross-warp reduction for ``C·h`` every chunk.
This kernel walks time one step after another instead, each thread owning one channel's N
states (an ``[NP, BD]`` tile, BD = 32·num_warps, whose N axis stays in the thread), so

    h ← a_t ⊙ h + Δ_t x_t B_t,   y_t = Σ_n C_t,n h_n + D x_t   (then the SiLU(z) gate)

is a few multiply-adds and one ex2 per state per step, with ``C·h`` summed in registers. Steps
go BT at a time through a static loop: their loads do not depend on h, so they are all issued
before the first multiply-add needs them (one exposed load latency per BT steps).

Same arguments, grid ``(cdiv(Dm, BD), B)`` and outputs as ``ss_fwd_kernel`` (y, h_T, and the
state before every SEG steps for the backward), so either forward pairs with the backward.
"""

from __future__ import annotations

import triton
import triton.language as tl

from statetrack.ops.selective_scan.triton_kernels import LOG2E, _softplus

# Layouts. Triton gives a 2-D tensor built from 1-D pieces its default layout (for [NP, BD]
# with BD = 32·num_warps: lanes and warps along BD, the NP rows in each thread), but a 2-D load
# gets the layout that coalesces it, and for [Dm, N]-major A or h0 that spreads N over lanes,
# costing a shared-memory layout conversion at every step. So every [NP, ·] tensor here is
# assembled row by row from [BD] loads or scalar loads (``_load_rows``, ``_step``): a select
# whose row index is a compile-time constant in each register, which the compiler folds away
# (scripts/dev/kernel_resources.py: no shared memory, no barrier, 156 registers at BT = 16).


@triton.jit
def _step_inputs(x, dt, Bm, Cm, i_b, t, o_d, o_n, m_d, T, Dm, N, b_bias, NP: tl.constexpr):
    """Step t's inputs: (m [BD] = channel valid and t < T, row = b·T + t, x_t, u_t = dt_t +
    dt_bias, B_t, C_t [NP]), float32, zeros past T."""
    m_t = (o_d * 0 + t) < T  # a vector: masks keep one dtype, also under the interpreter
    m = m_d & m_t
    row = i_b * T + t
    b_x = tl.load(x + row * Dm + o_d, mask=m, other=0.0).to(tl.float32)
    b_u = tl.load(dt + row * Dm + o_d, mask=m, other=0.0).to(tl.float32) + b_bias
    b_B = tl.zeros([NP], dtype=tl.float32)
    b_C = tl.zeros([NP], dtype=tl.float32)
    valid = tl.full([], t, tl.int32) < T
    for n in tl.static_range(NP):  # uniform scalar loads: every thread reads the same B_t, C_t
        if n < N:
            b_B = tl.where(o_n == n, tl.load(Bm + row * N + n, mask=valid, other=0.0)
                           .to(tl.float32), b_B)
            b_C = tl.where(o_n == n, tl.load(Cm + row * N + n, mask=valid, other=0.0)
                           .to(tl.float32), b_C)
    return m, row, b_x, b_u, b_B, b_C


@triton.jit
def _step(x, dt, Bm, Cm, z, y, b_h, b_A2, b_bias, b_D, i_b, t, o_d, o_n, m_d, T, Dm, N,
          lo, width, NP: tl.constexpr, HAS_D: tl.constexpr, HAS_Z: tl.constexpr,
          WRITE_Y: tl.constexpr):
    """One time step t for the channel block: writes y_t (if WRITE_Y), returns the new state
    [NP, BD] (the old one where t ≥ T: there Δ = 0 and B = 0 make the step the identity only
    for [0, 1], so it is masked)."""
    m, row, b_x, b_u, b_B, b_C = _step_inputs(x, dt, Bm, Cm, i_b, t, o_d, o_n, m_d, T, Dm, N,
                                              b_bias, NP)
    b_delta = _softplus(b_u)
    b_a = lo + width * tl.exp2(b_delta[None, :] * b_A2)
    b_new = b_a * b_h + (b_delta * b_x)[None, :] * b_B[:, None]
    b_h = tl.where(m[None, :], b_new, b_h)
    if WRITE_Y:
        b_y = tl.sum(b_h * b_C[:, None], axis=0)
        if HAS_D:
            b_y += b_D * b_x
        if HAS_Z:
            b_z = tl.load(z + row * Dm + o_d, mask=m, other=0.0).to(tl.float32)
            b_y = b_y * b_z * tl.sigmoid(b_z)
        tl.store(y + row * Dm + o_d, b_y.to(y.dtype.element_ty), mask=m)
    return b_h


@triton.jit
def _load_rows(p, stride_n, stride_d, o_d, o_n, m_d, N, NP: tl.constexpr, BD: tl.constexpr):
    """``[NP, BD]`` float32 tile with element (n, d) at ``p + n·stride_n + d·stride_d``, read
    row by row ([BD] loads) so that it keeps the default layout; 0 past N or Dm."""
    b = tl.zeros([NP, BD], dtype=tl.float32)
    for n in tl.static_range(NP):
        if n < N:
            row = tl.load(p + n * stride_n + o_d * stride_d, mask=m_d, other=0.0)
            b = tl.where(o_n[:, None] == n, row.to(tl.float32)[None, :], b)
    return b


@triton.jit
def _store_rows(p, b, stride_n, stride_d, o_d, o_n, m_d, N, NP: tl.constexpr):
    """Store the ``[NP, BD]`` tile b row by row (see ``_load_rows``)."""
    for n in tl.static_range(NP):
        if n < N:
            row = tl.sum(tl.where(o_n[:, None] == n, b, 0.0), axis=0)
            tl.store(p + n * stride_n + o_d * stride_d, row, mask=m_d)


@triton.jit
def ss_fwd_seq_kernel(x, dt, A, Bm, Cm, D, z, dt_bias, h0, y, hT, hseg,
                      T, Dm, N, lo, width,
                      NP: tl.constexpr, BT: tl.constexpr, BD: tl.constexpr, SEG: tl.constexpr,
                      HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr,
                      HAS_H0: tl.constexpr, SAVE: tl.constexpr):
    """Grid (cdiv(Dm, BD), B). hseg[b, s] = state before step s·SEG, layout [B, S, N, Dm]."""
    i_d = tl.program_id(0)
    i_b = tl.program_id(1).to(tl.int64)
    o_d = i_d * BD + tl.arange(0, BD)
    o_n = tl.arange(0, NP)
    m_d = o_d < Dm
    b_A2 = _load_rows(A, 1, N, o_d, o_n, m_d, N, NP, BD) * LOG2E  # A [Dm, N]
    b_bias = tl.zeros([BD], dtype=tl.float32)
    if HAS_BIAS:
        b_bias = tl.load(dt_bias + o_d, mask=m_d, other=0.0).to(tl.float32)
    b_D = tl.zeros([BD], dtype=tl.float32)
    if HAS_D:
        b_D = tl.load(D + o_d, mask=m_d, other=0.0).to(tl.float32)
    b_h = tl.zeros([NP, BD], dtype=tl.float32)
    if HAS_H0:
        b_h = _load_rows(h0 + i_b * Dm * N, 1, N, o_d, o_n, m_d, N, NP, BD)
    n_seg = tl.cdiv(T, SEG)
    for i_s in range(n_seg):
        if SAVE:
            _store_rows(hseg + (i_b * n_seg + i_s) * N * Dm, b_h, Dm, 1, o_d, o_n, m_d, N, NP)
        for i_c in range(SEG // BT):
            t0 = i_s * SEG + i_c * BT
            if t0 < T:
                for i in tl.static_range(BT):
                    b_h = _step(x, dt, Bm, Cm, z, y, b_h, b_A2, b_bias, b_D, i_b, t0 + i, o_d,
                                o_n, m_d, T, Dm, N, lo, width, NP, HAS_D, HAS_Z, True)
    _store_rows(hT + i_b * Dm * N, b_h, 1, N, o_d, o_n, m_d, N, NP)  # hT [B, Dm, N]
