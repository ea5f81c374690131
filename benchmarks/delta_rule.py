"""Delta-rule timings on a GPU: statetrack triton vs the chunked torch backend vs fla 0.6.

For each (B, T, H, K=V), bf16, unit-norm keys, no gate and no initial state (what fla's
``chunk_delta_rule`` computes; scale 1): forward and forward+backward medians
(``triton.testing.do_bench``) of statetrack's triton backend, its torch backend and fla's
``chunk_delta_rule`` (its column is null where fla does not import), all at β ∈ (0, 1); and
statetrack triton at β ∈ (0, 2), the cost of the extended eigenvalue range.

The β comparison is timed twice: as the others (``ms``: wall time of eager calls, which at the
paper's small shapes is mostly host launch overhead and moved β2/β1 by ±10% between runs) and
as replays of one CUDA graph of the same call (``graph_ms``: device time only; the host code
is the same for any β, the kernels are what the extension could slow down).

    python benchmarks/delta_rule.py --out benchmarks/results/h200_delta_rule.json \
        [--sweep] [--no-fla]

``--sweep`` also times fwd+bwd under alternative launch settings (triton_impl.TUNING) and
prints them, to pick the table's defaults.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

import torch
import triton

from statetrack.ops.bench import graph_replay_ms
from statetrack.ops.delta_rule import delta_rule

SHAPES = [(8, 2048, 16, 64), (4, 4096, 16, 128), (8, 1024, 8, 64), (1, 8192, 32, 128),
          (256, 40, 4, 32), (256, 256, 4, 32)]
DTYPE = torch.bfloat16


def make_inputs(shape: tuple[int, int, int, int], beta_max: float, seed: int = 0
                ) -> list[torch.Tensor]:
    B, T, H, K = shape
    g = torch.Generator(device="cuda").manual_seed(seed)
    q = torch.randn(B, T, H, K, device="cuda", generator=g)
    k = torch.nn.functional.normalize(torch.randn(B, T, H, K, device="cuda", generator=g), dim=-1)
    v = torch.randn(B, T, H, K, device="cuda", generator=g)
    beta = beta_max * torch.rand(B, T, H, device="cuda", generator=g)
    return [x.to(DTYPE).requires_grad_() for x in (q, k, v, beta)]


def load_fla() -> Callable | None:
    try:
        from fla.ops.delta_rule import chunk_delta_rule
    except ImportError:
        return None
    return chunk_delta_rule


def runner(impl: str, fla: Callable | None) -> Callable:
    """``f(q, k, v, beta) -> o`` for one implementation."""
    if impl == "fla":
        return lambda q, k, v, b: fla(q, k, v, b, scale=1.0, initial_state=None,
                                      output_final_state=False)[0]
    return lambda q, k, v, b: delta_rule(q, k, v, b, backend=impl)[0]


def time_ms(f: Callable, inputs: list[torch.Tensor], pass_: str, rep: int = 200) -> float:
    if pass_ == "fwd":
        with torch.no_grad():
            return triton.testing.do_bench(lambda: f(*inputs), warmup=25, rep=rep,
                                           return_mode="median")
    do = torch.randn_like(inputs[2])

    def step() -> None:
        f(*inputs).backward(do)
    return triton.testing.do_bench(step, warmup=25, rep=rep, grad_to_none=inputs,
                                   return_mode="median")


def graph_ms(f: Callable, inputs: list[torch.Tensor], pass_: str, rep: int = 200) -> float:
    """Median device time of one call captured in a CUDA graph and replayed (no host work)."""
    do = torch.randn_like(inputs[2])

    def step() -> None:
        if pass_ == "fwd":
            with torch.no_grad():
                f(*inputs)
        else:  # autograd.grad: no .grad accumulation inside the graph
            torch.autograd.grad(f(*inputs), inputs, do)
    return graph_replay_ms(step, rep)


def bench_shape(shape: tuple[int, int, int, int], fla: Callable | None, device: str,
                repeats: int = 5) -> list[dict]:
    B, T, H, K = shape
    x1, x2 = make_inputs(shape, 1.0), make_inputs(shape, 2.0)
    with torch.no_grad():  # a sanity check at the timed sizes (the tests use small ones)
        o_tri, o_ref = (runner(impl, None)(*x2).float() for impl in ("triton", "torch"))
        err = ((o_tri - o_ref).norm() / o_ref.norm()).item()
    print(f"{shape}: triton vs torch backend, β ∈ (0, 2), relative error of o {err:.1e}")
    records = []
    for pass_ in ("fwd", "fwdbwd"):
        ms = {"statetrack": None, "torch": None, "fla": None}
        ms["torch"] = time_ms(runner("torch", None), x1, pass_, rep=100)
        if fla is not None:
            ms["fla"] = time_ms(runner("fla", fla), x1, pass_)
        # β ∈ (0, 1) and (0, 2) alternate in ABBA order, `repeats` medians each, so a drift
        # hits both alike and neither always runs second (the launch-bound paper shapes moved
        # β2/β1 by up to ±10% with three repeats in plain ABAB order)
        st = runner("triton", None)
        t1, t2, g1, g2 = [], [], [], []
        for i in range(repeats):
            for x, t, g in ((x1, t1, g1), (x2, t2, g2))[::1 if i % 2 == 0 else -1]:
                t.append(time_ms(st, x, pass_))
                g.append(graph_ms(st, x, pass_))
        med = lambda t: sorted(t)[repeats // 2]
        ms["statetrack"] = med(t1)
        shape_d = {"B": B, "T": T, "H": H, "K": K, "V": K}
        common = {"op": "delta_rule", "shape": shape_d, "dtype": "bfloat16", "pass": pass_,
                  "device": device}
        records.append({**common, "ms": ms, "graph_ms": {"statetrack": med(g1)}, "beta_max": 1})
        records.append({**common, "ms": {"statetrack": med(t2), "torch": None, "fla": None},
                        "graph_ms": {"statetrack": med(g2)}, "beta_max": 2})
    return records


def graph(r: dict) -> str:
    g = r.get("graph_ms")  # absent in records written before session 5
    return "-" if g is None else f"{g['statetrack']:.3f}"


def graph_ratio(d: dict) -> str:
    g1, g2 = d[1].get("graph_ms"), d[2].get("graph_ms")
    return "-" if g1 is None or g2 is None else f"{g2['statetrack'] / g1['statetrack']:.3f}"


def print_table(records: list[dict]) -> None:
    """graph: β ≤ 1 replayed from a CUDA graph (device time); then β2/β1 of those."""
    by_key = {}
    for r in records:
        s = r["shape"]
        by_key.setdefault((s["B"], s["T"], s["H"], s["K"], r["pass"]), {})[r["beta_max"]] = r
    head = (f"{'B,T,H,K=V':>18} {'pass':>6} {'triton':>8} {'torch':>8} {'fla':>8} "
            f"{'tri/fla':>8} {'β2 tri':>8} {'β2/β1':>7} {'graph':>7} {'β2/β1':>7}")
    print(head)
    for (B, T, H, K, p), d in by_key.items():
        m1, m2 = d[1]["ms"], d[2]["ms"]
        fla = m1["fla"]
        fmt = lambda x: "-" if x is None else f"{x:.3f}"
        ratio = "-" if fla is None else f"{m1['statetrack'] / fla:.3f}"
        print(f"{f'{B},{T},{H},{K}':>18} {p:>6} {fmt(m1['statetrack']):>8} "
              f"{fmt(m1['torch']):>8} {fmt(fla):>8} {ratio:>8} {fmt(m2['statetrack']):>8} "
              f"{m2['statetrack'] / m1['statetrack']:>7.3f} {graph(d[1]):>7} "
              f"{graph_ratio(d):>7}")


PAPER_SHAPES = {(256, 40, 4, 32), (256, 256, 4, 32)}


def markdown_table(records: list[dict]) -> str:
    """The README's table of a JSON file of records (``--table``)."""
    by_key = {}
    for r in records:
        s = r["shape"]
        by_key.setdefault((s["B"], s["T"], s["H"], s["K"], r["pass"]), {})[r["beta_max"]] = r
    fmt = lambda x, d=3: "-" if x is None else f"{x:.{d}f}"
    lines = ["| B, T, H, K=V | pass | statetrack triton | torch backend | fla 0.6 | "
             "statetrack/fla | β2/β1 (wall) | β2/β1 (graph) |", "|---|---|---|---|---|---|---|---|"]
    for (B, T, H, K, p), d in by_key.items():
        m1, m2 = d[1]["ms"], d[2]["ms"]
        shape = f"{B}, {T}, {H}, {K}" + (" (paper)" if (B, T, H, K) in PAPER_SHAPES else "")
        ratio = None if m1["fla"] is None else m1["statetrack"] / m1["fla"]
        r = fmt(ratio, 2)
        lines.append(f"| {shape} | {'fwd' if p == 'fwd' else 'fwd+bwd'} | {fmt(m1['statetrack'])} "
                     f"| {fmt(m1['torch'])} | {fmt(m1['fla'])} | "
                     f"{f'**{r}**' if p == 'fwdbwd' and ratio is not None else r} | "
                     f"{m2['statetrack'] / m1['statetrack']:.3f} | {graph_ratio(d)} |")
    return "\n".join(lines)


SWEEP = {
    "state": [(16, 4, 1), (32, 4, 1), (64, 4, 1), (32, 4, 2), (32, 8, 1)],
    "grad": [(32, 4, 1), (16, 8, 1), (32, 8, 1), (64, 8, 1), (32, 16, 1)],
    "prep": [(32, 4, 1), (32, 8, 1)],
}


def sweep(shapes: list[tuple[int, int, int, int]], deadline: float) -> None:
    """One kernel's setting varied at a time, the others at their defaults: fwd+bwd ms."""
    from statetrack.ops.delta_rule import triton_impl

    st = runner("triton", None)
    for shape in shapes:
        BK = max(16, triton.next_power_of_2(shape[3]))
        x = make_inputs(shape, 2.0)
        base = {n: dict(t) for n, t in triton_impl.TUNING.items()}
        for group, variants in SWEEP.items():
            for cfg in variants:
                if time.time() > deadline:
                    print("sweep: deadline reached")
                    return
                kernels = ("state_fwd", "state_bwd") if group == "state" else (group,)
                for n in kernels:
                    triton_impl.TUNING[n][BK] = cfg
                try:
                    ms = f"{time_ms(st, x, 'fwdbwd', rep=100):.3f}"
                except Exception as e:  # noqa: BLE001 - report a config that fails to launch
                    ms = f"failed ({type(e).__name__})"
                print(f"sweep {shape} {group} BV,warps,stages={cfg}: {ms} ms", flush=True)
                for n in kernels:
                    triton_impl.TUNING[n][BK] = base[n][BK]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", default=None, help="write the JSON records here")
    p.add_argument("--sweep", action="store_true", help="also time alternative launch settings")
    p.add_argument("--budget-s", type=float, default=1e9, help="stop the sweep after this long")
    p.add_argument("--no-fla", action="store_true", help="leave fla's column out (null)")
    p.add_argument("--beta-repeats", type=int, default=5,
                   help="alternating medians at β ≤ 1 and β ≤ 2 per pass (their median is kept)")
    p.add_argument("--shape", action="append", default=None, metavar="B,T,H,K",
                   help="time these shapes instead of the issue's six (repeatable)")
    p.add_argument("--table", metavar="JSON", default=None,
                   help="print the README's markdown table of a results file, and exit")
    p.add_argument("--warm-only", action="store_true",
                   help="only compile statetrack's kernels for every shape (fills Triton's cache)")
    args = p.parse_args()
    if args.table:
        with open(args.table) as f:
            print(markdown_table(json.load(f)))
        return
    shapes = ([tuple(int(x) for x in a.split(",")) for a in args.shape] if args.shape
              else SHAPES)
    start = time.time()
    fla = None if args.no_fla else load_fla()
    if args.warm_only:
        for shape in shapes:
            x = make_inputs(shape, 1.0)
            for impl in ("triton",) + (("fla",) if fla else ()):
                runner(impl, fla)(*x).sum().backward()
                torch.cuda.synchronize()
            print(f"warm {shape}: {time.time() - start:.1f}s", flush=True)
        print(f"warm: {time.time() - start:.1f}s")
        return
    device = torch.cuda.get_device_name()
    print(f"device: {device}; fla: {'present' if fla else 'absent (column skipped)'}")
    records = []
    for shape in shapes:
        t0 = time.time()
        records += bench_shape(shape, fla, device, args.beta_repeats)
        print(f"{shape}: {time.time() - t0:.1f}s", flush=True)
        if args.out:  # after every shape, so a run stopped at its time limit keeps the rest
            with open(args.out, "w") as f:
                json.dump(records, f, indent=1)
    print_table(records)
    if args.sweep:
        sweep([SHAPES[i] for i in (3, 1, 0, 5)] if shapes is SHAPES else shapes,
              start + args.budget_s)


if __name__ == "__main__":
    main()
