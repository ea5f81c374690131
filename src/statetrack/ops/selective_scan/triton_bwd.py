"""Backward kernel of the fused selective scan (see README.md beside this for the derivation).

Per program (batch row, channel block), segments of SEG steps are visited last to first. For each
segment the forward is recomputed from the saved segment-start state, the chunk-start states
going to a small per-program scratch (L2-resident); then the chunks are visited in reverse: one
scan recomputes h_{t−1} and h_t, a reverse scan gives the adjoint g_t, and all gradients follow
from (g_t, h_{t−1}) with the signed map's derivative da/dΔ = (hi − lo)·A·exp(ΔA).
"""

from __future__ import annotations

import triton
import triton.language as tl

from statetrack.ops.selective_scan.triton_bfly import _add_dbc_bfly
from statetrack.ops.selective_scan.triton_kernels import (
    LOG2E,
    _add_channel_sums,
    _channel_block,
    _channel_params,
    _combine,
    _combine_excl,
    _fwd_loads,
    _gate_dy,
    _last_row,
    _load_td,
    _load_tn,
    _part_program,
    _softplus,
    _store_td_grads,
    _transitions,
)


@triton.jit
def _recompute_loads(x, dt, Bm, i_b, t0, o_d, o_n, m_d, m_n, T, Dm, N, BT: tl.constexpr):
    """x, dt ``[BT, BD]`` and B ``[BT, NP]`` of steps t0..t0+BT−1, float32, masked past T."""
    o_t = t0 + tl.arange(0, BT)
    m_t = o_t < T
    m_td = m_t[:, None] & m_d[None, :]
    b_x = _load_td(x, i_b, o_t, o_d, T, Dm, m_td)
    b_dt = _load_td(dt, i_b, o_t, o_d, T, Dm, m_td)
    b_B = _load_tn(Bm, i_b, o_t, o_n, T, N, m_t[:, None] & m_n[None, :])
    return b_x, b_dt, b_B


@triton.jit
def _recompute_chunk(x, dt, Bm, b_h, b_A2, b_bias, i_b, t0, o_d, o_n, m_d, m_n, T, Dm, N,
                     lo, width, BT: tl.constexpr):
    """The forward state after steps t0..t0+BT−1 (nothing written)."""
    b_x, b_dt, b_B = _recompute_loads(x, dt, Bm, i_b, t0, o_d, o_n, m_d, m_n, T, Dm, N, BT)
    return _recompute_steps(b_x, b_dt, b_B, b_h, b_A2, b_bias, t0, T, lo, width, BT)


@triton.jit
def _recompute_steps(b_x, b_dt, b_B, b_h, b_A2, b_bias, t0, T, lo, width, BT: tl.constexpr):
    """``_recompute_chunk`` from its loaded inputs."""
    return _last_row(_recompute_states(b_x, b_dt, b_B, b_h, b_A2, b_bias, t0, T, lo, width, BT))


@triton.jit
def _recompute_states(b_x, b_dt, b_B, b_h, b_A2, b_bias, t0, T, lo, width, BT: tl.constexpr):
    """The forward states h_t after each step t0..t0+BT−1 ``[BT, NP, BD]``, from b_h before
    t0 and the steps' loaded inputs (past T the state stays)."""
    o_t = t0 + tl.arange(0, BT)
    m_t = o_t < T
    b_delta = _softplus(b_dt + b_bias[None, :])
    b_a = _transitions(b_delta, b_A2, m_t, lo, width)
    b_b = (b_delta * b_x)[:, None, :] * b_B[:, :, None]
    c_a, c_b = tl.associative_scan((b_a, b_b), 0, _combine)
    return c_a * b_h[None, :, :] + c_b


@triton.jit
def _add3(a1, b1, c1, a2, b2, c2):
    """Combine of a sum of three tensors at once (``tl.reduce`` of a 3-tuple)."""
    return a1 + a2, b1 + b2, c1 + c2


@triton.jit
def _bwd_loads(x, dt, Bm, Cm, z, dy, i_b, t0, o_d, o_n, m_d, m_n, T, Dm, N,
               BT: tl.constexpr, HAS_Z: tl.constexpr):
    """The forward's inputs of steps t0..t0+BT−1 (``_fwd_loads``: x, dt, B, C, z, masked
    outside [0, T)) and dy ``[BT, BD]``, float32."""
    b_x, b_dt, b_B, b_C, b_z = _fwd_loads(x, dt, Bm, Cm, z, i_b, t0, o_d, o_n, m_d, m_n, T, Dm,
                                          N, BT, HAS_Z)
    o_t = t0 + tl.arange(0, BT)
    m_td = ((o_t < T) & (o_t >= 0))[:, None] & m_d[None, :]
    b_dy = _load_td(dy, i_b, o_t, o_d, T, Dm, m_td)
    return b_x, b_dt, b_B, b_C, b_dy, b_z


@triton.jit
def _bwd_chunk(x, dt, Bm, Cm, D, z, dy, dx, ddt, dz, dB, dC, b_hc, b_p, b_A, b_A2, b_bias,
               b_D, i_b, t0, o_d, o_n, m_d, m_n, T, Dm, N, lo, width,
               BT: tl.constexpr, HAS_D: tl.constexpr, HAS_Z: tl.constexpr,
               BFLY: tl.constexpr = 0):
    """Gradients of steps t0..t0+BT−1 given the state before t0 (b_hc) and the adjoint
    carry b_p = a_{t0+BT}·g_{t0+BT}. Returns (new carry, dA part, dD part, dbias part)."""
    b_x, b_dt, b_B, b_C, b_dy, b_z = _bwd_loads(x, dt, Bm, Cm, z, dy, i_b, t0, o_d, o_n, m_d,
                                                m_n, T, Dm, N, BT, HAS_Z)
    return _bwd_steps(dx, ddt, dz, dB, dC, b_x, b_dt, b_B, b_C, b_dy, b_z, b_hc, b_p, b_A,
                      b_A2, b_bias, b_D, i_b, t0, o_d, o_n, m_d, m_n, T, Dm, N, lo, width, BT,
                      HAS_D, HAS_Z, BFLY)


@triton.jit
def _bwd_steps(dx, ddt, dz, dB, dC, b_x, b_dt, b_B, b_C, b_dy, b_z, b_hc, b_p, b_A, b_A2,
               b_bias, b_D, i_b, t0, o_d, o_n, m_d, m_n, T, Dm, N, lo, width,
               BT: tl.constexpr, HAS_D: tl.constexpr, HAS_Z: tl.constexpr,
               BFLY: tl.constexpr = 0):
    """``_bwd_chunk`` from its loaded inputs (``_bwd_loads``)."""
    o_t = t0 + tl.arange(0, BT)
    m_t = o_t < T
    m_td = m_t[:, None] & m_d[None, :]
    m_tn = m_t[:, None] & m_n[None, :]
    b_u = b_dt + b_bias[None, :]
    # Δ = 0 past T: there g_t is the carried adjoint, not 0, and must not reach dA
    b_delta = tl.where(m_td, _softplus(b_u), 0.0)
    b_dy, b_dyg, b_z, b_sz = _gate_dy(b_dy, b_z, HAS_Z)
    b_E = tl.exp2(b_delta[:, None, :] * b_A2[None, :, :])
    # steps past T: a = 1, b = 0, dh = 0, so both carries pass through unchanged
    b_a = tl.where(m_t[:, None, None], lo + width * b_E, 1.0)
    b_dxd = b_delta * b_x
    b_b = b_dxd[:, None, :] * b_B[:, :, None]
    ones = tl.full(b_a.shape, 1.0, tl.float32)
    zeros = tl.zeros(b_a.shape, tl.float32)
    _, _, e_a, e_b = tl.associative_scan((b_a, b_b, ones, zeros), 0, _combine_excl)
    b_hp = e_a * b_hc[None, :, :] + e_b  # h_{t−1}
    b_h = b_a * b_hp + b_b  # h_t
    b_dh = b_dyg[:, None, :] * b_C[:, :, None]
    # p_t = a_t·g_t = a_t·(dh_t + p_{t+1}); the exclusive reverse prefix gives p_{t+1}. The
    # reverse scan is a forward scan of the time-flipped chunk (its last row is then step t0):
    # Triton 3.6 lowers reverse=True with two lane reversals of every operand, 5 chained
    # shuffles each way, though time lies within each thread (offline SASS at BT = 4: 2784 →
    # 2472 instructions, 508 → 188 shuffles); tl.flip of an in-thread axis needs none
    f_a, f_b, r_a, r_b = tl.associative_scan((tl.flip(b_a, 0), tl.flip(b_a * b_dh, 0), ones,
                                              zeros), 0, _combine_excl)
    r_a = tl.flip(r_a, 0)
    r_b = tl.flip(r_b, 0)
    b_g = b_dh + r_a * b_p[None, :, :] + r_b
    at_t0 = (tl.arange(0, BT) == BT - 1)[:, None, None]  # flipped: the row of step t0
    b_p = tl.sum(tl.where(at_t0, f_a * b_p[None, :, :] + f_b, 0.0), axis=0)
    b_gh = b_g * b_hp  # ∂L/∂a_t
    o_tn = i_b * T * N + o_t[:, None] * N + o_n[None, :]
    # relaxed: only the sums at the kernel's end matter. The default (acq_rel) puts a
    # MEMBAR.ALL.GPU, ERRBAR and CCTL.IVALL around every atomic (Triton 3.6 SASS): 8.9% of the
    # backward's stall samples in session 7's profile (logs/h200_scan_ncu_chunk_pipe_sass_s7.md)
    if BFLY > 0:  # the sums over the channels by a reduce-scatter (triton_bfly.py)
        _add_dbc_bfly(dB + i_b * T * N, dC + i_b * T * N, b_g * b_dxd[:, None, :],
                      b_dyg[:, None, :] * b_h, o_t[:, None] * N + o_n[None, :], m_tn, BFLY)
    else:
        tl.atomic_add(dC + o_tn, tl.sum(b_dyg[:, None, :] * b_h, axis=2), mask=m_tn,
                      sem="relaxed")
        tl.atomic_add(dB + o_tn, tl.sum(b_g * b_dxd[:, None, :], axis=2), mask=m_tn,
                      sem="relaxed")
    b_gE = b_gh * b_E
    # the three sums over the states (split over the warps) in one reduction: one round trip
    # through shared memory and its barriers instead of three
    b_gB, b_gEA, b_yp = tl.reduce((b_g * b_B[:, :, None], b_gE * b_A[None, :, :],
                                   b_h * b_C[:, :, None]), 1, _add3)
    b_ddelta = b_x * b_gB + width * b_gEA
    b_ddt = tl.where(m_td, b_ddelta * tl.sigmoid(b_u), 0.0)
    _store_td_grads(dx, ddt, dz, b_delta * b_gB, b_ddt, b_yp, b_x, b_D, b_dy, b_dyg, b_z, b_sz,
                    i_b, o_t, o_d, m_td, T, Dm, HAS_D, HAS_Z)
    b_dA = tl.sum(b_gE * b_delta[:, None, :], axis=0)
    return b_p, b_dA, tl.sum(b_dyg * b_x, axis=0), tl.sum(b_ddt, axis=0)


@triton.jit
def _bwd_step(x, dt, Bm, Cm, D, z, dy, dx, ddt, dz, dB, dC, p_hc, b_p, b_dA, b_dD, b_dbias,
              b_A, b_A2, b_bias, b_D, i_b, t0, o_d, o_n, m_d, m_n, T, Dm, N, lo, width,
              BT: tl.constexpr, HAS_D: tl.constexpr, HAS_Z: tl.constexpr,
              BFLY: tl.constexpr = 0):
    """One chunk of the reverse loop: its entering state from the scratch at ``p_hc``, its
    gradients, and the carry and per-program sums updated."""
    b_hc = tl.load(p_hc)
    b_p, c_dA, c_dD, c_dbias = _bwd_chunk(
        x, dt, Bm, Cm, D, z, dy, dx, ddt, dz, dB, dC, b_hc, b_p, b_A, b_A2, b_bias, b_D, i_b, t0,
        o_d, o_n, m_d, m_n, T, Dm, N, lo, width, BT, HAS_D, HAS_Z, BFLY)
    return b_p, b_dA + c_dA, b_dD + c_dD, b_dbias + c_dbias


@triton.jit
def _recompute_segment_pipe(x, dt, Bm, b_h, b_A2, b_bias, o_sc, i_b, s0, o_d, o_n, m_d, m_n,
                            T, Dm, N, lo, width, NP: tl.constexpr, BT: tl.constexpr,
                            BD: tl.constexpr, NC: tl.constexpr, RBT: tl.constexpr):
    """PIPE: the forward over the segment starting at step s0 in chunks of RBT steps (a multiple
    of the reverse loop's BT), the state entering each of the reverse loop's chunks to the
    scratch: a chunk's entering state, then, when RBT > BT, the states after every BT of its
    steps but the last (rows BT − 1, 2·BT − 1, … of its scan, RBT / BT − 1 of them). Chunk
    c+1's loads are issued before chunk c's scan; only the chunks that hold steps before T run.
    Returns the state."""
    K: tl.constexpr = RBT // BT  # reverse-loop chunks per recompute chunk
    n_x, n_dt, n_B = _recompute_loads(x, dt, Bm, i_b, s0, o_d, o_n, m_d, m_n, T, Dm, N, RBT)
    for i_c in range(tl.minimum(NC // K, tl.cdiv(T - s0, RBT))):
        b_x, b_dt, b_B = n_x, n_dt, n_B
        n_x, n_dt, n_B = _recompute_loads(x, dt, Bm, i_b, s0 + (i_c + 1) * RBT, o_d, o_n, m_d,
                                          m_n, T, Dm, N, RBT)
        tl.store(o_sc + i_c * K * NP * BD, b_h)
        b_H = _recompute_states(b_x, b_dt, b_B, b_h, b_A2, b_bias, s0 + i_c * RBT, T, lo,
                                width, RBT)
        # row k·BT − 1 enters the reverse loop's chunk k of this one (none when K = 1); taken
        # out row by row (a sum over the in-thread time axis): a masked store of the whole tile
        # would make Triton lay it out for the store, time across lanes, and its scan shuffle
        for k in tl.static_range(1, K):
            at = (tl.arange(0, RBT) == k * BT - 1)[:, None, None]
            tl.store(o_sc + (i_c * K + k) * NP * BD, tl.sum(tl.where(at, b_H, 0.0), axis=0))
        b_h = _last_row(b_H)
    return b_h


@triton.jit
def _load_state(p, m, MASKED: tl.constexpr):
    """An ``[NP, BD]`` state tile: the scratch (whole tiles, no mask) or the forward's saved
    states (``[B, ·, N, Dm]``, masked to N and Dm)."""
    if MASKED:
        return tl.load(p, mask=m, other=0.0)
    return tl.load(p)


@triton.jit
def _reverse_chunks_pipe(x, dt, Bm, Cm, z, dy, dx, ddt, dz, dB, dC, o_sc, sc_stride, m_sc,
                         b_p, b_dA, b_dD, b_dbias, b_A, b_A2, b_bias, b_D, i_b, s0, n_c, o_d,
                         o_n, m_d, m_n, T, Dm, N, lo, width, BT: tl.constexpr,
                         SC_MASKED: tl.constexpr, HAS_D: tl.constexpr, HAS_Z: tl.constexpr,
                         BFLY: tl.constexpr = 0):
    """PIPE: the n_c chunks from step s0 last to first, chunk c−1's loads (inputs and its
    entering state, the ``[NP, BD]`` pointer tile ``o_sc + c·sc_stride``, masked by ``m_sc``
    when SC_MASKED) issued before chunk c's scans. Returns the carry and the sums."""
    n_x, n_dt, n_B, n_C, n_dy, n_z = _bwd_loads(x, dt, Bm, Cm, z, dy, i_b, s0 + (n_c - 1) * BT,
                                                o_d, o_n, m_d, m_n, T, Dm, N, BT, HAS_Z)
    n_hc = _load_state(o_sc + (n_c - 1) * sc_stride, m_sc, SC_MASKED)
    for i_rc in range(n_c):
        i_c = n_c - 1 - i_rc
        t0 = s0 + i_c * BT
        b_x, b_dt, b_B, b_C, b_dy, b_z, b_hc = n_x, n_dt, n_B, n_C, n_dy, n_z, n_hc
        # chunk c − 1 (before step 0 all masked; the scratch index clamped, its value unused)
        n_x, n_dt, n_B, n_C, n_dy, n_z = _bwd_loads(x, dt, Bm, Cm, z, dy, i_b, t0 - BT, o_d,
                                                    o_n, m_d, m_n, T, Dm, N, BT, HAS_Z)
        n_hc = _load_state(o_sc + tl.maximum(i_c - 1, 0) * sc_stride, m_sc, SC_MASKED)
        b_p, c_dA, c_dD, c_dbias = _bwd_steps(
            dx, ddt, dz, dB, dC, b_x, b_dt, b_B, b_C, b_dy, b_z, b_hc, b_p, b_A, b_A2, b_bias,
            b_D, i_b, t0, o_d, o_n, m_d, m_n, T, Dm, N, lo, width, BT, HAS_D, HAS_Z, BFLY)
        b_dA += c_dA
        b_dD += c_dD
        b_dbias += c_dbias
    return b_p, b_dA, b_dD, b_dbias


@triton.jit
def ss_bwd_carry_kernel(dt, A, Cm, z, dt_bias, dy, q, prod, T, Dm, N, lo, width, seg_per_part,
                        NP: tl.constexpr, BT: tl.constexpr, BD: tl.constexpr,
                        SEG: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr):
    """Grid (cdiv(Dm, BD), B, parts): the time split into parts of ``seg_per_part`` segments.

    The adjoint carry crosses a part from right to left as an affine map p ↦ prod·p + q
    (p_t = a_t·(dh_t + p_{t+1}) step by step, dh_t = dy'_t·C_t), which needs neither the
    states nor the other gradients. For each part this stores q (the carry it passes on when
    none enters) and prod (the product of its transitions), ``[B, parts, Dm, N]`` float32, so
    that ``ss_bwd_kernel`` can run the parts at once, each from its own entering carry."""
    i_b, o_d, o_n, m_d, m_nd, b_A2, b_bias, t_lo, t_hi, o_part = _part_program(
        A, dt_bias, T, Dm, N, seg_per_part, NP, BD, SEG, HAS_BIAS)
    m_n = o_n < N
    b_q = tl.zeros([NP, BD], dtype=tl.float32)
    b_P = tl.full([NP, BD], 1.0, tl.float32)
    n_c = tl.cdiv(t_hi - t_lo, BT)
    for i_rc in range(n_c):  # the part's chunks, last to first (they never cross its ends)
        o_t = t_lo + (n_c - 1 - i_rc) * BT + tl.arange(0, BT)
        m_t = o_t < T
        m_td = m_t[:, None] & m_d[None, :]
        b_delta = tl.where(m_td, _softplus(_load_td(dt, i_b, o_t, o_d, T, Dm, m_td)
                                           + b_bias[None, :]), 0.0)
        b_dy = _load_td(dy, i_b, o_t, o_d, T, Dm, m_td)
        b_z = b_dy
        if HAS_Z:
            b_z = _load_td(z, i_b, o_t, o_d, T, Dm, m_td)
        b_dyg = _gate_dy(b_dy, b_z, HAS_Z)[1]
        b_C = _load_tn(Cm, i_b, o_t, o_n, T, N, m_t[:, None] & m_n[None, :])
        # past T: a = 1 and dh = 0, the identity (as in _bwd_steps)
        b_a = _transitions(b_delta, b_A2, m_t, lo, width)
        b_dh = b_dyg[:, None, :] * b_C[:, :, None]
        f_a, f_b = tl.associative_scan((tl.flip(b_a, 0), tl.flip(b_a * b_dh, 0)), 0, _combine)
        c_a = _last_row(f_a)  # the chunk's map, step t0 last
        b_q = c_a * b_q + _last_row(f_b)
        b_P = c_a * b_P
    tl.store(q + o_part, b_q, mask=m_nd)
    tl.store(prod + o_part, b_P, mask=m_nd)


@triton.jit
def ss_bwd_kernel(x, dt, A, Bm, Cm, D, z, dt_bias, hseg, dy, dhT,
                  dx, ddt, dz, dB, dC, dA, dD, dbias, dh0, scratch, q, prod,
                  T, Dm, N, lo, width, seg_per_part,
                  NP: tl.constexpr, BT: tl.constexpr, BD: tl.constexpr, SEG: tl.constexpr,
                  HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr,
                  HAS_DHT: tl.constexpr, PIPE: tl.constexpr = False,
                  SPLIT: tl.constexpr = False, BFLY: tl.constexpr = 0,
                  RBT: tl.constexpr = 0):
    """Grid (cdiv(Dm, BD), B, parts). dB, dC [B, T, N], dA [Dm, N], dD and dbias [Dm]: float32,
    zeroed, accumulated with atomics (dA, dD, dbias once per program, at its end).

    SPLIT (parts > 1) splits the time into parts of ``seg_per_part`` segments, one program
    each: the carry entering a part from the right is dh_T (or 0) taken through the later
    parts' maps from ``ss_bwd_carry_kernel`` (q, prod); part 0 writes dh0. Without it (one
    part) q, prod and seg_per_part are not read and the code is the unsplit kernel's.

    PIPE: the two chunk loops without branches, over the segment's chunks that hold steps
    before T, each issuing the next chunk's loads before this chunk's scans
    (``_recompute_segment_pipe``, ``_reverse_chunks_pipe``); steps past T within a chunk are
    masked (a = 1, b = 0, dh = 0, Δ = 0: the identity with no gradient), so results are the
    same. (Session 5 ran all SEG / BT chunks of a short last segment: 16 instead of 10 at
    T = 40, where the layout was then slower than "chunk".) RBT (PIPE; 0: BT) is the
    recompute's chunk, a multiple of BT dividing SEG: it stores the reverse loop's entering
    states from within its larger scan. PIPE with SEG = BT is DENSE: the forward saved the
    state entering every chunk, so one reverse loop reads them and nothing is recomputed (the
    scratch is not read); hseg is then ``[B, cdiv(T, BT), N, Dm]``, BT / SEG times the
    memory."""
    i_d = tl.program_id(0)
    i_b = tl.program_id(1).to(tl.int64)
    row = i_b  # of the scratch: one per (batch row, part)
    o_d, o_n, m_d, m_nd, o_nd = _channel_block(i_d, Dm, N, NP, BD)
    m_n = o_n < N
    b_A, b_bias, b_D, b_p = _channel_params(A, dt_bias, D, dhT, i_b, o_d, o_nd, m_d, m_nd, Dm, N,
                                            NP, BD, HAS_BIAS, HAS_D, HAS_DHT)
    n_seg = tl.cdiv(T, SEG)
    seg_lo, seg_hi = 0, n_seg
    if SPLIT:
        i_p = tl.program_id(2)
        n_parts = tl.num_programs(2)
        row = i_b * n_parts + i_p
        for i_k in range(n_parts - 1 - i_p):  # the later parts' maps, last part first
            o_k = (i_b * n_parts + n_parts - 1 - i_k) * Dm * N + o_nd
            b_p = (tl.load(prod + o_k, mask=m_nd, other=0.0) * b_p
                   + tl.load(q + o_k, mask=m_nd, other=0.0))
        seg_lo = i_p * seg_per_part
        seg_hi = tl.minimum(seg_lo + seg_per_part, n_seg)
    pid = row * tl.num_programs(0) + i_d
    b_A2 = b_A * LOG2E
    b_dA = tl.zeros([NP, BD], dtype=tl.float32)
    b_dD = tl.zeros([BD], dtype=tl.float32)
    b_dbias = tl.zeros([BD], dtype=tl.float32)
    NC: tl.constexpr = SEG // BT
    o_sc = scratch + pid * NC * NP * BD + o_n[:, None] * BD + tl.arange(0, BD)[None, :]
    if PIPE and SEG == BT:
        # DENSE: the forward saved the state entering every chunk (hseg [B, cdiv(T, BT), N,
        # Dm]), so there is nothing to recompute: one reverse loop over the part's chunks
        p_hs = hseg + i_b * n_seg * N * Dm + o_n[:, None] * Dm + o_d[None, :]
        b_p, b_dA, b_dD, b_dbias = _reverse_chunks_pipe(
            x, dt, Bm, Cm, z, dy, dx, ddt, dz, dB, dC, p_hs + seg_lo * N * Dm, N * Dm, m_nd,
            b_p, b_dA, b_dD, b_dbias, b_A, b_A2, b_bias, b_D, i_b, seg_lo * BT, seg_hi - seg_lo,
            o_d, o_n, m_d, m_n, T, Dm, N, lo, width, BT, True, HAS_D, HAS_Z, BFLY)
    else:
        for i_r in range(seg_hi - seg_lo):
            i_s = seg_hi - 1 - i_r
            b_h = tl.load(hseg + (i_b * n_seg + i_s) * N * Dm + o_n[:, None] * Dm
                          + o_d[None, :], mask=m_nd, other=0.0)
            tl.debug_barrier()  # the previous segment's scratch reads are done
            if PIPE:  # both loops issue the next chunk's loads before this chunk's scans
                b_h = _recompute_segment_pipe(x, dt, Bm, b_h, b_A2, b_bias, o_sc, i_b,
                                              i_s * SEG, o_d, o_n, m_d, m_n, T, Dm, N, lo,
                                              width, NP, BT, BD, NC, RBT if RBT > 0 else BT)
                tl.debug_barrier()  # scratch written by other threads of this program
                # the segment's chunks that hold steps before T (a short last one has fewer)
                b_p, b_dA, b_dD, b_dbias = _reverse_chunks_pipe(
                    x, dt, Bm, Cm, z, dy, dx, ddt, dz, dB, dC, o_sc, NP * BD, m_nd, b_p, b_dA,
                    b_dD, b_dbias, b_A, b_A2, b_bias, b_D, i_b, i_s * SEG,
                    tl.minimum(NC, tl.cdiv(T - i_s * SEG, BT)), o_d, o_n, m_d, m_n, T, Dm, N,
                    lo, width, BT, False, HAS_D, HAS_Z, BFLY)
            else:
                for i_c in range(NC):
                    t0 = i_s * SEG + i_c * BT
                    tl.store(o_sc + i_c * NP * BD, b_h)
                    if t0 + BT < T:  # the last chunk's end state is never needed
                        b_h = _recompute_chunk(x, dt, Bm, b_h, b_A2, b_bias, i_b, t0, o_d,
                                               o_n, m_d, m_n, T, Dm, N, lo, width, BT)
                tl.debug_barrier()  # scratch written by other threads of this program
                for i_rc in range(NC):
                    i_c = NC - 1 - i_rc
                    t0 = i_s * SEG + i_c * BT
                    if t0 < T:
                        b_p, b_dA, b_dD, b_dbias = _bwd_step(
                            x, dt, Bm, Cm, D, z, dy, dx, ddt, dz, dB, dC, o_sc + i_c * NP * BD,
                            b_p, b_dA, b_dD, b_dbias, b_A, b_A2, b_bias, b_D, i_b, t0, o_d,
                            o_n, m_d, m_n, T, Dm, N, lo, width, BT, HAS_D, HAS_Z, BFLY)
    if seg_lo == 0:  # the carry past step 0 (part 0's)
        tl.store(dh0 + i_b * Dm * N + o_nd, b_p, mask=m_nd)
    tl.atomic_add(dA + o_nd, b_dA * width, mask=m_nd, sem="relaxed")
    _add_channel_sums(dD, dbias, b_dD, b_dbias, o_d, m_d)
