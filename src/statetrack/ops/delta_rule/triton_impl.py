"""Triton backend of the delta rule: chunked (WY/UT) forward, hand-written backward.

``S_t = gate_t · (I − β_t k_t k_tᵀ) S_{t−1} + β_t k_t v_tᵀ``,  ``o_t = S_tᵀ q_t``.
Kernels live in ``triton_fwd.py`` / ``triton_bwd.py``; TRITON.md derives them. Triton is
imported here and only here (lazily, by the dispatch in ``__init__.py``).
"""

from __future__ import annotations

import functools
import os

import torch
import triton

from statetrack.ops.delta_rule.triton_bwd import chunk_grad_kernel, chunk_state_bwd_kernel
from statetrack.ops.delta_rule.triton_bwd_split import chunk_dqk_kernel, chunk_wy_bwd_kernel
from statetrack.ops.delta_rule.triton_fwd import (
    chunk_output_kernel,
    chunk_prep_kernel,
    chunk_state_fwd_kernel,
)

# Fill every kernel output with NaN before launch, so that an element a kernel forgot to write
# fails the tests instead of passing as a zero from torch.empty.
POISON = os.environ.get("STATETRACK_TRITON_POISON", "0") == "1"


def _empty(*shape: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    if POISON:
        return torch.full(shape, float("nan"), dtype=dtype, device=device)
    return torch.empty(shape, dtype=dtype, device=device)


# Chunk length BT per padded key width BK: the whole key dim is in registers, so the chunk
# shrinks as K grows.
CHUNK: dict[int, int] = {16: 64, 32: 64, 64: 64, 128: 64, 256: 32}


def _tiles(K: int) -> tuple[int, int]:
    """(BT, BK) of a call with key dim K."""
    BK = max(16, triton.next_power_of_2(K))
    return CHUNK[BK], BK


def _precision(dtype: torch.dtype) -> str:
    # tf32 dots carry ~3e-4 relative error: fine for 16-bit inputs, not for float32 ones.
    # (Dots whose operands are 16-bit ignore it: those are 16-bit tensor-core products.)
    return "tf32" if dtype in (torch.float16, torch.bfloat16) else "ieee"


def _stored_dtype(dtype: torch.dtype) -> torch.dtype:
    """dtype of the large intermediates (P, Wk, U, Kdec, h, Wnew, dh, dWnew).

    The input dtype for 16-bit inputs: half the bytes, and 16-bit dots at twice the tf32 rate;
    the bf16 rounding of these stays within ~3e-3 of float64 (TRITON.md, "16-bit inputs").
    float32 for float32 and float64 inputs. A, γ, the carried states, S_T and dS_0 are always
    float32.
    """
    return dtype if dtype in (torch.float16, torch.bfloat16) else torch.float32


# Launch settings per kernel and BK: (BV, num_warps, num_stages). num_stages 0 marks the
# sequential state kernels, whose every program should be resident at once: there BV is
# doubled (with WIDE_WARPS) when that makes the grid fit in one wave of one program per
# multiprocessor, and the kernel then gets 2 stages, else 1. Their loads do not depend on the
# carried state, so a second stage prefetches the next chunk while this one computes; but it
# doubles their shared memory, and a grid larger than one wave would run its chunks twice as
# long. The parallel gradient kernel holds five [BT, BK]-sized tiles and wants more warps.
# H200 per-kernel profiles (scripts/gpu/profile_kernels.py, session 4): the prep kernel's
# blocked solve reduces across warps, so fewer warps pay: 0.215 / 0.082 / 0.048 ms at 8 / 4 / 2
# warps at (256, 40, 4, 32), 1.09 / 0.49 ms at 8 / 4 warps at K = 128. At K = 128: grad 1.41 ms
# at BV = 32, 1.29 ms at BV = 64, and split (SPLIT_GRAD) 0.71 ms dqk at (64, 8) against 0.88 at
# (32, 8) + 0.40 ms wy at (64, 4) against 0.43 at (32, 4); output 0.131 ms at (64, 8), 0.102 at
# (128, 4); at B·H = 64 the doubled state tiles took 0.17 / 0.22 ms (forward / backward)
# against 0.21 / 0.34 ms. At K = 64, (8, 2048, 16, 64): prep 0.373 / 0.268 ms at 4 / 2 warps,
# grad 0.615 / 0.468 ms at 8 / 4 warps, and the split 0.579 ms (so not split there).
TUNING: dict[str, dict[int, tuple[int, int, int]]] = {
    "prep": {16: (32, 2, 1), 32: (32, 2, 1), 64: (32, 2, 1), 128: (32, 4, 1), 256: (32, 8, 1)},
    "state_fwd": {16: (32, 4, 0), 32: (32, 4, 0), 64: (32, 4, 0), 128: (32, 4, 0),
                  256: (16, 4, 1)},
    "state_bwd": {16: (32, 4, 0), 32: (32, 4, 0), 64: (32, 4, 0), 128: (32, 4, 0),
                  256: (16, 4, 1)},
    "output": {16: (32, 4, 1), 32: (32, 4, 1), 64: (64, 4, 1), 128: (128, 4, 1),
               256: (32, 8, 1)},
    "grad": {16: (32, 4, 1), 32: (32, 4, 1), 64: (32, 4, 1), 128: (64, 8, 1), 256: (16, 8, 1)},
    # the split backward (SPLIT_GRAD; BKT: _split_bkt): timed at K = 128 (above and at
    # SPLIT_BKT); elsewhere the settings without spills (kernel_resources.py, TRITON.md
    # "Split backward")
    "dqk": {16: (32, 4, 1), 32: (32, 4, 1), 64: (64, 4, 1), 128: (64, 8, 3), 256: (32, 8, 1)},
    "wy": {16: (16, 4, 1), 32: (16, 4, 1), 64: (32, 8, 1), 128: (64, 4, 1), 256: (16, 4, 1)},
}
WIDE_WARPS = {"state_fwd": 4, "state_bwd": 8}  # num_warps of a doubled state V-tile

# Local backward per BK: True runs chunk_dqk_kernel + chunk_wy_bwd_kernel (triton_bwd_split.py:
# the key dim cut in BKT-wide tiles across programs) instead of chunk_grad_kernel.
# STATETRACK_TRITON_SPLIT_GRAD=1 forces the split for every BK, STATETRACK_TRITON_SPLIT_BKT
# sets BKT (a power of two >= 16, capped at BK; default 128 at BK = 128, else 64): the tests
# use both to run the split path, with two K-tiles at a small K, under the interpreter.
# Timed on the H200 at K = 32, 64, 128 (above): the split pays at 128 only. 256: not timed.
# BKT = 128 (one K-tile: dO, Wnew and dWnew are read once per chunk, not once per tile) with
# dqk at (64, 8, 3) took dqk from 0.712 to 0.503 ms at (1, 8192, 32, 128) (session 5,
# h200_profile_s5.log; (64, 8, 1) at one tile: 0.561 ms; 4 stages do not fit).
SPLIT_GRAD: dict[int, bool] = {16: False, 32: False, 64: False, 128: True, 256: False}
SPLIT_FORCED = os.environ.get("STATETRACK_TRITON_SPLIT_GRAD", "0") == "1"
SPLIT_BKT: int | None = (int(os.environ["STATETRACK_TRITON_SPLIT_BKT"])
                         if "STATETRACK_TRITON_SPLIT_BKT" in os.environ else None)


def _split_bkt(BK: int, stored: torch.dtype) -> int:
    """Width BKT of the split backward's K-tiles at key width BK, for intermediates stored in
    ``stored``. One 128-wide tile only at BK = 128 with 16-bit operands: at BK = 256 it spills
    kilobytes, and float32 tiles need twice the shared memory (262 KB, over the H200's 227 KB)."""
    if SPLIT_BKT is None:
        return 128 if BK == 128 and stored != torch.float32 else min(BK, 64)
    if SPLIT_BKT < 16 or SPLIT_BKT & (SPLIT_BKT - 1):
        raise ValueError(f"STATETRACK_TRITON_SPLIT_BKT: expected a power of two >= 16, "
                         f"got {SPLIT_BKT}")
    return min(BK, SPLIT_BKT)


@functools.cache
def _num_sms(device: torch.device) -> int:
    if device.type != "cuda":
        return 1
    return torch.cuda.get_device_properties(device).multi_processor_count


def _launch(kernel: str, BK: int, V: int, n_rows: int, device: torch.device
            ) -> tuple[int, dict[str, int]]:
    """(BV, launch options) for ``kernel``; ``n_rows`` = B·H, the grid's second axis."""
    BV, warps, stages = TUNING[kernel][BK]
    BV = max(16, min(BV, triton.next_power_of_2(V)))
    if stages == 0:
        sms = _num_sms(device)
        if (triton.cdiv(V, BV) * n_rows > sms >= triton.cdiv(V, 2 * BV) * n_rows
                and 2 * BV <= triton.next_power_of_2(V)):
            BV, warps = 2 * BV, WIDE_WARPS[kernel]
        stages = 2 if triton.cdiv(V, BV) * n_rows <= sms else 1
    return BV, {"num_warps": warps, "num_stages": stages}


def _dims(q: torch.Tensor, v: torch.Tensor) -> tuple:
    """(B, T, H, K, V, BT, BK, NT, stored dtype, dot precision) of a call, for both passes."""
    B, T, H, K = q.shape
    BT, BK = _tiles(K)
    return (B, T, H, K, v.shape[-1], BT, BK, triton.cdiv(T, BT), _stored_dtype(q.dtype),
            _precision(q.dtype))


def _forward(q, k, v, beta, gate, h0):
    B, T, H, K, V, BT, BK, NT, st, prec = _dims(q, v)
    dev, f32 = q.device, torch.float32
    A = _empty(B * H, NT * BT, BT, dtype=f32, device=dev)
    P = _empty(B * H, NT * BT, BT, dtype=st, device=dev)
    Wk = _empty(B * H, NT * BT, BK, dtype=st, device=dev)
    Kdec = _empty(B * H, NT * BT, BK, dtype=st, device=dev)
    U = _empty(B * H, NT * BT, V, dtype=st, device=dev)
    gam = _empty(B * H, NT * BT, dtype=f32, device=dev)
    BV, opts = _launch("prep", BK, V, B * H, dev)
    chunk_prep_kernel[(B * H * NT,)](
        q, k, v, beta, gate if gate is not None else beta,
        A, P, Wk, U, Kdec, gam,
        T, H, K, V, BT=BT, BK=BK, BV=BV, USE_GATE=gate is not None, PREC=prec, **opts,
    )
    hT = _empty(B, H, K, V, dtype=f32, device=dev)
    h = _empty(B * H, NT, BK, V, dtype=st, device=dev)
    Wnew = _empty(B * H, NT * BT, V, dtype=st, device=dev)
    BV, opts = _launch("state_fwd", BK, V, B * H, dev)
    chunk_state_fwd_kernel[(B * H, triton.cdiv(V, BV))](
        h0 if h0 is not None else hT, hT, Wk, U, Kdec, gam, h, Wnew,
        T, H, K, V, BT=BT, BK=BK, BV=BV, USE_H0=h0 is not None, PREC=prec, **opts,
    )
    o = _empty(B, T, H, V, dtype=v.dtype, device=dev)
    BV, opts = _launch("output", BK, V, B * H, dev)
    chunk_output_kernel[(B * H * NT, triton.cdiv(V, BV))](
        q, o, P, gam, h, Wnew, T, H, K, V, BT=BT, BK=BK, BV=BV, PREC=prec, **opts,
    )
    return o, hT, (A, P, Wk, Kdec, gam, h, Wnew)


def _backward(q, k, v, beta, gate, saved, do, dhT):
    A, P, Wk, Kdec, gam, h, Wnew = saved
    B, T, H, K, V, BT, BK, NT, st, prec = _dims(q, v)
    dev, f32 = q.device, torch.float32
    dh = _empty(B * H, NT, BK, V, dtype=st, device=dev)
    dWnew = _empty(B * H, NT * BT, V, dtype=st, device=dev)
    dh0 = _empty(B, H, K, V, dtype=f32, device=dev)
    BV, opts = _launch("state_bwd", BK, V, B * H, dev)
    chunk_state_bwd_kernel[(B * H, triton.cdiv(V, BV))](
        q, do, dhT if dhT is not None else dh0, dh0,
        P, Wk, Kdec, gam, dh, dWnew,
        T, H, K, V, BT=BT, BK=BK, BV=BV, USE_DHT=dhT is not None, PREC=prec, **opts,
    )
    dq, dk, dv = (_empty(*x.shape, dtype=x.dtype, device=dev) for x in (q, k, v))
    dbeta = _empty(*beta.shape, dtype=beta.dtype, device=dev)
    dgate = None if gate is None else _empty(*gate.shape, dtype=gate.dtype, device=dev)
    if SPLIT_FORCED or SPLIT_GRAD.get(BK, False):
        _split_grad(q, k, v, beta, gate, do, (dq, dk, dv, dbeta, dgate), A, gam, h, dh, Wnew,
                    dWnew)
        return dq, dk, dv, dbeta, dgate, dh0
    BV, opts = _launch("grad", BK, V, B * H, dev)
    chunk_grad_kernel[(B * H * NT,)](
        q, k, v, beta, gate if gate is not None else beta, do,
        dq, dk, dv, dbeta, dgate if dgate is not None else dbeta,
        A, gam, h, dh, Wnew, dWnew,
        T, H, K, V, BT=BT, BK=BK, BV=BV, USE_GATE=gate is not None, PREC=prec, **opts,
    )
    return dq, dk, dv, dbeta, dgate, dh0


def _split_grad(q, k, v, beta, gate, do, grads, A, gam, h, dh, Wnew, dWnew) -> None:
    """The local backward as two kernels (triton_bwd_split.py), writing ``grads`` =
    (dq, dk, dv, dbeta, dgate or None) in place."""
    dq, dk, dv, dbeta, dgate = grads
    B, T, H, K, V, BT, BK, NT, st, prec = _dims(q, v)
    dev, f32, gated = q.device, torch.float32, gate is not None
    BKT = _split_bkt(BK, st)
    NK = BK // BKT
    dk_part = _empty(B * H, NT * BT, BK, dtype=f32, device=dev)
    # per-token partials [B·H·N, NK, BT], summed over the K-tiles by the second kernel
    dbg_part = _empty(B * H * NT, NK, BT, dtype=f32, device=dev)
    # dγ and rowsum(X2 ⊙ K) partials and dP only with a gate (else placeholders, not touched)
    dgam_part, rx2k_part, dP = dbg_part, dbg_part, dk_part
    if gated:
        dgam_part, rx2k_part = (_empty(B * H * NT, NK, BT, dtype=f32, device=dev)
                                for _ in range(2))
        dP = _empty(B * H * NT, BT, BT, dtype=f32, device=dev)
    gate_arg = gate if gated else beta
    BV, opts = _launch("dqk", BK, V, B * H, dev)
    if st == f32:  # float32 tiles: one stage (shared memory, as in _split_bkt)
        opts["num_stages"] = 1
    chunk_dqk_kernel[(B * H * NT, NK)](
        q, k, beta, gate_arg, do, dq, A, h, dh, Wnew, dWnew,
        dk_part, dbg_part, dgam_part, rx2k_part, dP,
        T, H, K, V, BT=BT, BK=BK, BKT=BKT, BV=BV, USE_GATE=gated, PREC=prec, **opts,
    )
    BV, opts = _launch("wy", BK, V, B * H, dev)
    chunk_wy_bwd_kernel[(B * H * NT,)](
        q, k, v, beta, gate_arg, dk, dv, dbeta, dgate if gated else dbeta,
        A, gam, h, dWnew, dk_part, dbg_part, dgam_part, rx2k_part, dP,
        T, H, K, V, BT=BT, BK=BK, BV=BV, NK=NK, USE_GATE=gated, PREC=prec, **opts,
    )


class DeltaRuleTriton(torch.autograd.Function):
    """Ties the forward and backward kernels; gradients for q, k, v, β, gate and S_0."""

    @staticmethod
    def forward(ctx, q, k, v, beta, gate, h0):
        o, hT, saved = _forward(q, k, v, beta, gate, h0)
        # an unused output's gradient comes as None, not as a zero tensor to read (dS_T is
        # unused in most training: the state kernel then skips it)
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(q, k, v, beta, gate, *saved)
        ctx.h0_dtype = None if h0 is None else h0.dtype
        return o, hT

    @staticmethod
    def backward(ctx, do, dhT):
        q, k, v, beta, gate, *saved = ctx.saved_tensors
        if do is None:  # only S_T was used
            do = torch.zeros(*q.shape[:3], v.shape[-1], dtype=v.dtype, device=v.device)
        dq, dk, dv, dbeta, dgate, dh0 = _backward(
            q, k, v, beta, gate, saved, do.contiguous(),
            None if dhT is None else dhT.contiguous())
        dh0 = None if ctx.h0_dtype is None else dh0.to(ctx.h0_dtype)
        return dq, dk, dv, dbeta, dgate, dh0


def delta_rule_triton(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    beta: torch.Tensor,
    gate: torch.Tensor | None,
    initial_state: torch.Tensor | None,
    output_final_state: bool,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """q, k ``[B, T, H, K]``; v ``[B, T, H, V]``; beta, gate ``[B, T, H]``; S ``[B, H, K, V]``.

    Returns ``(o [B, T, H, V] in v's dtype, S_T [B, H, K, V] float32 or None)``; S_T is
    float64 for float64 inputs (computed in float32). Any T; K, V up to 256.
    """
    B, T, H, K = q.shape
    V = v.shape[-1]
    if K > 256 or V > 256:
        raise ValueError(f"delta_rule triton backend: head dims K, V must be <= 256, "
                         f"got K={K}, V={V}")
    state_dtype = torch.float64 if q.dtype == torch.float64 else torch.float32
    if T == 0:
        S = (torch.zeros(B, H, K, V, dtype=state_dtype, device=q.device)
             if initial_state is None else initial_state.to(state_dtype).clone())
        return v.new_zeros(B, 0, H, V), (S if output_final_state else None)
    q, k, v, beta = (x.contiguous() for x in (q, k, v, beta))
    gate = None if gate is None else gate.contiguous()
    h0 = None if initial_state is None else initial_state.contiguous()
    o, hT = DeltaRuleTriton.apply(q, k, v, beta, gate, h0)
    return o, (hT.to(state_dtype) if output_final_state else None)
