"""The delta rule's local backward pass split in two kernels (TRITON.md, "Split backward").

An alternative to ``triton_bwd.chunk_grad_kernel`` with the same results up to the order of
sums. That kernel holds five [BT, BK] float32 tiles per chunk (160 KB at BT = 64, BK = 128) and
spills at K = 128; here the key dim is cut in tiles of BKT columns:

- ``chunk_dqk_kernel`` (grid ``(B·H·N, BK / BKT)``): everything that is a sum over V and is
  needed per key column, ``dQS_k = dO S_kᵀ``, ``Y_k = dWnew S_kᵀ``, ``X2_k = Wnew dS_kᵀ``, and
  the [BT, BT] ``dP = dO Wnewᵀ``; it writes the final ``dq`` and partials of ``dk`` and of the
  per-token sums (d(βγ), dγ, the Kdec row term), reduced over K-tiles by the second kernel.
- ``chunk_wy_bwd_kernel`` (grid ``(B·H·N,)``): the adjoint of the WY factors, which needs the
  full key dim: ``dv``, ``dA = dWnew (diag(β) (V − diag(γ) K S))ᵀ`` over V, then
  ``dL = strict_lower(−Aᵀ dA Aᵀ)``, ``dβ``, the rest of ``dk`` and the gate gradient.

Scratch (float32, chunk-padded time): ``dk_part [B·H, N·BT, BK]``, the per-token partials
``[B·H·N, NK, BT]`` and, with a gate, ``dP [B·H·N, BT, BT]`` (written by the first K-tile; the
second kernel forms ``dP ⊙ Q Kᵀ`` over the full key dim, which needs no reduction).
"""

from __future__ import annotations

import triton
import triton.language as tl

from statetrack.ops.delta_rule.triton_bwd import gate_grad, v_tile_sums
from statetrack.ops.delta_rule.triton_fwd import chunk_decays


@triton.jit
def _dqk_values(do, h, dh, Wnew, dWnew, o_in, o_c, o_h, o_t, o_k, m_t, H: tl.constexpr,
                V: tl.constexpr, BT: tl.constexpr, BKT: tl.constexpr, BV: tl.constexpr,
                PREC: tl.constexpr):
    """V-tile loop of ``chunk_dqk_kernel``: ``dQS_k = dO S_kᵀ``, ``Y_k = dWnew S_kᵀ``,
    ``X2_k = Wnew dS_kᵀ`` for the K-tile's rows ``o_k`` of the states, ``dP = dO Wnewᵀ``
    and the K-tile's part of ``⟨dS_end, S⟩``."""
    b_Y = tl.zeros([BT, BKT], dtype=tl.float32)
    b_X2 = tl.zeros([BT, BKT], dtype=tl.float32)
    b_dQS = tl.zeros([BT, BKT], dtype=tl.float32)
    b_dP = tl.zeros([BT, BT], dtype=tl.float32)  # the same in every K-tile program
    b_dglast = tl.zeros([BT], dtype=tl.float32)  # this K-tile's part of ⟨dS_end, S⟩
    for i_v in range(0, tl.cdiv(V, BV)):
        o_v = i_v * BV + tl.arange(0, BV)
        b_dQS, b_Y, b_X2, b_dP, b_dglast, _ = v_tile_sums(
            do, h, dh, Wnew, dWnew, o_in, o_c, o_h, o_t, o_k, m_t, o_v, o_v < V,
            b_dQS, b_Y, b_X2, b_dP, b_dglast, H, V, PREC)
    return b_dQS, b_Y, b_X2, b_dP, b_dglast


@triton.jit(do_not_specialize=["T"])
def chunk_dqk_kernel(
    q, k, beta, gate, do, dq,
    A, h, dh, Wnew, dWnew,
    dk_part, dbg_part, dgam_part, rx2k_part, dP_buf,
    T, H: tl.constexpr, K: tl.constexpr, V: tl.constexpr,
    BT: tl.constexpr, BK: tl.constexpr, BKT: tl.constexpr, BV: tl.constexpr,
    USE_GATE: tl.constexpr, PREC: tl.constexpr,
):
    """``dq`` and the K-tile's share of ``dk``, d(βγ), dγ and ``rowsum(X2 ⊙ K)``."""
    NT = tl.cdiv(T, BT)
    NK: tl.constexpr = BK // BKT
    i_c = tl.program_id(0).to(tl.int64)  # chunk index over B·H·N (flat: may pass 65535)
    i_bh, i_n = i_c // NT, i_c % NT
    i_k = tl.program_id(1)  # int32, so the tile offsets stay int32 (int64 doubles registers)
    i_b, i_h = i_bh // H, i_bh % H
    o_t = tl.arange(0, BT)
    o_k = i_k * BKT + tl.arange(0, BKT)
    m_t = (i_n * BT + o_t) < T
    o_in = (i_b * T + i_n * BT) * H + i_h
    o_c = i_bh * NT * BT + i_n * BT
    o_h = (i_bh * NT + i_n) * BK * V

    b_dQS, b_Y, b_X2, b_dP, b_dglast = _dqk_values(do, h, dh, Wnew, dWnew, o_in, o_c, o_h, o_t,
                                                   o_k, m_t, H, V, BT, BKT, BV, PREC)

    o_tk = o_t[:, None] * (H * K) + o_k[None, :]
    m_tk = m_t[:, None] & (o_k < K)[None, :]
    b_q = tl.load(q + o_in * K + o_tk, mask=m_tk, other=0.0).to(tl.float32)
    b_k = tl.load(k + o_in * K + o_tk, mask=m_tk, other=0.0).to(tl.float32)
    b_beta = tl.load(beta + o_in + o_t * H, mask=m_t, other=0.0).to(tl.float32)
    b_A = tl.load(A + o_c * BT + o_t[:, None] * BT + o_t[None, :])
    b_Gam, b_gam = chunk_decays(gate + o_in, o_t, m_t, H, USE_GATE, BT)
    b_Glast = tl.sum(tl.where(o_t[:, None] == BT - 1, b_Gam, 0.0), 0)
    # Wk = A diag(βγ) K with dWk = −Y  ⇒  Aᵀ dWk = −X1 (column-local: X1_k = Aᵀ Y_k)
    b_X1 = tl.dot(tl.trans(b_A), b_Y, input_precision=PREC)
    o_part = (i_c * NK + i_k) * BT + o_t
    tl.store(dbg_part + o_part, -tl.sum(b_X1 * b_k, 1))
    b_dPG = b_dP * b_Gam
    b_dq = b_gam[:, None] * b_dQS + tl.dot(b_dPG, b_k, input_precision=PREC)
    tl.store(dq + o_in * K + o_tk, b_dq.to(dq.dtype.element_ty), mask=m_tk)
    b_dk = b_Glast[:, None] * b_X2 - (b_beta * b_gam)[:, None] * b_X1
    b_dk += tl.dot(tl.trans(b_dPG), b_q, input_precision=PREC)
    # scratch rows are chunk-padded and its columns span BK: every element is written
    tl.store(dk_part + o_c * BK + o_t[:, None] * BK + o_k[None, :], b_dk)
    if USE_GATE:
        b_dgam = tl.sum(b_dQS * b_q, 1) + tl.where(o_t == BT - 1, b_dglast, 0.0)
        tl.store(dgam_part + o_part, b_dgam)
        tl.store(rx2k_part + o_part, tl.sum(b_X2 * b_k, 1))
        if i_k == 0:
            tl.store(dP_buf + i_c * BT * BT + o_t[:, None] * BT + o_t[None, :], b_dP)


@triton.jit
def _sum_parts(p_part, i_c, o_t, NK: tl.constexpr, BT: tl.constexpr):
    """Σ over the NK K-tile partials ``[B·H·N, NK, BT]`` of chunk ``i_c``."""
    b_s = tl.zeros([BT], dtype=tl.float32)
    for i_k in tl.static_range(NK):
        b_s += tl.load(p_part + (i_c * NK + i_k) * BT + o_t)
    return b_s


@triton.jit
def _wy_values(v, dv, h, dWnew, b_A, b_kd, b_beta, b_gam, o_in, o_c, o_h, o_t, m_t,
               H: tl.constexpr, V: tl.constexpr, BT: tl.constexpr, BK: tl.constexpr,
               BV: tl.constexpr, PREC: tl.constexpr):
    """V-tile loop of ``chunk_wy_bwd_kernel``: stores ``dv``, returns ``dA`` and the
    ``rowsum((Aᵀ dU) ⊙ V)`` part of ``dβ``."""
    o_k = tl.arange(0, BK)
    b_dA = tl.zeros([BT, BT], dtype=tl.float32)
    b_dbeta = tl.zeros([BT], dtype=tl.float32)
    for i_v in range(0, tl.cdiv(V, BV)):
        o_v = i_v * BV + tl.arange(0, BV)
        m_v = o_v < V
        m_tv = m_t[:, None] & m_v[None, :]
        o_tv = o_t[:, None] * (H * V) + o_v[None, :]
        b_v = tl.load(v + o_in * V + o_tv, mask=m_tv, other=0.0).to(tl.float32)
        b_S = tl.load(h + o_h + o_k[:, None] * V + o_v[None, :], mask=m_v[None, :], other=0.0)
        b_dw = tl.load(dWnew + o_c * V + o_t[:, None] * V + o_v[None, :], mask=m_v[None, :],
                       other=0.0).to(tl.float32)
        # dA = dU (diag(β)V)ᵀ + dWk (diag(βγ)K)ᵀ with dU = dWnew, dWk = −dWnew Sᵀ: summed over
        # V as one product with R = diag(β) (V − diag(γ) K S) (= (I + L) Wnew), so the key dim
        # is contracted here and Y = dWnew Sᵀ is never formed. K S is a DT dot of stored
        # operands; R stays float32 (rounding it to 16 bits would add a rounding the fused
        # kernel does not have), so dWnew Rᵀ runs float32/tf32 like the products with A.
        b_KS = tl.dot(b_kd, b_S, input_precision=PREC)
        b_R = b_beta[:, None] * (b_v - b_gam[:, None] * b_KS)
        b_dA += tl.dot(b_dw, tl.trans(b_R), input_precision=PREC)
        b_AtdU = tl.dot(tl.trans(b_A), b_dw, input_precision=PREC)
        tl.store(dv + o_in * V + o_tv, (b_beta[:, None] * b_AtdU).to(dv.dtype.element_ty),
                 mask=m_tv)
        b_dbeta += tl.sum(b_AtdU * b_v, 1)
    return b_dA, b_dbeta


@triton.jit(do_not_specialize=["T"])
def chunk_wy_bwd_kernel(
    q, k, v, beta, gate,
    dk, dv, dbeta, dgate,
    A, gam, h, dWnew, dk_part, dbg_part, dgam_part, rx2k_part, dP_buf,
    T, H: tl.constexpr, K: tl.constexpr, V: tl.constexpr,
    BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, NK: tl.constexpr,
    USE_GATE: tl.constexpr, PREC: tl.constexpr,
):
    """``dv``, ``dβ``, ``dk`` (completing ``dk_part``) and the gate gradient of one chunk."""
    NT = tl.cdiv(T, BT)
    i_c = tl.program_id(0).to(tl.int64)
    i_bh, i_n = i_c // NT, i_c % NT
    i_b, i_h = i_bh // H, i_bh % H
    o_t = tl.arange(0, BT)
    o_k = tl.arange(0, BK)
    m_t = (i_n * BT + o_t) < T
    o_in = (i_b * T + i_n * BT) * H + i_h
    o_c = i_bh * NT * BT + i_n * BT
    o_h = (i_bh * NT + i_n) * BK * V
    o_tk = o_t[:, None] * (H * K) + o_k[None, :]
    m_tk = m_t[:, None] & (o_k < K)[None, :]
    b_beta = tl.load(beta + o_in + o_t * H, mask=m_t, other=0.0).to(tl.float32)
    b_A = tl.load(A + o_c * BT + o_t[:, None] * BT + o_t[None, :])
    b_gam = tl.load(gam + o_c + o_t)  # the forward's γ; Γ is formed after the loop (registers)
    DT: tl.constexpr = h.dtype.element_ty
    # Q, K as dot operands in DT (exact: inputs of that dtype), as in the forward's Q Kᵀ, K Kᵀ
    b_kd = tl.load(k + o_in * K + o_tk, mask=m_tk, other=0.0).to(DT)

    b_dA, b_dbeta = _wy_values(v, dv, h, dWnew, b_A, b_kd, b_beta, b_gam, o_in, o_c, o_h, o_t,
                               m_t, H, V, BT, BK, BV, PREC)

    b_dbg = _sum_parts(dbg_part, i_c, o_t, NK, BT)  # d(βγ)
    b_Gam, _ = chunk_decays(gate + o_in, o_t, m_t, H, USE_GATE, BT)
    # A = (I + L)⁻¹  ⇒  dL = strict_lower(−Aᵀ dA Aᵀ)
    b_dM = tl.dot(b_dA, tl.trans(b_A), input_precision=PREC)
    b_dM = -tl.dot(tl.trans(b_A), b_dM, input_precision=PREC)
    b_dL = tl.where(o_t[:, None] > o_t[None, :], b_dM, 0.0)
    b_KK = tl.dot(b_kd, tl.trans(b_kd), input_precision=PREC)
    b_dbeta += tl.sum(b_dL * b_KK * b_Gam, 1) + b_gam * b_dbg
    tl.store(dbeta + o_in + o_t * H, b_dbeta.to(dbeta.dtype.element_ty), mask=m_t)
    b_G = b_dL * b_Gam * b_beta[:, None]
    b_G += tl.trans(b_G)  # G K + Gᵀ K as one product
    if USE_GATE:
        b_dgam = _sum_parts(dgam_part, i_c, o_t, NK, BT) + b_beta * b_dbg
        b_dGam = b_dL * b_beta[:, None] * b_KK
        b_qd = tl.load(q + o_in * K + o_tk, mask=m_tk, other=0.0).to(DT)
        b_dP = tl.load(dP_buf + i_c * BT * BT + o_t[:, None] * BT + o_t[None, :])
        b_dGam += b_dP * tl.dot(b_qd, tl.trans(b_kd), input_precision=PREC)
        b_rx2k = _sum_parts(rx2k_part, i_c, o_t, NK, BT)  # rowsum(X2 ⊙ K), through Kdec
        b_dGam += tl.where(o_t[:, None] == BT - 1, b_rx2k[None, :], 0.0)
        b_dGam = tl.where(o_t[:, None] >= o_t[None, :], b_dGam, 0.0)
        b_dg = gate_grad(b_dGam, b_dgam, b_Gam, gate + o_in, o_t, m_t, H, BT, PREC)
        tl.store(dgate + o_in + o_t * H, b_dg.to(dgate.dtype.element_ty), mask=m_t)
    # the [BT, BK] float32 tiles last, once dL, KK and the gate's tiles are dead (registers)
    b_k = tl.load(k + o_in * K + o_tk, mask=m_tk, other=0.0).to(tl.float32)
    b_dk = tl.load(dk_part + o_c * BK + o_t[:, None] * BK + o_k[None, :])
    b_dk += tl.dot(b_G, b_k, input_precision=PREC)
    tl.store(dk + o_in * K + o_tk, b_dk.to(dk.dtype.element_ty), mask=m_tk)
