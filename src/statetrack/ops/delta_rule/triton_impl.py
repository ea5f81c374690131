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


def _tiles(K: int) -> tuple[int, int]:
    """(BT, BK): the whole key dim in registers, so the chunk shrinks as K grows."""
    BK = max(16, triton.next_power_of_2(K))
    return (64 if BK <= 128 else 32), BK


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


# Launch settings per kernel and BK: (BV, num_warps, num_stages). num_stages 0 means: 2 when
# the whole grid is resident at once on one program per multiprocessor, else 1. The sequential
# state kernels' loads do not depend on the carried state, so a second stage prefetches the
# next chunk while this one computes; but it doubles their shared memory (to ~210 KB at
# BK = 128), and a grid that no longer fits in one wave would run its chunks twice as long.
# The parallel gradient kernel holds five [BT, BK]-sized tiles and wants more warps.
TUNING: dict[str, dict[int, tuple[int, int, int]]] = {
    "prep": {16: (32, 4, 1), 32: (32, 4, 1), 64: (32, 8, 1), 128: (32, 8, 1), 256: (32, 8, 1)},
    "state_fwd": {16: (32, 4, 0), 32: (32, 4, 0), 64: (32, 4, 0), 128: (32, 4, 0),
                  256: (16, 4, 1)},
    "state_bwd": {16: (32, 4, 0), 32: (32, 4, 0), 64: (32, 4, 0), 128: (32, 4, 0),
                  256: (16, 4, 1)},
    "output": {16: (32, 4, 1), 32: (32, 4, 1), 64: (64, 4, 1), 128: (64, 8, 1),
               256: (32, 8, 1)},
    "grad": {16: (32, 4, 1), 32: (32, 4, 1), 64: (32, 8, 1), 128: (32, 8, 1), 256: (16, 8, 1)},
}


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
        stages = 2 if triton.cdiv(V, BV) * n_rows <= _num_sms(device) else 1
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
    BV, opts = _launch("grad", BK, V, B * H, dev)
    chunk_grad_kernel[(B * H * NT,)](
        q, k, v, beta, gate if gate is not None else beta, do,
        dq, dk, dv, dbeta, dgate if dgate is not None else dbeta,
        A, gam, h, dh, Wnew, dWnew,
        T, H, K, V, BT=BT, BK=BK, BV=BV, USE_GATE=gate is not None, PREC=prec, **opts,
    )
    return dq, dk, dv, dbeta, dgate, dh0


class DeltaRuleTriton(torch.autograd.Function):
    """Ties the forward and backward kernels; gradients for q, k, v, β, gate and S_0."""

    @staticmethod
    def forward(ctx, q, k, v, beta, gate, h0):
        o, hT, saved = _forward(q, k, v, beta, gate, h0)
        ctx.save_for_backward(q, k, v, beta, gate, *saved)
        ctx.h0_dtype = None if h0 is None else h0.dtype
        return o, hT

    @staticmethod
    def backward(ctx, do, dhT):
        q, k, v, beta, gate, *saved = ctx.saved_tensors
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
