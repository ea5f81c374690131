"""Triton kernels of the fused selective scan (forward and backward).

Tile ``[BT, N, BD]``: a chunk of BT time steps, the N states, BD channels of one batch row. One
program owns (batch row, channel block) and walks time chunk by chunk, carrying the state
``[N, BD]`` in registers. Within a chunk the recurrence is a ``tl.associative_scan`` over the
time axis whose combine is pure multiply/add, so signs and exact zeros of the transition survive
(no log of a signed number is ever taken). Nothing of size ``[B, T, Dm, N]`` touches memory:
only x, dt, z, B, C, y, and in the backward dy and the gradients, plus the state at the start of
every SEG steps (``[B, T/SEG, N, Dm]`` float32) that the backward restarts from.
"""

from __future__ import annotations

import triton
import triton.language as tl

LOG2E = tl.constexpr(1.4426950408889634)


@triton.jit
def _combine(a1, b1, a2, b2):
    """(first, second) → second ∘ first for maps h ↦ a·h + b."""
    return a1 * a2, a2 * b1 + b2


@triton.jit
def _combine_excl(a1, b1, e1, f1, a2, b2, e2, f2):
    """Like ``_combine`` on (a, b), plus (e, f): the composition without the last-applied element.

    A single element carries (e, f) = (1, 0), so the scan yields both the inclusive and the
    exclusive prefix (h_t and h_{t−1}) without a division by a (which may be 0).
    """
    return a1 * a2, a2 * b1 + b2, e2 * a1, e2 * b1 + f2


@triton.jit
def _softplus(u):
    """softplus with torch's threshold 20; log1p via (log w)·e/(w − 1), exact for tiny e."""
    e = tl.exp(tl.minimum(u, 20.0))
    w = 1.0 + e
    lp = tl.where(w == 1.0, e, tl.log(w) * e / (w - 1.0))
    return tl.where(u > 20.0, u, lp)


@triton.jit
def _transitions(b_delta, b_A2, m_t, lo, width):
    """a = lo + width·exp(Δ·A) ``[BT, NP, BD]`` (A2 = A·log2 e), 1 (the identity) at steps
    past T (``m_t`` false)."""
    b_a = lo + width * tl.exp2(b_delta[:, None, :] * b_A2[None, :, :])
    return tl.where(m_t[:, None, None], b_a, 1.0)


@triton.jit
def _last_row(t):
    """Row BT − 1 of a ``[BT, NP, BD]`` tile (a chunk's whole map after a scan), ``[NP, BD]``."""
    BT: tl.constexpr = t.shape[0]
    return tl.sum(tl.where((tl.arange(0, BT) == BT - 1)[:, None, None], t, 0.0), axis=0)


@triton.jit
def _part_program(A, dt_bias, T, Dm, N, seg_per_part, NP: tl.constexpr, BD: tl.constexpr,
                  SEG: tl.constexpr, HAS_BIAS: tl.constexpr):
    """The program (channel block, batch row, part) of a carry kernel: row i_b, the channel
    block's offsets and masks, A·log2 e ``[NP, BD]``, dt_bias ``[BD]``, the part's first
    step and end (≤ T), and the offsets of its ``[B, parts, Dm, N]`` outputs."""
    i_d = tl.program_id(0)
    i_b = tl.program_id(1).to(tl.int64)
    i_p = tl.program_id(2)
    o_d, o_n, m_d, m_nd, o_nd = _channel_block(i_d, Dm, N, NP, BD)
    b_A2 = tl.load(A + o_nd, mask=m_nd, other=0.0).to(tl.float32) * LOG2E
    b_bias = _bias_and_skip(dt_bias, dt_bias, o_d, m_d, BD, HAS_BIAS, False)[0]
    t_lo = i_p * seg_per_part * SEG
    t_hi = tl.minimum(t_lo + seg_per_part * SEG, T)
    o_part = (i_b * tl.num_programs(2) + i_p) * Dm * N + o_nd
    return i_b, o_d, o_n, m_d, m_nd, b_A2, b_bias, t_lo, t_hi, o_part


@triton.jit
def _load_td(p, i_b, o_t, o_d, T, Dm, m_td):
    """A ``[BT, BD]`` tile of a ``[B, T, Dm]`` tensor as float32 (0 outside)."""
    return tl.load(p + i_b * T * Dm + o_t[:, None] * Dm + o_d[None, :], mask=m_td,
                   other=0.0).to(tl.float32)


@triton.jit
def _load_tn(p, i_b, o_t, o_n, T, N, m_tn):
    """A ``[BT, NP]`` tile of a ``[B, T, N]`` tensor as float32 (0 outside)."""
    return tl.load(p + i_b * T * N + o_t[:, None] * N + o_n[None, :], mask=m_tn,
                   other=0.0).to(tl.float32)


@triton.jit
def _channel_block(i_d, Dm, N, NP: tl.constexpr, BD: tl.constexpr):
    """Offsets and masks of channel block ``i_d``: o_d, o_n, m_d, m_nd and ``o_nd`` into
    ``[Dm, N]`` / ``[B, Dm, N]`` as an ``[NP, BD]`` tile."""
    o_d = i_d * BD + tl.arange(0, BD)
    o_n = tl.arange(0, NP)
    m_d = o_d < Dm
    m_nd = (o_n < N)[:, None] & m_d[None, :]
    return o_d, o_n, m_d, m_nd, o_d[None, :] * N + o_n[:, None]


@triton.jit
def _bias_and_skip(dt_bias, D, o_d, m_d, BD: tl.constexpr, HAS_BIAS: tl.constexpr,
                   HAS_D: tl.constexpr):
    """dt_bias and D of the channels o_d as float32 ``[BD]`` (zeros where absent)."""
    b_bias = tl.zeros([BD], dtype=tl.float32)
    if HAS_BIAS:
        b_bias = tl.load(dt_bias + o_d, mask=m_d, other=0.0).to(tl.float32)
    b_D = tl.zeros([BD], dtype=tl.float32)
    if HAS_D:
        b_D = tl.load(D + o_d, mask=m_d, other=0.0).to(tl.float32)
    return b_bias, b_D


@triton.jit
def _store_y(y, b_y, b_x, b_D, z, i_b, o_t, o_d, m_td, T, Dm,
             HAS_D: tl.constexpr, HAS_Z: tl.constexpr):
    """y = (Σ_n C·h + D x)·silu(z) from ``b_y = Σ_n C·h`` ``[BT, BD]``, stored in y's dtype."""
    b_z = b_x  # a placeholder without z (unused, compiled away)
    if HAS_Z:
        b_z = _load_td(z, i_b, o_t, o_d, T, Dm, m_td)
    _store_y_given_z(y, b_y, b_x, b_D, b_z, i_b, o_t, o_d, m_td, T, Dm, HAS_D, HAS_Z)


@triton.jit
def _store_y_given_z(y, b_y, b_x, b_D, b_z, i_b, o_t, o_d, m_td, T, Dm,
                     HAS_D: tl.constexpr, HAS_Z: tl.constexpr):
    """``_store_y`` with z already loaded (``b_z``, float32 ``[BT, BD]``)."""
    if HAS_D:
        b_y += b_D[None, :] * b_x
    if HAS_Z:
        b_y = b_y * b_z * tl.sigmoid(b_z)
    tl.store(y + i_b * T * Dm + o_t[:, None] * Dm + o_d[None, :], b_y.to(y.dtype.element_ty),
             mask=m_td)


@triton.jit
def _gated_dy(dy, z, i_b, o_t, o_d, m_td, T, Dm, HAS_Z: tl.constexpr):
    """(dy, dy' = dy·silu(z), z, σ(z)) as float32 ``[BT, BD]``; without z, dy' = dy and the last
    two are dy as placeholders (unused, so compiled away)."""
    b_dy = _load_td(dy, i_b, o_t, o_d, T, Dm, m_td)
    b_z = b_dy
    if HAS_Z:
        b_z = _load_td(z, i_b, o_t, o_d, T, Dm, m_td)
    return _gate_dy(b_dy, b_z, HAS_Z)


@triton.jit
def _gate_dy(b_dy, b_z, HAS_Z: tl.constexpr):
    """``_gated_dy`` from loaded dy and z: (dy, dy', z, σ(z))."""
    b_dyg, b_sz = b_dy, b_dy
    if HAS_Z:
        b_sz = tl.sigmoid(b_z)
        b_dyg = b_dy * b_z * b_sz
    return b_dy, b_dyg, b_z, b_sz


@triton.jit
def _store_td_grads(dx, ddt, dz, b_dx, b_ddt, b_yp, b_x, b_D, b_dy, b_dyg, b_z, b_sz,
                    i_b, o_t, o_d, m_td, T, Dm, HAS_D: tl.constexpr, HAS_Z: tl.constexpr):
    """Store dx (``b_dx`` = Δ·Σ_n g·B, plus D·dy' here), ddt and, with z, dz = dy·y'·silu'(z),
    where ``b_yp`` = Σ_n C·h is y before the D skip (added here) and the gate."""
    if HAS_D:
        b_dx += b_D[None, :] * b_dyg
        b_yp += b_D[None, :] * b_x
    o_td = i_b * T * Dm + o_t[:, None] * Dm + o_d[None, :]
    tl.store(dx + o_td, b_dx.to(dx.dtype.element_ty), mask=m_td)
    tl.store(ddt + o_td, b_ddt.to(ddt.dtype.element_ty), mask=m_td)
    if HAS_Z:
        b_dz = b_dy * b_yp * b_sz * (1.0 + b_z * (1.0 - b_sz))
        tl.store(dz + o_td, b_dz.to(dz.dtype.element_ty), mask=m_td)


@triton.jit
def _add_channel_sums(dD, dbias, b_dD, b_dbias, o_d, m_d):
    """Add a program's dD and d dt_bias ``[BD]`` into the float32 ``[Dm]`` sums over the batch
    (relaxed atomics: only the final sums are read)."""
    tl.atomic_add(dD + o_d, b_dD, mask=m_d, sem="relaxed")
    tl.atomic_add(dbias + o_d, b_dbias, mask=m_d, sem="relaxed")


@triton.jit
def _channel_params(A, dt_bias, D, h, i_b, o_d, o_nd, m_d, m_nd, Dm, N,
                    NP: tl.constexpr, BD: tl.constexpr, HAS_BIAS: tl.constexpr,
                    HAS_D: tl.constexpr, HAS_H: tl.constexpr):
    """A ``[NP, BD]``, dt_bias ``[BD]``, D ``[BD]`` and the state ``h [B, Dm, N]`` of batch row
    i_b as an ``[NP, BD]`` tile, all float32; the absent ones are zeros."""
    b_A = tl.load(A + o_nd, mask=m_nd, other=0.0).to(tl.float32)
    b_bias, b_D = _bias_and_skip(dt_bias, D, o_d, m_d, BD, HAS_BIAS, HAS_D)
    b_h = tl.zeros([NP, BD], dtype=tl.float32)
    if HAS_H:
        b_h = tl.load(h + i_b * Dm * N + o_nd, mask=m_nd, other=0.0).to(tl.float32)
    return b_A, b_bias, b_D, b_h


@triton.jit
def _fwd_loads(x, dt, Bm, Cm, z, i_b, t0, o_d, o_n, m_d, m_n, T, Dm, N,
               BT: tl.constexpr, HAS_Z: tl.constexpr):
    """The inputs of steps t0..t0+BT−1, float32: x, dt ``[BT, BD]``, B, C ``[BT, NP]`` and z
    (x as a placeholder without z). Steps outside [0, T) are masked, no memory read (the
    backward's prefetch may point one chunk before the start)."""
    o_t = t0 + tl.arange(0, BT)
    m_t = (o_t < T) & (o_t >= 0)
    m_td = m_t[:, None] & m_d[None, :]
    m_tn = m_t[:, None] & m_n[None, :]
    b_x = _load_td(x, i_b, o_t, o_d, T, Dm, m_td)
    b_dt = _load_td(dt, i_b, o_t, o_d, T, Dm, m_td)
    b_B = _load_tn(Bm, i_b, o_t, o_n, T, N, m_tn)
    b_C = _load_tn(Cm, i_b, o_t, o_n, T, N, m_tn)
    b_z = b_x
    if HAS_Z:
        b_z = _load_td(z, i_b, o_t, o_d, T, Dm, m_td)
    return b_x, b_dt, b_B, b_C, b_z


@triton.jit
def _fwd_steps(y, b_h, b_x, b_dt, b_B, b_C, b_z, b_A2, b_bias, b_D, i_b, t0, o_d, m_d, T, Dm,
               lo, width, BT: tl.constexpr, HAS_D: tl.constexpr, HAS_Z: tl.constexpr):
    """Advance the state ``b_h [NP, BD]`` over steps t0..t0+BT−1 from their loaded inputs,
    writing y; returns the state."""
    o_t = t0 + tl.arange(0, BT)
    m_t = o_t < T
    m_td = m_t[:, None] & m_d[None, :]
    b_delta = _softplus(b_dt + b_bias[None, :])
    # steps past T are the identity map (a = 1, b = 0), so the last row is the carried state
    b_a = _transitions(b_delta, b_A2, m_t, lo, width)
    b_b = (b_delta * b_x)[:, None, :] * b_B[:, :, None]
    c_a, c_b = tl.associative_scan((b_a, b_b), 0, _combine)
    b_hs = c_a * b_h[None, :, :] + c_b
    _store_y_given_z(y, tl.sum(b_hs * b_C[:, :, None], axis=1), b_x, b_D, b_z, i_b, o_t, o_d,
                     m_td, T, Dm, HAS_D, HAS_Z)
    return _last_row(b_hs)


@triton.jit
def _fwd_chunk(x, dt, Bm, Cm, D, z, y, b_h, b_A2, b_bias, b_D, i_b, t0, o_d, o_n, m_d, m_n,
               T, Dm, N, lo, width,
               BT: tl.constexpr, HAS_D: tl.constexpr, HAS_Z: tl.constexpr):
    """Advance the state ``b_h [NP, BD]`` over steps t0..t0+BT−1, writing y; returns the state."""
    b_x, b_dt, b_B, b_C, b_z = _fwd_loads(x, dt, Bm, Cm, z, i_b, t0, o_d, o_n, m_d, m_n, T, Dm,
                                          N, BT, HAS_Z)
    return _fwd_steps(y, b_h, b_x, b_dt, b_B, b_C, b_z, b_A2, b_bias, b_D, i_b, t0, o_d, m_d,
                      T, Dm, lo, width, BT, HAS_D, HAS_Z)


@triton.jit
def ss_fwd_carry_kernel(x, dt, A, Bm, dt_bias, prod, hloc, T, Dm, N, lo, width, seg_per_part,
                        NP: tl.constexpr, BT: tl.constexpr, BD: tl.constexpr,
                        SEG: tl.constexpr, HAS_BIAS: tl.constexpr):
    """Grid (cdiv(Dm, BD), B, parts): the time split into parts of ``seg_per_part`` segments.

    A part maps the state entering it to the state leaving it by h ↦ prod·h + hloc (prod: the
    product of its transitions; hloc: its end state from a zero start), ``[B, parts, Dm, N]``
    float32 each, so that ``ss_fwd_kernel`` can run the parts at once, each from its own
    entering state."""
    i_b, o_d, o_n, m_d, m_nd, b_A2, b_bias, t_lo, t_hi, o_part = _part_program(
        A, dt_bias, T, Dm, N, seg_per_part, NP, BD, SEG, HAS_BIAS)
    m_n = o_n < N
    b_h = tl.zeros([NP, BD], dtype=tl.float32)
    b_P = tl.full([NP, BD], 1.0, tl.float32)
    for i_c in range(tl.cdiv(t_hi - t_lo, BT)):
        o_t = t_lo + i_c * BT + tl.arange(0, BT)
        m_t = o_t < T
        m_td = m_t[:, None] & m_d[None, :]
        b_x = _load_td(x, i_b, o_t, o_d, T, Dm, m_td)
        b_delta = _softplus(_load_td(dt, i_b, o_t, o_d, T, Dm, m_td) + b_bias[None, :])
        b_B = _load_tn(Bm, i_b, o_t, o_n, T, N, m_t[:, None] & m_n[None, :])
        # past T: a = 1, b = 0 (x is 0 there), the identity (as in _fwd_steps)
        c_a, c_b = tl.associative_scan((_transitions(b_delta, b_A2, m_t, lo, width),
                                        (b_delta * b_x)[:, None, :] * b_B[:, :, None]), 0,
                                       _combine)
        e_a = _last_row(c_a)  # the chunk's map
        b_h = e_a * b_h + _last_row(c_b)
        b_P = e_a * b_P
    tl.store(prod + o_part, b_P, mask=m_nd)
    tl.store(hloc + o_part, b_h, mask=m_nd)


@triton.jit
def ss_fwd_kernel(x, dt, A, Bm, Cm, D, z, dt_bias, h0, y, hT, hseg, prod, hloc,
                  T, Dm, N, lo, width, seg_per_part,
                  NP: tl.constexpr, BT: tl.constexpr, BD: tl.constexpr, SEG: tl.constexpr,
                  HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr,
                  HAS_H0: tl.constexpr, SAVE: tl.constexpr, PIPE: tl.constexpr = False,
                  SPLIT: tl.constexpr = False):
    """Grid (cdiv(Dm, BD), B, parts). hseg[b, s] = state before step s·SEG, layout [B, S, N, Dm].

    PIPE: one loop over the chunks with no branch in it (the state save is a masked store),
    whose body issues chunk c+1's loads before chunk c's scan (software pipelining by hand:
    Triton's pipeliner does not stage these loads, which feed no dot). Same results.

    SPLIT (parts > 1) splits the time into parts of ``seg_per_part`` segments, one program
    each: a part starts from h0 (or 0) taken through the earlier parts' maps from
    ``ss_fwd_carry_kernel`` (prod, hloc); the last part writes hT. Without it (one part, the
    grid's third axis 1) prod, hloc and seg_per_part are not read and the code is the unsplit
    kernel's."""
    i_d = tl.program_id(0)
    i_b = tl.program_id(1).to(tl.int64)
    o_d, o_n, m_d, m_nd, o_nd = _channel_block(i_d, Dm, N, NP, BD)
    m_n = o_n < N
    b_A, b_bias, b_D, b_h = _channel_params(A, dt_bias, D, h0, i_b, o_d, o_nd, m_d, m_nd, Dm, N,
                                            NP, BD, HAS_BIAS, HAS_D, HAS_H0)
    b_A2 = b_A * LOG2E
    n_seg = tl.cdiv(T, SEG)
    NC: tl.constexpr = SEG // BT
    seg_lo, seg_hi, c_hi = 0, n_seg, tl.cdiv(T, BT)
    if SPLIT:
        i_p = tl.program_id(2)
        for k in range(i_p):  # the earlier parts' maps, first part first
            o_k = (i_b * tl.num_programs(2) + k) * Dm * N + o_nd
            b_h = (tl.load(prod + o_k, mask=m_nd, other=0.0) * b_h
                   + tl.load(hloc + o_k, mask=m_nd, other=0.0))
        seg_lo = i_p * seg_per_part
        seg_hi = tl.minimum(seg_lo + seg_per_part, n_seg)
        c_hi = tl.minimum(seg_hi * NC, c_hi)
    if PIPE:
        # chunk c+1's loads are issued before chunk c computes (carried in registers)
        n_x, n_dt, n_B, n_C, n_z = _fwd_loads(x, dt, Bm, Cm, z, i_b, seg_lo * NC * BT, o_d, o_n,
                                              m_d, m_n, T, Dm, N, BT, HAS_Z)
        for i_c in range(seg_lo * NC, c_hi):
            b_x, b_dt, b_B, b_C, b_z = n_x, n_dt, n_B, n_C, n_z
            n_x, n_dt, n_B, n_C, n_z = _fwd_loads(x, dt, Bm, Cm, z, i_b, (i_c + 1) * BT, o_d,
                                                  o_n, m_d, m_n, T, Dm, N, BT, HAS_Z)
            if SAVE:  # a constexpr branch: none at run time
                p_s = (hseg + (i_b * n_seg + i_c // NC) * N * Dm + o_n[:, None] * Dm
                       + o_d[None, :])
                tl.store(p_s, b_h, mask=m_nd & (i_c % NC == 0))
            b_h = _fwd_steps(y, b_h, b_x, b_dt, b_B, b_C, b_z, b_A2, b_bias, b_D, i_b, i_c * BT,
                             o_d, m_d, T, Dm, lo, width, BT, HAS_D, HAS_Z)
    else:
        for i_s in range(seg_lo, seg_hi):
            if SAVE:
                p_s = hseg + (i_b * n_seg + i_s) * N * Dm + o_n[:, None] * Dm + o_d[None, :]
                tl.store(p_s, b_h, mask=m_nd)
            for i_c in range(NC):
                t0 = i_s * SEG + i_c * BT
                if t0 < T:
                    b_h = _fwd_chunk(x, dt, Bm, Cm, D, z, y, b_h, b_A2, b_bias, b_D, i_b, t0,
                                     o_d, o_n, m_d, m_n, T, Dm, N, lo, width, BT, HAS_D, HAS_Z)
    if SPLIT:
        if tl.program_id(2) == tl.num_programs(2) - 1:
            tl.store(hT + i_b * Dm * N + o_nd, b_h, mask=m_nd)
    else:
        tl.store(hT + i_b * Dm * N + o_nd, b_h, mask=m_nd)
