"""Backward Triton kernels of the chunked delta rule (see TRITON.md for the derivation).

Two launches, reusing the forward's per-chunk intermediates (A, P, Wk, Kdec, γ, the entering
states h and the new values Wnew):
- ``chunk_state_bwd_kernel`` (sequential over chunks in reverse, parallel over batch·head and
  V-tiles): carries ``dS`` (the adjoint of the state leaving a chunk) in float32 registers,
  writes it per chunk, and the adjoint of the new values ``dWnew = Pᵀ dO + Kdec dS``.
- ``chunk_grad_kernel`` (parallel over chunks): all local gradients (q, k, v, β, the decays,
  hence the gate) from those, looping over V-tiles.

``dh`` and ``dWnew`` are stored in the dtype of the forward's ``h`` (16-bit for 16-bit inputs,
float32 otherwise) and, like ``dO`` and the stored forward intermediates, enter the products
over V as 16-bit operands; the [BT, BT]/[BT, BK] products with A stay float32 (TRITON.md).
"""

from __future__ import annotations

import triton
import triton.language as tl

from statetrack.ops.delta_rule.triton_fwd import chunk_decays


@triton.jit(do_not_specialize=["T"])
def chunk_state_bwd_kernel(
    q, do, dhT, dh0,
    P, Wk, Kdec, gam, dh, dWnew,
    T, H: tl.constexpr, K: tl.constexpr, V: tl.constexpr,
    BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
    USE_DHT: tl.constexpr, PREC: tl.constexpr,
):
    i_bh, i_v = tl.program_id(0).to(tl.int64), tl.program_id(1).to(tl.int64)
    i_b, i_h = i_bh // H, i_bh % H
    NT = tl.cdiv(T, BT)
    o_t = tl.arange(0, BT)
    o_k = tl.arange(0, BK)
    o_v = i_v * BV + tl.arange(0, BV)
    m_k = o_k < K
    m_v = o_v < V
    o_kv = o_k[:, None] * V + o_v[None, :]
    m_kv = m_k[:, None] & m_v[None, :]
    o_ck = o_t[:, None] * BK + o_k[None, :]
    o_tk = o_t[:, None] * (H * K) + o_k[None, :]
    o_tv = o_t[:, None] * (H * V) + o_v[None, :]
    if USE_DHT:
        b_dS = tl.load(dhT + i_bh * K * V + o_kv, mask=m_kv, other=0.0).to(tl.float32)
    else:
        b_dS = tl.zeros([BK, BV], dtype=tl.float32)
    DT: tl.constexpr = dh.dtype.element_ty
    for i_n in range(NT - 1, -1, -1):
        o_c = i_bh * NT * BT + i_n * BT
        b_dh = b_dS.to(DT)
        tl.store(dh + (i_bh * NT + i_n) * BK * V + o_kv, b_dh, mask=m_v[None, :])
        m_t = (i_n * BT + o_t) < T
        o_in = (i_b * T + i_n * BT) * H + i_h
        b_do = tl.load(do + o_in * V + o_tv, mask=m_t[:, None] & m_v[None, :],
                       other=0.0).to(DT)
        b_q = tl.load(q + o_in * K + o_tk, mask=m_t[:, None] & m_k[None, :],
                      other=0.0).to(tl.float32)
        b_kdec = tl.load(Kdec + o_c * BK + o_ck)
        b_wk = tl.load(Wk + o_c * BK + o_ck)
        b_gam = tl.load(gam + o_c + o_t)
        b_P = tl.load(P + o_c * BT + o_t[:, None] * BT + o_t[None, :])
        # o = diag(γ) Q S + P Wnew,  S_end = γ_C S + Kdecᵀ Wnew,  Wnew = U − Wk S
        b_dw = tl.dot(tl.trans(b_P), b_do, input_precision=PREC)
        b_dw += tl.dot(b_kdec, b_dh, input_precision=PREC)
        b_dw = b_dw.to(DT)  # stored, and used below, rounded alike
        tl.store(dWnew + o_c * V + o_t[:, None] * V + o_v[None, :], b_dw, mask=m_v[None, :])
        b_glast = tl.sum(tl.where(o_t == BT - 1, b_gam, 0.0), 0)
        b_dS = b_glast * b_dS + tl.dot(tl.trans((b_q * b_gam[:, None]).to(DT)), b_do,
                                       input_precision=PREC)
        b_dS -= tl.dot(tl.trans(b_wk), b_dw, input_precision=PREC)
    tl.store(dh0 + i_bh * K * V + o_kv, b_dS, mask=m_kv)


@triton.jit
def gate_grad(b_dGam, b_dgam, b_Gam, p_gate, o_t, m_t, stride_t, BT: tl.constexpr,
              PREC: tl.constexpr):
    """``dg_r`` from the adjoints of ``Γ`` and ``γ`` without dividing by any gate.

    ``∂Γ_ts/∂g_r = Γ_tr · Γ'_rs`` for s < r ≤ t, with ``Γ'_rs = ∏_{s<r'<r} g_r'`` (the decay
    from s to r − 1), and ``∂γ_t/∂g_r = Γ_tr · γ_{r−1}``. Γ' is the cumulative product of the
    gate shifted by one token, so exact zeros and signs are handled like Γ itself.
    """
    b_gs = tl.load(p_gate + (o_t - 1) * stride_t, mask=m_t & (o_t >= 1), other=1.0)
    b_gs = b_gs.to(tl.float32)
    b_M = tl.where(o_t[:, None] > o_t[None, :] + 1, b_gs[:, None], 1.0)
    b_Gp = tl.where(o_t[:, None] > o_t[None, :], tl.cumprod(b_M, axis=0), 0.0)
    b_gexcl = tl.cumprod(b_gs, axis=0)
    b_X = tl.dot(b_dGam, tl.trans(b_Gp), input_precision=PREC)  # X_tr = Σ_s dΓ_ts Γ'_rs
    b_dg = tl.sum(b_Gam * b_X, 0)
    b_dg += b_gexcl * tl.sum(b_dgam[:, None] * b_Gam, 0)
    return b_dg


@triton.jit
def v_tile_sums(do, h, dh, Wnew, dWnew, o_in, o_c, o_h, o_t, o_k, m_t, o_v, m_v,
                b_dQS, b_Y, b_X2, b_dP, b_dglast, H: tl.constexpr, V: tl.constexpr,
                PREC: tl.constexpr):
    """One V-tile ``o_v`` of the local backward's sums over V, added to the accumulators:
    ``dQS += dO Sᵀ``, ``Y += dWnew Sᵀ``, ``X2 += Wnew dSᵀ`` (rows ``o_k`` of the states),
    ``dP += dO Wnewᵀ``, ``⟨dS, S⟩``. Also returns the tile's dO and dWnew (16-bit operands for
    16-bit inputs) for the fused kernel's own products."""
    DT: tl.constexpr = h.dtype.element_ty
    o_tv = o_t[:, None] * (H * V) + o_v[None, :]
    b_do = tl.load(do + o_in * V + o_tv, mask=m_t[:, None] & m_v[None, :], other=0.0).to(DT)
    # h, dh hold all BK rows (zero past K): only the V edge needs a mask
    o_kv = o_k[:, None] * V + o_v[None, :]
    b_S = tl.load(h + o_h + o_kv, mask=m_v[None, :], other=0.0)
    b_dS = tl.load(dh + o_h + o_kv, mask=m_v[None, :], other=0.0)
    o_cv = o_t[:, None] * V + o_v[None, :]
    b_w = tl.load(Wnew + o_c * V + o_cv, mask=m_v[None, :], other=0.0)
    b_dw = tl.load(dWnew + o_c * V + o_cv, mask=m_v[None, :], other=0.0)
    b_dQS += tl.dot(b_do, tl.trans(b_S), input_precision=PREC)
    b_Y += tl.dot(b_dw, tl.trans(b_S), input_precision=PREC)
    b_X2 += tl.dot(b_w, tl.trans(b_dS), input_precision=PREC)
    b_dP += tl.dot(b_do, tl.trans(b_w), input_precision=PREC)
    b_dglast += tl.sum(tl.sum(b_dS.to(tl.float32) * b_S.to(tl.float32), 1), 0)
    return b_dQS, b_Y, b_X2, b_dP, b_dglast, b_dw


@triton.jit(do_not_specialize=["T"])
def chunk_grad_kernel(
    q, k, v, beta, gate, do,
    dq, dk, dv, dbeta, dgate,
    A, gam, h, dh, Wnew, dWnew,
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
    o_in = (i_b * T + i_n * BT) * H + i_h
    o_c = i_bh * NT * BT + i_n * BT
    b_beta = tl.load(beta + o_in + o_t * H, mask=m_t, other=0.0).to(tl.float32)
    b_A = tl.load(A + o_c * BT + o_t[:, None] * BT + o_t[None, :])

    # Sums over V-tiles, so that q and k are not needed inside the loop (register pressure):
    # Y = dWnew Sᵀ, X2 = Wnew dS_endᵀ, dQS = dO Sᵀ, dP = dO Wnewᵀ, dA1 = dWnew (diag(β) V)ᵀ.
    b_Y = tl.zeros([BT, BK], dtype=tl.float32)
    b_X2 = tl.zeros([BT, BK], dtype=tl.float32)
    b_dQS = tl.zeros([BT, BK], dtype=tl.float32)
    b_dP = tl.zeros([BT, BT], dtype=tl.float32)
    b_dA = tl.zeros([BT, BT], dtype=tl.float32)
    b_dbeta = tl.zeros([BT], dtype=tl.float32)
    b_dglast = tl.zeros([BT], dtype=tl.float32)  # ⟨dS_end, S⟩ (same in every lane)
    DT: tl.constexpr = h.dtype.element_ty
    o_h = (i_bh * NT + i_n) * BK * V
    for i_v in range(0, tl.cdiv(V, BV)):
        o_v = i_v * BV + tl.arange(0, BV)
        m_v = o_v < V
        m_tv = m_t[:, None] & m_v[None, :]
        o_tv = o_t[:, None] * (H * V) + o_v[None, :]
        b_v = tl.load(v + o_in * V + o_tv, mask=m_tv, other=0.0).to(tl.float32)
        b_dQS, b_Y, b_X2, b_dP, b_dglast, b_dw = v_tile_sums(
            do, h, dh, Wnew, dWnew, o_in, o_c, o_h, o_t, o_k, m_t, o_v, m_v,
            b_dQS, b_Y, b_X2, b_dP, b_dglast, H, V, PREC)
        b_dA += tl.dot(b_dw, tl.trans((b_v * b_beta[:, None]).to(DT)), input_precision=PREC)
        # A stays float32 (as in the forward's U = A diag(β) V): dv is only as good as A
        b_AtdU = tl.dot(tl.trans(b_A), b_dw.to(tl.float32), input_precision=PREC)
        tl.store(dv + o_in * V + o_tv, (b_beta[:, None] * b_AtdU).to(dv.dtype.element_ty),
                 mask=m_tv)
        b_dbeta += tl.sum(b_AtdU * b_v, 1)
    b_dq, b_dk, b_dbeta, b_dGam, b_dgam = local_grads(
        q, k, gate, o_in, o_t, m_t, b_beta, b_A, b_Y, b_X2, b_dQS, b_dP, b_dA, b_dbeta,
        b_dglast, H, K, BT, BK, USE_GATE, PREC)
    o_tk = o_t[:, None] * (H * K) + o_k[None, :]
    m_tk = m_t[:, None] & (o_k < K)[None, :]
    tl.store(dq + o_in * K + o_tk, b_dq.to(dq.dtype.element_ty), mask=m_tk)
    tl.store(dk + o_in * K + o_tk, b_dk.to(dk.dtype.element_ty), mask=m_tk)
    tl.store(dbeta + o_in + o_t * H, b_dbeta.to(dbeta.dtype.element_ty), mask=m_t)
    if USE_GATE:
        b_Gam, _ = chunk_decays(gate + o_in, o_t, m_t, H, USE_GATE, BT)
        b_dg = gate_grad(b_dGam, b_dgam, b_Gam, gate + o_in, o_t, m_t, H, BT, PREC)
        tl.store(dgate + o_in + o_t * H, b_dg.to(dgate.dtype.element_ty), mask=m_t)


@triton.jit
def local_grads(q, k, gate, o_in, o_t, m_t, b_beta, b_A, b_Y, b_X2, b_dQS, b_dP, b_dA,
                b_dbeta, b_dglast, H: tl.constexpr, K: tl.constexpr, BT: tl.constexpr,
                BK: tl.constexpr, USE_GATE: tl.constexpr, PREC: tl.constexpr):
    """Gradients of q, k, β and the adjoints of Γ, γ from the V-summed products (TRITON.md)."""
    o_k = tl.arange(0, BK)
    o_tk = o_t[:, None] * (H * K) + o_k[None, :]
    m_tk = m_t[:, None] & (o_k < K)[None, :]
    b_q = tl.load(q + o_in * K + o_tk, mask=m_tk, other=0.0).to(tl.float32)
    b_k = tl.load(k + o_in * K + o_tk, mask=m_tk, other=0.0).to(tl.float32)
    b_Gam, b_gam = chunk_decays(gate + o_in, o_t, m_t, H, USE_GATE, BT)
    b_Glast = tl.sum(tl.where(o_t[:, None] == BT - 1, b_Gam, 0.0), 0)
    b_bg = b_beta * b_gam
    # Wk = A diag(βγ) K with dWk = −Y  ⇒  Aᵀ dWk = −X1
    b_X1 = tl.dot(tl.trans(b_A), b_Y, input_precision=PREC)
    b_dbg = -tl.sum(b_X1 * b_k, 1)
    b_dgam = tl.sum(b_dQS * b_q, 1) + b_beta * b_dbg
    b_dgam += tl.where(o_t == BT - 1, b_dglast, 0.0)
    b_dPG = b_dP * b_Gam
    b_dq = b_gam[:, None] * b_dQS + tl.dot(b_dPG, b_k, input_precision=PREC)
    b_dk = b_Glast[:, None] * b_X2 - b_bg[:, None] * b_X1
    b_dk += tl.dot(tl.trans(b_dPG), b_q, input_precision=PREC)
    b_dGam = b_dP * tl.dot(b_q, tl.trans(b_k), input_precision=PREC)
    b_dGam += tl.where(o_t[:, None] == BT - 1, tl.sum(b_X2 * b_k, 1)[None, :], 0.0)
    # A = (I + L)⁻¹  ⇒  dL = strict_lower(−Aᵀ dA Aᵀ)
    b_dA -= tl.dot(b_Y, tl.trans(b_k * b_bg[:, None]), input_precision=PREC)
    b_dM = tl.dot(b_dA, tl.trans(b_A), input_precision=PREC)
    b_dM = -tl.dot(tl.trans(b_A), b_dM, input_precision=PREC)
    b_dL = tl.where(o_t[:, None] > o_t[None, :], b_dM, 0.0)
    b_KK = tl.dot(b_k, tl.trans(b_k), input_precision=PREC)
    b_dbeta += tl.sum(b_dL * b_KK * b_Gam, 1) + b_gam * b_dbg
    b_G = b_dL * b_Gam * b_beta[:, None]
    b_dk += tl.dot(b_G, b_k, input_precision=PREC)
    b_dk += tl.dot(tl.trans(b_G), b_k, input_precision=PREC)
    b_dGam += b_dL * b_beta[:, None] * b_KK
    b_dGam = tl.where(o_t[:, None] >= o_t[None, :], b_dGam, 0.0)
    return b_dq, b_dk, b_dbeta, b_dGam, b_dgam
