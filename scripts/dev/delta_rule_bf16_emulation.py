"""Which of the Triton delta rule's intermediates can be bf16? A float64 emulation on CPU.

The kernels' math (TRITON.md) transcribed in float64, with chosen intermediates rounded to
bf16 (``x.to(bfloat16).to(float64)``) exactly where the kernels would store them in the input
dtype or feed them to a 16-bit ``tl.dot``. Gradients come from autograd of the emulation; the
adjoint of a rounding is itself a rounding, which stands for the backward storing ``dh``,
``dWnew`` (and the other cotangents) in bf16. The output and every gradient are rounded to bf16
at the end, as the kernels store them in the input dtype. Errors are the tests' metric
(‖x − x_ref‖ / ‖x_ref‖) against the float64 chunked algorithm (equal to the token loop to
~1e-14, and much faster at T = 4096).

    .venv/bin/python scripts/dev/delta_rule_bf16_emulation.py [--plans none chosen all16 ...]

Rounding points (``--plans`` combines them with ``+``; ``all16`` = every one):
    P      P = (QKᵀ) ⊙ Γ stored            Kdec   diag(Γ_{C−1,·}) K stored
    Wk, U  Wk, U stored                    Aop    A, βγK and βV as operands of Wk = A βγK, U = A βV
    h      the state as stored / as the operand of Wk S and of the output's Q S
    Wnew   the new values stored (and as the operand of the state update Kdecᵀ Wnew)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "src"))

from statetrack.ops.delta_rule.chunked import _decays, _to_chunks, delta_rule_chunked  # noqa: E402

POINTS = ("P", "Kdec", "Wk", "U", "Aop", "h", "Wnew")
PLANS = {"none": "", "all16": "+".join(POINTS),
         "chosen": "P+Kdec+Wk+U+h+Wnew"}  # what the kernels do for 16-bit inputs


LOW = torch.bfloat16  # the 16-bit dtype emulated (--dtype)


def _round(x: torch.Tensor) -> torch.Tensor:
    return x.to(LOW).to(torch.float64)


def emulate(q, k, v, beta, gate, h0, points: set[str], C: int = 64):
    """The Triton kernels' algorithm in float64, rounding ``points`` to bf16.

    q, k ``[B, T, H, K]``; v ``[B, T, H, V]``; beta, gate ``[B, T, H]``; h0 ``[B, H, K, V]``.
    Returns ``(o [B, T, H, V], S_T [B, H, K, V])``.
    """
    def r(name: str, x: torch.Tensor) -> torch.Tensor:
        return _round(x) if name in points else x

    B, T, H, K = k.shape
    V = v.shape[-1]
    N = -(-T // C)
    qc, kc, vc = (_to_chunks(x, N, C, 0.0) for x in (q, k, v))
    bc = _to_chunks(beta, N, C, 0.0)
    gc = None if gate is None else _to_chunks(gate, N, C, 1.0)
    Gam, gam = _decays(gc, bc.shape, bc)
    # prep: L, A = (I + L)⁻¹ in full precision (kept float32 in the kernels)
    L = (bc[..., :, None] * (kc @ kc.transpose(-1, -2)) * Gam).tril(diagonal=-1)
    eye = torch.eye(C, dtype=q.dtype).expand_as(L)
    A = torch.linalg.solve_triangular(eye + L, eye, upper=False, unitriangular=True)
    Aop = r("Aop", A)
    Wk = r("Wk", Aop @ r("Aop", (bc * gam)[..., None] * kc))
    U = r("U", Aop @ r("Aop", bc[..., None] * vc))
    Kdec = r("Kdec", Gam[..., -1, :, None] * kc)
    P = r("P", (qc @ kc.transpose(-1, -2)) * Gam)
    # sequential state pass, S carried in full precision
    S = h0 if h0 is not None else q.new_zeros(B, H, K, V)
    hs, ws = [], []
    for n in range(N):
        h = r("h", S)
        w = r("Wnew", U[:, :, n] - Wk[:, :, n] @ h)
        hs.append(h)
        ws.append(w)
        S = gam[:, :, n, -1, None, None] * S + Kdec[:, :, n].transpose(-1, -2) @ w
    h, W = torch.stack(hs, 2), torch.stack(ws, 2)
    o = gam[..., None] * (qc @ h) + P @ W
    o = o.movedim(1, 3).reshape(B, N * C, H, V)[:, :T]
    return _round(o), S


def make_inputs(B: int, T: int, H: int, K: int, V: int, seed: int, gates: str
                ) -> dict[str, torch.Tensor | None]:
    """As the GPU check: unit-norm keys, β ∈ (0, 2); gates ``signed`` (the tests': (−1, 1) with
    zeros and ±1, memory of a few tokens), ``long`` (|g| ∈ (0.98, 1), random sign: the state
    carries over many chunks, so rounding errors can accumulate) or ``none``. Inputs rounded to
    bf16 (both sides see the same values), h0 float32."""
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, T, H, K, generator=g)
    k = torch.nn.functional.normalize(torch.randn(B, T, H, K, generator=g), dim=-1)
    v = torch.randn(B, T, H, V, generator=g)
    beta = torch.rand(B, T, H, generator=g) * 2
    gate = torch.rand(B, T, H, generator=g) * 2 - 1
    gate = torch.where(gate.abs() < 0.05, torch.zeros_like(gate), gate)
    gate = torch.where(gate > 0.97, torch.ones_like(gate), gate)
    gate = torch.where(gate < -0.97, -torch.ones_like(gate), gate)
    if gates == "long":
        sign = torch.where(torch.rand(B, T, H, generator=g) < 0.5, -1.0, 1.0)
        gate = sign * (1 - 0.02 * torch.rand(B, T, H, generator=g))
    h0 = torch.randn(B, H, K, V, generator=g)
    x = dict(q=q, k=k, v=v, beta=beta, gate=None if gates == "none" else gate)
    x = {n: t if t is None else _round(t) for n, t in x.items()}
    x["h0"] = h0.double()
    return x


def errors(x: dict[str, torch.Tensor], points: set[str], seed: int) -> dict[str, float]:
    """Relative errors of o, S_T and all six gradients: emulation vs float64."""
    B, T, H, _ = x["q"].shape
    K, V = x["q"].shape[-1], x["v"].shape[-1]
    g = torch.Generator().manual_seed(seed + 1)
    do = _round(torch.randn(B, T, H, V, generator=g))
    dS = torch.randn(B, H, K, V, generator=g).double()

    def run(fn, grad_dtype):
        lv = {n: None if t is None else t.detach().clone().requires_grad_()
              for n, t in x.items()}
        o, S = fn(lv["q"], lv["k"], lv["v"], lv["beta"], lv["gate"], lv["h0"])
        ((o * do).sum() + (S * dS).sum()).backward()
        # the kernels store gradients in the input dtype (bf16) and dh0 in float32
        grads = {n: t.grad.to(torch.float32 if n == "h0" else grad_dtype).double()
                 for n, t in lv.items() if t is not None}
        return o, S.float().double(), grads

    o, S, gr = run(lambda *a: emulate(*a, points), LOW)
    o_r, S_r, gr_r = run(lambda *a: delta_rule_chunked(*a, chunk_size=64), torch.float64)

    def rel(a, b):
        return ((a - b).norm() / b.norm()).item()

    errs = {"o": rel(o, o_r), "S_T": rel(S, S_r)}
    errs.update({"d" + n: rel(gr[n], gr_r[n]) for n in gr})
    return errs


def _report(x: dict[str, torch.Tensor | None], plan: str, gates: str, seed: int,
            parser: argparse.ArgumentParser) -> float:
    points = set(filter(None, PLANS.get(plan, plan).split("+")))
    unknown = points - set(POINTS)
    if unknown:
        parser.error(f"unknown rounding points {sorted(unknown)}; allowed: {POINTS}")
    t0 = time.time()
    errs = errors(x, points, seed)
    D, T = x["q"].shape[-1], x["q"].shape[1]
    print(f"K=V={D} T={T} gates={gates} plan={plan}: "
          + " ".join(f"{n}={e:.1e}" for n, e in errs.items())
          + f"  max={max(errs.values()):.1e} ({time.time() - t0:.0f} s)", flush=True)
    return max(errs.values())


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--plans", nargs="+", default=["none", "chosen", "all16"])
    p.add_argument("--shapes", nargs="+", default=["128:4096", "32:1000"],
                   help="K=V:T per case (B=1, H=2)")
    p.add_argument("--gates", nargs="+", default=["signed", "long", "none"],
                   choices=["signed", "long", "none"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dtype", default="bf16", choices=["bf16", "fp16"],
                   help="fp16: to compare with the kernels under the interpreter")
    args = p.parse_args()
    global LOW
    LOW = torch.bfloat16 if args.dtype == "bf16" else torch.float16
    worst = 0.0
    for shape in args.shapes:
        D, T = (int(s) for s in shape.split(":"))
        for gates in args.gates:
            x = make_inputs(1, T, 2, D, D, args.seed, gates)
            for plan in args.plans:
                worst = max(worst, _report(x, plan, gates, args.seed, p))
    print(f"worst relative error {worst:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
