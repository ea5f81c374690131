"""Compare the delta rule's Triton backend with the float64 reference: outputs, final state and
every gradient. Runs on CUDA, or on CPU under ``TRITON_INTERPRET=1`` (set before this starts).

    TRITON_INTERPRET=1 STATETRACK_TRITON_POISON=1 python scripts/gpu/check_delta_rule_triton.py \
        --dtypes fp32 fp16
Exits 1 when a relative error exceeds the dtype's tolerance (``TOLERANCE``). The interpreter
computes bf16 wrongly on a CPU, so there the 16-bit path (16-bit intermediates and dots) is
checked in fp16.
"""

from __future__ import annotations

import argparse
import itertools
import sys

import torch

from statetrack.ops.delta_rule.reference import delta_rule_reference
from statetrack.ops.delta_rule.triton_impl import delta_rule_triton

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
# Relative error allowed against float64. float32 runs exact (ieee) dots. 16-bit inputs store
# the large intermediates in their own dtype (TRITON.md): each rounding costs about one unit
# roundoff (fp16 2^-11 ≈ 4.9e-4, bf16 2^-8 ≈ 3.9e-3), and o, the gradients are stored 16-bit;
# a few roundoffs of fp16 stay under 3e-3; bf16 measures ~3.5e-3 (emulation) against 1e-2.
TOLERANCE = {torch.float32: 1e-4, torch.float16: 3e-3, torch.bfloat16: 1e-2}


def make_inputs(B: int, T: int, H: int, K: int, V: int, beta_max: float, gated: bool,
                dtype: torch.dtype, device: str, seed: int, with_h0: bool = True
                ) -> dict[str, torch.Tensor | None]:
    """Unit-norm keys, β ∈ (0, beta_max), gates in (−1, 1) with some exact zeros and ±1."""
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, T, H, K, generator=g)
    k = torch.nn.functional.normalize(torch.randn(B, T, H, K, generator=g), dim=-1)
    v = torch.randn(B, T, H, V, generator=g)
    beta = torch.rand(B, T, H, generator=g) * beta_max
    gate = None
    if gated:
        gate = torch.rand(B, T, H, generator=g) * 2 - 1
        gate = torch.where(gate.abs() < 0.05, torch.zeros_like(gate), gate)
        gate = torch.where(gate > 0.97, torch.ones_like(gate), gate)
        gate = torch.where(gate < -0.97, -torch.ones_like(gate), gate)
    h0 = torch.randn(B, H, K, V, generator=g) if with_h0 else None
    out = dict(q=q, k=k, v=v, beta=beta, gate=gate, h0=h0)
    return {n: None if x is None else x.to(device=device, dtype=dtype if n != "h0" else
                                          torch.float32) for n, x in out.items()}


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double().cpu(), b.double().cpu()
    if not torch.isfinite(a).all():
        return float("inf")
    return ((a - b).norm() / b.norm().clamp_min(1e-30)).item()


def check(B: int, T: int, H: int, K: int, V: int, beta_max: float, gated: bool,
          dtype: torch.dtype, device: str, seed: int = 0, with_h0: bool = True,
          uses: str = "both") -> dict[str, float]:
    """Relative errors of o, S_T and the gradients of q, k, v, β, gate, S_0, for a loss of
    o and S_T (``uses`` "both"), of o alone (S_T not requested: no dS_T reaches the backward)
    or of S_T alone (no dO)."""
    x = make_inputs(B, T, H, K, V, beta_max, gated, dtype, device, seed, with_h0)
    names = [n for n, t in x.items() if t is not None]
    leaves = {n: x[n].detach().clone().requires_grad_() for n in names}
    ref_leaves = {n: x[n].detach().double().cpu().requires_grad_() for n in names}
    g = torch.Generator().manual_seed(seed + 1)
    # the output's cotangent rounded to o's dtype, so both sides see the same one
    do = torch.randn(B, T, H, V, generator=g).to(x["v"].dtype).float()
    dS = torch.randn(B, H, K, V, generator=g)

    def run(fn, lv, dev, dt):
        o, S = fn(lv["q"], lv["k"], lv["v"], lv["beta"], lv.get("gate"), lv.get("h0"))
        loss = 0.0
        if uses in ("both", "o"):
            loss = loss + (o.to(dt) * do.to(dev, dt)).sum()
        if uses in ("both", "S"):
            loss = loss + (S.to(dt) * dS.to(dev, dt)).sum()
        loss.backward()
        return o, S

    o, S = run(lambda *a: delta_rule_triton(*a, uses != "o"), leaves, device, torch.float32)
    o_r, S_r = run(delta_rule_reference, ref_leaves, "cpu", torch.float64)
    errs = {"o": rel_err(o, o_r)}
    if S is not None:
        errs["S_T"] = rel_err(S, S_r)
    for n in names:
        g, g_r = leaves[n].grad, ref_leaves[n].grad
        # q does not reach S_T: its gradient from a loss of S_T alone must be exactly zero
        errs["d" + n] = (g.abs().max().item() if g_r is None and g is not None
                         else rel_err(g, g_r))
    return errs


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--T", type=int, nargs="+", default=[1, 5, 17, 33])
    p.add_argument("--dims", type=int, nargs=3, default=[2, 2, 16], metavar=("B", "H", "K"))
    p.add_argument("--V", type=int, default=16)
    p.add_argument("--dtypes", nargs="+", default=["fp32"], choices=sorted(DTYPES))
    p.add_argument("--uses", nargs="+", default=["both"], choices=["both", "o", "S"],
                   help="which outputs the loss uses (o alone: S_T not requested)")
    args = p.parse_args()
    B, H, K = args.dims
    failed = False
    for name in args.dtypes:
        dtype, worst = DTYPES[name], 0.0
        for T, gated, uses in itertools.product(args.T, (False, True), args.uses):
            errs = check(B, T, H, K, args.V, 2.0, gated, dtype, args.device, seed=T, uses=uses)
            worst = max(worst, *errs.values())
            print(f"{name} T={T} gated={gated} loss of {uses}: "
                  + " ".join(f"{n}={e:.1e}" for n, e in errs.items()))
        failed |= not worst <= TOLERANCE[dtype]
        print(f"{name}: worst relative error {worst:.2e} (tolerance {TOLERANCE[dtype]:.0e})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
