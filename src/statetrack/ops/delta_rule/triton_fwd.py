"""Forward Triton kernels of the chunked delta rule (see TRITON.md for the derivation).

Three launches:
- ``chunk_prep_kernel`` (parallel over chunks): the signed decays ``Γ``, ``γ``, the UT inverse
  ``A = (I + L)⁻¹`` by forward substitution in registers, ``Wk = A diag(βγ) K``,
  ``U = A diag(β) V``, ``Kdec = diag(Γ_{C−1,·}) K`` and ``P = (Q Kᵀ) ⊙ Γ``.
- ``chunk_state_fwd_kernel`` (sequential over chunks, parallel over batch·head and V-tiles):
  keeps ``S [BK, BV]`` in registers, writes each chunk's entering state and the new values
  ``Wnew = U − Wk S``.
- ``chunk_output_kernel`` (parallel over chunks): the outputs ``o = diag(γ) Q S + P Wnew``.

Intermediates are in ``[B·H, N·BT, ·]`` (chunk-padded time) so that only the inputs need
strided, masked loads. ``A``, ``γ`` and the carried state are float32; ``P``, ``Wk``, ``U``,
``Kdec``, ``h`` and ``Wnew`` are stored in the operand dtype ``DT`` read off their pointers: the
input dtype for 16-bit inputs (16-bit tensor-core dots, fp32 accumulation), float32 otherwise
(TRITON.md, "16-bit inputs").
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def chunk_decays(p_gate, o_t, m_t, stride_t, USE_GATE: tl.constexpr, BT: tl.constexpr):
    """``Γ [BT, BT]`` (Γ_ts = ∏_{s<r≤t} g_r, zero above the diagonal) and ``γ [BT]``.

    Products are taken directly (a cumulative product down the columns of
    ``M_rs = g_r if r > s else 1``): no log, so a negative gate keeps its sign and an exact
    zero stays zero. Padded tokens have g = 1.
    """
    if USE_GATE:
        b_g = tl.load(p_gate + o_t * stride_t, mask=m_t, other=1.0).to(tl.float32)
    else:
        b_g = tl.full([BT], 1.0, dtype=tl.float32)
    b_M = tl.where(o_t[:, None] > o_t[None, :], b_g[:, None], 1.0)
    b_Gam = tl.where(o_t[:, None] >= o_t[None, :], tl.cumprod(b_M, axis=0), 0.0)
    b_gam = tl.cumprod(b_g, axis=0)
    return b_Gam, b_gam


@triton.jit
def ut_inverse(b_L, o_t, BT: tl.constexpr):
    """``(I + L)⁻¹`` for strictly lower ``L [BT, BT]`` by forward substitution, row by row.

    Row i of ``N = (I + L)⁻¹ − I`` is ``−L_i − Σ_{j<i} L_ij N_j``; rows j < i are final when
    row i is formed. Substitution (not a Neumann/doubling series) keeps the solve stable at
    β → 2, where powers of L grow but the inverse stays bounded (a product of reflections).
    """
    b_A = -b_L
    for i in range(1, BT):
        m_i = o_t == i
        b_a = tl.sum(tl.where(m_i[:, None], b_A, 0.0), 0)
        b_a = b_a + tl.sum(b_a[:, None] * b_A, 0) * (o_t < i)
        b_A = tl.where(m_i[:, None], b_a[None, :], b_A)
    return b_A + (o_t[:, None] == o_t[None, :]).to(tl.float32)


@triton.jit
def _block(p, i: tl.constexpr, j: tl.constexpr, BT: tl.constexpr):
    """The 16×16 block (i, j) of a row-major [BT, BT] matrix in global memory."""
    o = tl.arange(0, 16)
    return tl.load(p + (i * 16 + o[:, None]) * BT + j * 16 + o[None, :])


@triton.jit
def _store_block(p, b, i: tl.constexpr, j: tl.constexpr, BT: tl.constexpr):
    o = tl.arange(0, 16)
    tl.store(p + (i * 16 + o[:, None]) * BT + j * 16 + o[None, :], b)


@triton.jit
def _mm(a, b):
    # the small merge products run in full float32: A feeds every later product
    return tl.dot(a, b, input_precision="ieee")


@triton.jit
def ut_inverse_64(b_L, p_A, o_t, BT: tl.constexpr):
    """``(I + L)⁻¹`` for a [64, 64] strictly lower L, written to ``p_A`` (row-major).

    The four 16×16 diagonal blocks are inverted together by substitution on one [4, 16, 16]
    tile (15 steps of two reductions each), then the off-diagonal blocks follow from
    ``(I + L) A = I``: ``A_ij = −A_ii Σ_{j≤m<i} L_im A_mj``. L goes through ``p_A`` as scratch
    to cut it into blocks (registers cannot be sliced); barriers order the program's own
    stores and loads.
    """
    o = tl.arange(0, 16)
    o_b = tl.arange(0, 4)
    # [4, 16, 16] offsets of the diagonal blocks: (16 b + r) BT + 16 b + c
    o_diag = ((o_b[:, None, None] * 16 + o[None, :, None]) * BT
              + o_b[:, None, None] * 16 + o[None, None, :])
    tl.store(p_A + o_t[:, None] * BT + o_t[None, :], b_L)
    tl.debug_barrier()
    L10 = _block(p_A, 1, 0, BT)
    L20 = _block(p_A, 2, 0, BT)
    L21 = _block(p_A, 2, 1, BT)
    L30 = _block(p_A, 3, 0, BT)
    L31 = _block(p_A, 3, 1, BT)
    L32 = _block(p_A, 3, 2, BT)
    N = -tl.load(p_A + o_diag)
    # row i of N = A_bb − I is −L_i − Σ_{j<i} L_ij N_j, and rows j < i are final by then
    for i in range(1, 16):
        m_i = (o == i)[None, :, None]
        a = tl.sum(tl.where(m_i, N, 0.0), 1)
        a = a + tl.sum(a[:, :, None] * N, 1)
        N = tl.where(m_i, a[:, None, :], N)
    eye = (o[None, :, None] == o[None, None, :]).to(tl.float32)
    tl.debug_barrier()  # every L block is read before an A block overwrites it
    tl.store(p_A + o_diag, N + eye)
    tl.debug_barrier()
    A00 = _block(p_A, 0, 0, BT)
    A11 = _block(p_A, 1, 1, BT)
    A22 = _block(p_A, 2, 2, BT)
    A33 = _block(p_A, 3, 3, BT)
    A10 = -_mm(A11, _mm(L10, A00))
    A21 = -_mm(A22, _mm(L21, A11))
    A32 = -_mm(A33, _mm(L32, A22))
    A20 = -_mm(A22, _mm(L20, A00) + _mm(L21, A10))
    A31 = -_mm(A33, _mm(L31, A11) + _mm(L32, A21))
    A30 = -_mm(A33, _mm(L30, A00) + _mm(L31, A10) + _mm(L32, A20))
    _store_block(p_A, A10, 1, 0, BT)
    _store_block(p_A, A21, 2, 1, BT)
    _store_block(p_A, A32, 3, 2, BT)
    _store_block(p_A, A20, 2, 0, BT)
    _store_block(p_A, A31, 3, 1, BT)
    _store_block(p_A, A30, 3, 0, BT)
    tl.debug_barrier()
    return tl.load(p_A + o_t[:, None] * BT + o_t[None, :])


@triton.jit(do_not_specialize=["T"])
def chunk_prep_kernel(
    q, k, v, beta, gate,
    A, P, Wk, U, Kdec, gam,
    T, H: tl.constexpr, K: tl.constexpr, V: tl.constexpr,
    BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
    USE_GATE: tl.constexpr, PREC: tl.constexpr,
):
    # one flat grid axis (B·H·N can pass the 65535 limit of axes 1 and 2)
    NT = tl.cdiv(T, BT)
    i_bh, i_n = tl.program_id(0).to(tl.int64) // NT, tl.program_id(0).to(tl.int64) % NT
    i_b, i_h = i_bh // H, i_bh % H
    o_t = tl.arange(0, BT)
    o_k = tl.arange(0, BK)
    m_t = (i_n * BT + o_t) < T
    m_k = o_k < K
    m_tk = m_t[:, None] & m_k[None, :]
    # inputs [B, T, H, D]: token stride H·D
    o_in = (i_b * T + i_n * BT) * H + i_h
    # scalar int64 bases + int32 tile offsets: int64 tile offsets would double the registers
    o_tk = o_t[:, None] * (H * K) + o_k[None, :]
    # q, k as dot operands in DT: exact for 16-bit inputs (no rounding), float32 otherwise
    DT: tl.constexpr = P.dtype.element_ty
    b_q = tl.load(q + o_in * K + o_tk, mask=m_tk, other=0.0).to(DT)
    b_k = tl.load(k + o_in * K + o_tk, mask=m_tk, other=0.0).to(DT)
    b_beta = tl.load(beta + o_in + o_t * H, mask=m_t, other=0.0).to(tl.float32)
    b_Gam, b_gam = chunk_decays(gate + o_in, o_t, m_t, H, USE_GATE, BT)

    # intermediates [B·H, N·BT, D]; P, Kdec and γ first, so q and Γ are dead during the solve
    o_c = i_bh * NT * BT + i_n * BT
    o_tt = o_t[:, None] * BT + o_t[None, :]
    o_ck = o_t[:, None] * BK + o_k[None, :]
    b_P = tl.dot(b_q, tl.trans(b_k), input_precision=PREC) * b_Gam
    tl.store(P + o_c * BT + o_tt, b_P.to(DT))
    b_Glast = tl.sum(tl.where(o_t[:, None] == BT - 1, b_Gam, 0.0), 0)
    tl.store(Kdec + o_c * BK + o_ck, (b_k.to(tl.float32) * b_Glast[:, None]).to(DT))
    tl.store(gam + o_c + o_t, b_gam)
    b_KK = tl.dot(b_k, tl.trans(b_k), input_precision=PREC)
    b_L = tl.where(o_t[:, None] > o_t[None, :], b_beta[:, None] * b_KK * b_Gam, 0.0)
    if BT == 64:
        b_A = ut_inverse_64(b_L, A + o_c * BT, o_t, BT)
    else:
        b_A = ut_inverse(b_L, o_t, BT)
        tl.store(A + o_c * BT + o_tt, b_A)
    # A stays float32 and so do these two products (tf32 for 16-bit inputs): rounding A to 16
    # bits costs more accuracy (TRITON.md) than the products cost time in this parallel kernel
    b_wk = tl.dot(b_A, b_k.to(tl.float32) * (b_beta * b_gam)[:, None], input_precision=PREC)
    tl.store(Wk + o_c * BK + o_ck, b_wk.to(DT))
    for i_v in range(0, tl.cdiv(V, BV)):
        o_v = i_v * BV + tl.arange(0, BV)
        m_v = o_v < V
        b_v = tl.load(v + o_in * V + o_t[:, None] * (H * V) + o_v[None, :],
                      mask=m_t[:, None] & m_v[None, :], other=0.0).to(tl.float32)
        b_u = tl.dot(b_A, b_v * b_beta[:, None], input_precision=PREC)
        tl.store(U + o_c * V + o_t[:, None] * V + o_v[None, :], b_u.to(DT), mask=m_v[None, :])


@triton.jit(do_not_specialize=["T"])
def chunk_state_fwd_kernel(
    h0, hT, Wk, U, Kdec, gam, h, Wnew,
    T, H: tl.constexpr, K: tl.constexpr, V: tl.constexpr,
    BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
    USE_H0: tl.constexpr, PREC: tl.constexpr,
):
    """The only sequential part: S ← γ_{C−1} S + Kdecᵀ (U − Wk S), chunk after chunk.

    Outputs are left to ``chunk_output_kernel`` so that each step here is two products. S is
    carried in float32; it enters the product with Wk as stored in ``h`` (16-bit for 16-bit
    inputs), and the update uses ``Wnew`` as stored, so the backward sees the same values.
    """
    i_bh, i_v = tl.program_id(0).to(tl.int64), tl.program_id(1).to(tl.int64)
    NT = tl.cdiv(T, BT)
    o_t = tl.arange(0, BT)
    o_k = tl.arange(0, BK)
    o_v = i_v * BV + tl.arange(0, BV)
    m_v = o_v < V
    o_kv = o_k[:, None] * V + o_v[None, :]
    m_kv = (o_k < K)[:, None] & m_v[None, :]
    o_ck = o_t[:, None] * BK + o_k[None, :]
    o_cv = o_t[:, None] * V + o_v[None, :]
    if USE_H0:
        b_S = tl.load(h0 + i_bh * K * V + o_kv, mask=m_kv, other=0.0).to(tl.float32)
    else:
        b_S = tl.zeros([BK, BV], dtype=tl.float32)
    DT: tl.constexpr = h.dtype.element_ty
    for i_n in range(0, NT):
        o_c = i_bh * NT * BT + i_n * BT
        b_h = b_S.to(DT)
        tl.store(h + (i_bh * NT + i_n) * BK * V + o_kv, b_h, mask=m_v[None, :])
        b_wk = tl.load(Wk + o_c * BK + o_ck)
        b_u = tl.load(U + o_c * V + o_cv, mask=m_v[None, :], other=0.0).to(tl.float32)
        b_wnew = (b_u - tl.dot(b_wk, b_h, input_precision=PREC)).to(DT)
        tl.store(Wnew + o_c * V + o_cv, b_wnew, mask=m_v[None, :])
        # S_end = γ_C S + Kdecᵀ Wnew  (γ_C may be negative or 0: applied as is)
        b_kdec = tl.load(Kdec + o_c * BK + o_ck)
        b_glast = tl.load(gam + o_c + BT - 1)
        b_S = b_glast * b_S + tl.dot(tl.trans(b_kdec), b_wnew, input_precision=PREC)
    tl.store(hT + i_bh * K * V + o_kv, b_S, mask=m_kv)


@triton.jit(do_not_specialize=["T"])
def chunk_output_kernel(
    q, o, P, gam, h, Wnew,
    T, H: tl.constexpr, K: tl.constexpr, V: tl.constexpr,
    BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, PREC: tl.constexpr,
):
    """``O = diag(γ) Q S + P Wnew`` for one chunk and V-tile, S the state entering the chunk."""
    NT = tl.cdiv(T, BT)
    i_bh, i_n = tl.program_id(0).to(tl.int64) // NT, tl.program_id(0).to(tl.int64) % NT
    i_v = tl.program_id(1).to(tl.int64)
    i_b, i_h = i_bh // H, i_bh % H
    o_t = tl.arange(0, BT)
    o_k = tl.arange(0, BK)
    o_v = i_v * BV + tl.arange(0, BV)
    m_t = (i_n * BT + o_t) < T
    m_v = o_v < V
    o_c = i_bh * NT * BT + i_n * BT
    o_in = (i_b * T + i_n * BT) * H + i_h
    b_q = tl.load(q + o_in * K + o_t[:, None] * (H * K) + o_k[None, :],
                  mask=m_t[:, None] & (o_k < K)[None, :], other=0.0).to(h.dtype.element_ty)
    b_S = tl.load(h + (i_bh * NT + i_n) * BK * V + o_k[:, None] * V + o_v[None, :],
                  mask=m_v[None, :], other=0.0)
    b_P = tl.load(P + o_c * BT + o_t[:, None] * BT + o_t[None, :])
    b_w = tl.load(Wnew + o_c * V + o_t[:, None] * V + o_v[None, :], mask=m_v[None, :], other=0.0)
    b_gam = tl.load(gam + o_c + o_t)
    b_o = b_gam[:, None] * tl.dot(b_q, b_S, input_precision=PREC)
    b_o += tl.dot(b_P, b_w, input_precision=PREC)
    tl.store(o + o_in * V + o_t[:, None] * (H * V) + o_v[None, :], b_o.to(o.dtype.element_ty),
             mask=m_t[:, None] & m_v[None, :])
