"""Triton backend of the sLSTM recurrence (the token loop in ``slstm.slstm_recurrence_torch``).

Per (batch b, head h), with D the head dim and gate order (i, f, z, o):
``raw_t = Wx_t + Rᵀ y_{t−1}`` (``raw[g, o] = Wx[g, o] + Σ_i y[i] R[i, g, o]``);
``logf_m = log σ(f̃) + m_{t−1}``; ``m_t = max(logf_m, ĩ)``; ``f' = exp(logf_m − m_t)``;
``i' = exp(ĩ − m_t)``; ``c_t = f' c_{t−1} + i' tanh(z̃)``; ``n_t = f' n_{t−1} + i'``;
``y_t = σ(õ) c_t / n_t``.

One program per (b, h) walks time sequentially, holding y, c, n, m [D] and the four [D, D]
blocks of R_h in registers (the matvec is a broadcast product and a ``tl.sum``). The forward
stores the pre-activations and c, n, m of every step; the backward walks time in reverse,
recomputing the gates from them, and accumulates dR per program (summed over the batch in
torch). The gradient treats m exactly as the torch loop's autograd does (max splits a tie in
half), so the two agree to rounding also in the gradient of a carried m.

Hazard: the zero state has m = −inf, so ``logf_m − m_t`` could be ``−inf − (−inf)``; a step
whose m_{t−1} is −inf is handled explicitly (f' = 0, m_t = ĩ, no gradient through logf_m).
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

from statetrack.ops._common import opaque

MAX_HEAD_DIM = 64


@triton.jit
def _gates(b_i, b_f, b_m):
    """(logf_m, m_t, f', i') of one step from ĩ, f̃, m_{t−1} [BD]."""
    first = b_m == float("-inf")  # the zero state: f' = 0 exactly, never −inf − (−inf)
    # log σ(f) = min(f, 0) − log(1 + e^{−|f|}): no overflow for either sign of f
    b_lf = tl.minimum(b_f, 0.0) - tl.log(1.0 + tl.exp(-tl.abs(b_f)))
    b_lfm = tl.where(first, float("-inf"), b_lf + b_m)
    b_mt = tl.maximum(b_lfm, b_i)
    b_fp = tl.where(first, 0.0, tl.exp(b_lfm - b_mt))
    b_ip = tl.exp(b_i - b_mt)
    return b_lfm, b_mt, b_fp, b_ip


@triton.jit
def _tanh(x):
    return 2.0 * tl.sigmoid(2.0 * x) - 1.0


@triton.jit
def _load_r(r, o_r, m_r, D):
    """The four [BD, BD] blocks R[h, :, g, :] (rows: input i, columns: output o)."""
    b_ri = tl.load(r + o_r, mask=m_r, other=0.0).to(tl.float32)
    b_rf = tl.load(r + o_r + D, mask=m_r, other=0.0).to(tl.float32)
    b_rz = tl.load(r + o_r + 2 * D, mask=m_r, other=0.0).to(tl.float32)
    b_ro = tl.load(r + o_r + 3 * D, mask=m_r, other=0.0).to(tl.float32)
    return b_ri, b_rf, b_rz, b_ro


@triton.jit
def _slstm_fwd_kernel(wx, r, y0, c0, n0, m0, ys, raw, cs, ns, ms, cT, nT, mT, T, H, D,
                      BD: tl.constexpr, STORE: tl.constexpr):
    """Grid (B·H,); wx, raw [B, T, 4, H, D]; r [H, D, 4, D]; ys, cs, ns, ms [B, T, H, D];
    y0, c0, n0, m0, cT, nT, mT [B, H, D]; all float32."""
    i_bh = tl.program_id(0).to(tl.int64)
    i_b, i_h = i_bh // H, i_bh % H
    o_d = tl.arange(0, BD)
    m_d = o_d < D
    o_r = i_h * 4 * D * D + o_d[:, None] * 4 * D + o_d[None, :]
    b_ri, b_rf, b_rz, b_ro = _load_r(r, o_r, m_d[:, None] & m_d[None, :], D)
    o_s = i_bh * D + o_d
    b_y = tl.load(y0 + o_s, mask=m_d, other=0.0)
    b_c = tl.load(c0 + o_s, mask=m_d, other=0.0)
    b_n = tl.load(n0 + o_s, mask=m_d, other=0.0)
    b_m = tl.load(m0 + o_s, mask=m_d, other=0.0)
    for t in range(T):
        o_g = (i_b * T + t) * 4 * H * D + i_h * D + o_d  # gate g of step t at o_g + g·H·D
        o_t = (i_b * T + t) * H * D + i_h * D + o_d
        b_yr = b_y[:, None]
        b_i = tl.load(wx + o_g, mask=m_d, other=0.0) + tl.sum(b_yr * b_ri, axis=0)
        b_f = tl.load(wx + o_g + H * D, mask=m_d, other=0.0) + tl.sum(b_yr * b_rf, axis=0)
        b_z = tl.load(wx + o_g + 2 * H * D, mask=m_d, other=0.0) + tl.sum(b_yr * b_rz, axis=0)
        b_o = tl.load(wx + o_g + 3 * H * D, mask=m_d, other=0.0) + tl.sum(b_yr * b_ro, axis=0)
        _, b_m, b_fp, b_ip = _gates(b_i, b_f, b_m)
        b_c = b_fp * b_c + b_ip * _tanh(b_z)
        b_n = b_fp * b_n + b_ip  # f' = 1 or i' = 1 at every step, so n >= 1
        b_y = tl.sigmoid(b_o) * b_c / b_n
        tl.store(ys + o_t, b_y, mask=m_d)
        if STORE:
            tl.store(raw + o_g, b_i, mask=m_d)
            tl.store(raw + o_g + H * D, b_f, mask=m_d)
            tl.store(raw + o_g + 2 * H * D, b_z, mask=m_d)
            tl.store(raw + o_g + 3 * H * D, b_o, mask=m_d)
            tl.store(cs + o_t, b_c, mask=m_d)
            tl.store(ns + o_t, b_n, mask=m_d)
            tl.store(ms + o_t, b_m, mask=m_d)
    tl.store(cT + o_s, b_c, mask=m_d)
    tl.store(nT + o_s, b_n, mask=m_d)
    tl.store(mT + o_s, b_m, mask=m_d)


@triton.jit
def _load_prev(hist, init, o_t, o_s, t, H, D, m_d):
    """State of step t − 1 [BD]: hist[t − 1] ([B, T, H, D]) or, at t = 0, init ([B, H, D])."""
    o_first = tl.zeros_like(o_s) + t == 0  # a tensor mask (t may be a plain int when interpreted)
    b_h = tl.load(hist + o_t - H * D, mask=m_d & ~o_first, other=0.0)
    return b_h + tl.load(init + o_s, mask=m_d & o_first, other=0.0)


@triton.jit
def _slstm_bwd_kernel(raw, r, y0, c0, n0, m0, ys, cs, ns, ms, dys, dcT, dnT, dmT,
                      dwx, dr, dy0, dc0, dn0, dm0, T, H, D, BD: tl.constexpr):
    """Grid (B·H,); reverse time. dwx [B, T, 4, H, D]; dr [B, H, D, 4, D] (one per program);
    dys [B, T, H, D]; dcT, dnT, dmT, dy0, dc0, dn0, dm0 [B, H, D]; all float32."""
    i_bh = tl.program_id(0).to(tl.int64)
    i_b, i_h = i_bh // H, i_bh % H
    o_d = tl.arange(0, BD)
    m_d = o_d < D
    m_r = m_d[:, None] & m_d[None, :]
    o_r = i_h * 4 * D * D + o_d[:, None] * 4 * D + o_d[None, :]
    b_ri, b_rf, b_rz, b_ro = _load_r(r, o_r, m_r, D)
    b_dri = tl.zeros([BD, BD], dtype=tl.float32)
    b_drf = tl.zeros([BD, BD], dtype=tl.float32)
    b_drz = tl.zeros([BD, BD], dtype=tl.float32)
    b_dro = tl.zeros([BD, BD], dtype=tl.float32)
    o_s = i_bh * D + o_d
    b_gy = tl.zeros([BD], dtype=tl.float32)  # dL/dy_t through raw_{t+1} (y_T: via dys)
    b_gc = tl.load(dcT + o_s, mask=m_d, other=0.0)
    b_gn = tl.load(dnT + o_s, mask=m_d, other=0.0)
    b_gm = tl.load(dmT + o_s, mask=m_d, other=0.0)
    for k in range(T):
        t = T - 1 - k
        o_g = (i_b * T + t) * 4 * H * D + i_h * D + o_d
        o_t = (i_b * T + t) * H * D + i_h * D + o_d
        b_i = tl.load(raw + o_g, mask=m_d, other=0.0)
        b_f = tl.load(raw + o_g + H * D, mask=m_d, other=0.0)
        b_z = tl.load(raw + o_g + 2 * H * D, mask=m_d, other=0.0)
        b_o = tl.load(raw + o_g + 3 * H * D, mask=m_d, other=0.0)
        b_c = tl.load(cs + o_t, mask=m_d, other=0.0)
        b_n = tl.load(ns + o_t, mask=m_d, other=1.0)
        b_yp = _load_prev(ys, y0, o_t, o_s, t, H, D, m_d)
        b_cp = _load_prev(cs, c0, o_t, o_s, t, H, D, m_d)
        b_np = _load_prev(ns, n0, o_t, o_s, t, H, D, m_d)
        b_mp = _load_prev(ms, m0, o_t, o_s, t, H, D, m_d)
        b_lfm, _, b_fp, b_ip = _gates(b_i, b_f, b_mp)
        b_so = tl.sigmoid(b_o)
        b_tz = _tanh(b_z)
        b_gy += tl.load(dys + o_t, mask=m_d, other=0.0)
        # y = σ(õ) c / n
        b_dc = b_gc + b_gy * b_so / b_n
        b_dn = b_gn - b_gy * b_so * b_c / (b_n * b_n)
        b_do = b_gy * b_c / b_n * b_so * (1.0 - b_so)
        # c = f' c_{t−1} + i' tanh(z̃), n = f' n_{t−1} + i'
        b_dfp = b_dc * b_cp + b_dn * b_np
        b_dip = b_dc * b_tz + b_dn
        b_dz = b_dc * b_ip * (1.0 - b_tz * b_tz)
        # f' = exp(logf_m − m_t), i' = exp(ĩ − m_t), m_t = max(logf_m, ĩ) (a tie splits in half,
        # as torch.maximum's gradient does)
        b_dmt = b_gm - b_dfp * b_fp - b_dip * b_ip
        b_wf = tl.where(b_lfm > b_i, 1.0, tl.where(b_lfm == b_i, 0.5, 0.0))
        # m_{t−1} = −inf: logf_m is the constant −inf, no gradient reaches f̃ or m_{t−1}
        b_dlfm = tl.where(b_mp == float("-inf"), 0.0, b_dfp * b_fp + b_wf * b_dmt)
        b_di = b_dip * b_ip + (1.0 - b_wf) * b_dmt
        b_df = b_dlfm * tl.sigmoid(-b_f)  # d log σ(f) / df = σ(−f)
        b_di, b_df = tl.where(m_d, b_di, 0.0), tl.where(m_d, b_df, 0.0)
        b_dz, b_do = tl.where(m_d, b_dz, 0.0), tl.where(m_d, b_do, 0.0)
        tl.store(dwx + o_g, b_di, mask=m_d)
        tl.store(dwx + o_g + H * D, b_df, mask=m_d)
        tl.store(dwx + o_g + 2 * H * D, b_dz, mask=m_d)
        tl.store(dwx + o_g + 3 * H * D, b_do, mask=m_d)
        b_ypr = b_yp[:, None]
        b_dri += b_ypr * b_di[None, :]
        b_drf += b_ypr * b_df[None, :]
        b_drz += b_ypr * b_dz[None, :]
        b_dro += b_ypr * b_do[None, :]
        b_gy = (tl.sum(b_ri * b_di[None, :], axis=1) + tl.sum(b_rf * b_df[None, :], axis=1)
                + tl.sum(b_rz * b_dz[None, :], axis=1) + tl.sum(b_ro * b_do[None, :], axis=1))
        b_gc, b_gn, b_gm = b_dc * b_fp, b_dn * b_fp, b_dlfm
    o_dr = i_b * H * 4 * D * D + o_r
    tl.store(dr + o_dr, b_dri, mask=m_r)
    tl.store(dr + o_dr + D, b_drf, mask=m_r)
    tl.store(dr + o_dr + 2 * D, b_drz, mask=m_r)
    tl.store(dr + o_dr + 3 * D, b_dro, mask=m_r)
    tl.store(dy0 + o_s, b_gy, mask=m_d)
    tl.store(dc0 + o_s, b_gc, mask=m_d)
    tl.store(dn0 + o_s, b_gn, mask=m_d)
    tl.store(dm0 + o_s, b_gm, mask=m_d)


def _launch_config(D: int) -> tuple[int, int]:
    """(BD, num_warps): R_h and, backward, dR_h are 4·BD² float32 registers per program."""
    BD = triton.next_power_of_2(D)
    return BD, 1 if BD <= 16 else (4 if BD <= 32 else 8)


class _SLSTMRecurrence(torch.autograd.Function):
    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, wx: torch.Tensor, r: torch.Tensor,
                y0: torch.Tensor, c0: torch.Tensor, n0: torch.Tensor, m0: torch.Tensor
                ) -> tuple[torch.Tensor, ...]:
        B, T, _, H, D = wx.shape
        BD, num_warps = _launch_config(D)
        f32 = {"device": wx.device, "dtype": torch.float32}
        store = any(ctx.needs_input_grad)
        hist = (B, T, H, D) if store else (0,)
        ys = torch.empty(B, T, H, D, **f32)
        raw = torch.empty(wx.shape if store else (0,), **f32)
        cs, ns, ms = (torch.empty(hist, **f32) for _ in range(3))
        cT, nT, mT = (torch.empty(B, H, D, **f32) for _ in range(3))
        _slstm_fwd_kernel[(B * H,)](wx, r, y0, c0, n0, m0, ys, raw, cs, ns, ms, cT, nT, mT,
                                    T, H, D, BD=BD, STORE=store, num_warps=num_warps)
        ctx.save_for_backward(raw, r, y0, c0, n0, m0, ys, cs, ns, ms)
        return ys, cT, nT, mT

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, dys: torch.Tensor | None,
                 dcT: torch.Tensor | None, dnT: torch.Tensor | None, dmT: torch.Tensor | None
                 ) -> tuple[torch.Tensor, ...]:
        raw, r, y0, c0, n0, m0, ys, cs, ns, ms = ctx.saved_tensors
        B, T, _, H, D = raw.shape
        BD, num_warps = _launch_config(D)
        # an output that gets no gradient arrives as None: it contributes zero
        dys, dcT, dnT, dmT = (torch.zeros_like(ref) if g is None else g.float().contiguous()
                              for g, ref in ((dys, ys), (dcT, c0), (dnT, c0), (dmT, c0)))
        dwx = torch.empty_like(raw)
        dr = torch.empty(B, H, D, 4, D, device=raw.device, dtype=torch.float32)
        dy0, dc0, dn0, dm0 = (torch.empty_like(c0) for _ in range(4))
        _slstm_bwd_kernel[(B * H,)](raw, r, y0, c0, n0, m0, ys, cs, ns, ms, dys, dcT, dnT, dmT,
                                    dwx, dr, dy0, dc0, dn0, dm0, T, H, D, BD=BD,
                                    num_warps=num_warps)
        return dwx, dr.sum(0), dy0, dc0, dn0, dm0


@opaque  # torch.compile calls it as it is (see statetrack.ops._common.opaque)
def slstm_recurrence_triton(
    wx: torch.Tensor, r: torch.Tensor,
    state: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]:
    """sLSTM recurrence, computed in float32 (inputs are cast; gradients flow back cast).

    wx ``[B, T, 4, H, D]`` (gates i, f, z, o, bias included), r ``[H, D, 4, D]``, state
    (y, c, n, m) ``[B, H, D]`` or None for the zero state (m = −inf) →
    (ys ``[B, T, H, D]``, (y_T, c_T, n_T, m_T) ``[B, H, D]``), all float32.
    """
    if wx.ndim != 5 or wx.shape[2] != 4:
        raise ValueError(f"wx: expected shape [B, T, 4, H, D], got {tuple(wx.shape)}")
    B, T, _, H, D = wx.shape
    if tuple(r.shape) != (H, D, 4, D):
        raise ValueError(f"r: expected shape [H, D, 4, D] = {(H, D, 4, D)}, got {tuple(r.shape)}")
    if T < 1 or D > MAX_HEAD_DIM:
        raise ValueError(f"wx: expected T >= 1 and head dim D <= {MAX_HEAD_DIM}, "
                         f"got T={T}, D={D}")
    if wx.device.type != "cuda" and os.environ.get("TRITON_INTERPRET") != "1":
        raise ValueError(f"slstm backend='triton' needs CUDA tensors, got device {wx.device}")
    if state is None:
        zeros = torch.zeros(B, H, D, device=wx.device, dtype=torch.float32)
        state = (zeros, zeros, zeros, torch.full_like(zeros, -torch.inf))
    for name, s in zip("ycnm", state, strict=True):
        if tuple(s.shape) != (B, H, D):
            raise ValueError(f"state {name}: expected shape [B, H, D] = {(B, H, D)}, "
                             f"got {tuple(s.shape)}")
    y0, c0, n0, m0 = (s.float().contiguous() for s in state)
    ys, cT, nT, mT = _SLSTMRecurrence.apply(wx.float().contiguous(), r.float().contiguous(),
                                            y0, c0, n0, m0)
    return ys, (ys[:, -1], cT, nT, mT)
