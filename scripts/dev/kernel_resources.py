"""Registers, spills and shared memory of statetrack's Triton kernels on Hopper, without a GPU.

Triton compiles a kernel to PTX on any machine, and the ``ptxas`` that ships with it assembles
that PTX for sm_90a and reports what each thread needs. Occupancy follows from it (65,536
registers per multiprocessor: a 4-warp program at 255 registers leaves room for two), and a
spill means local-memory traffic in the inner loop. So tile sizes can be screened here, and
device time spent only on the ones that fit.

    PYTHONPATH=src python scripts/dev/kernel_resources.py selective_scan --grid BT=2,4,8 \
        --warps 2 4
    PYTHONPATH=src python scripts/dev/kernel_resources.py selective_scan \
        --kernels ss_lanes_fwd ss_lanes_bwd --grid BT=64,128,256 BD=4,8 --warps 4 8
    PYTHONPATH=src python scripts/dev/kernel_resources.py delta_rule --head-dim 128 \
        --grid BV=32,64 [--dtype fp32]

Each row: kernel, constexpr settings, num_warps, registers per thread, spilled bytes (stores,
loads), shared memory bytes, programs per multiprocessor that the registers allow, and static
SASS instruction counts (``cuobjdump -sass`` of the cubin; a loop body counts once): all, then
shuffles, MUFU, FFMA, FMUL, FADD, global loads, stores, reductions (atomics) and barriers. In
session 10 they showed where the backward's instructions go: without its dB / dC sums the
(4, 8, 1 warp) backward drops from 1,800 to 1,448 instructions, its shuffles from 124 to 28
and its registers from 254 to 225.

``--by-line`` also lists, per source line (from the PTX's ``.loc`` entries), the operations that
move data between threads: warp shuffles, shared-memory stores and loads (``stmatrix`` /
``ldmatrix`` included), barriers and atomics. Triton's layout conversions, cross-warp
reductions and scans become these, and their count per line shows which ``tl`` call costs what
(session 6 found the reverse scans' lane reversals this way).
"""

from __future__ import annotations

import argparse
import inspect
import itertools
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REGISTERS_PER_SM = 65536
PTXAS_NAMES = ("ptxas-blackwell", "ptxas")  # the newer one reads the PTX version Triton writes


@dataclass
class KernelSpec:
    """A kernel, the Triton type of each runtime argument, and its default constexprs."""

    name: str
    kernel: Any
    types: dict[str, str]
    constexprs: dict[str, Any] = field(default_factory=dict)
    num_warps: int = 4  # the launch setting in use (--warps overrides it)
    num_stages: int = 1


def _delta_rule_specs(K: int, dtype: str) -> list[KernelSpec]:
    """The delta-rule kernels at head dims K = V, inputs in ``dtype`` ("bf16" or "fp32"), with
    the tiles, precision and launch settings ``triton_impl`` would pick: the five in use and the
    split backward's two (``dqk``, ``wy``; ``--grid BKT=32,64`` varies dqk's K-tile)."""
    import torch

    from statetrack.ops.delta_rule import triton_bwd, triton_bwd_split, triton_fwd
    from statetrack.ops.delta_rule import triton_impl as impl

    torch_dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}[dtype]
    stored = "bf16" if impl._stored_dtype(torch_dtype) == torch.bfloat16 else "fp32"
    BT, BK = impl._tiles(K)
    BKT = impl._split_bkt(BK, impl._stored_dtype(torch_dtype))
    io = ("q", "k", "v", "beta", "do", "o", "dq", "dk", "dv", "dbeta")
    kept = ("P", "Wk", "U", "Kdec", "h", "Wnew", "dh", "dWnew")
    kernels = [("prep", triton_fwd.chunk_prep_kernel, {"USE_GATE": False}),
               ("state_fwd", triton_fwd.chunk_state_fwd_kernel, {"USE_H0": False}),
               ("output", triton_fwd.chunk_output_kernel, {}),
               ("state_bwd", triton_bwd.chunk_state_bwd_kernel, {"USE_DHT": False}),
               ("grad", triton_bwd.chunk_grad_kernel, {"USE_GATE": False}),
               ("dqk", triton_bwd_split.chunk_dqk_kernel, {"USE_GATE": False, "BKT": BKT}),
               ("wy", triton_bwd_split.chunk_wy_bwd_kernel, {"USE_GATE": False, "NK": BK // BKT})]
    specs = []
    for name, kernel, flags in kernels:
        BV, warps, stages = impl.TUNING[name][BK]
        if name == "dqk" and stored == "fp32":  # as triton_impl._split_grad launches it
            stages = 1
        types = {n: (f"*{dtype}" if n in io else f"*{stored}" if n in kept else t)
                 for n, t in _types(kernel, ()).items()}
        constexprs = dict(flags, H=16, K=K, V=K, BT=BT, BK=BK, BV=min(BV, K),
                          PREC=impl._precision(torch_dtype))
        # stages 0 = "2 when the grid fits in one wave": counted here as 2, the larger
        specs.append(KernelSpec(f"dr_{name}", kernel, types, constexprs, warps, stages or 2))
    return specs


def _specs(op: str, K: int = 128, dtype: str = "bf16") -> list[KernelSpec]:
    if op == "delta_rule":
        return _delta_rule_specs(K, dtype)
    if op == "selective_scan":
        from statetrack.ops.selective_scan.triton_bwd import ss_bwd_carry_kernel, ss_bwd_kernel
        from statetrack.ops.selective_scan.triton_impl import (
            BWD_CONFIG,
            FWD_CONFIG,
            LANES_BWD_CONFIG,
            LANES_CONFIG,
            PIPE_TILES,
        )
        from statetrack.ops.selective_scan.triton_kernels import (
            ss_fwd_carry_kernel,
            ss_fwd_kernel,
        )
        from statetrack.ops.selective_scan.triton_lanes import ss_lanes_fwd_kernel
        from statetrack.ops.selective_scan.triton_lanes_bwd import ss_lanes_bwd_kernel

        bf16 = ("x", "dt", "Bm", "Cm", "z", "y", "dy", "dx", "ddt", "dz")
        flags = dict(NP=16, HAS_D=True, HAS_Z=True, HAS_BIAS=True)
        pf, pb = PIPE_TILES.many
        return [
            KernelSpec("ss_fwd", ss_fwd_kernel, _types(ss_fwd_kernel, bf16),
                       dict(flags, BT=FWD_CONFIG.BT, BD=FWD_CONFIG.BD, SEG=FWD_CONFIG.SEG,
                            HAS_H0=False, SAVE=True, PIPE=False, SPLIT=False)),
            KernelSpec("ss_bwd", ss_bwd_kernel, _types(ss_bwd_kernel, bf16),
                       dict(flags, BT=BWD_CONFIG.BT, BD=BWD_CONFIG.BD, SEG=BWD_CONFIG.SEG,
                            HAS_DHT=False, PIPE=False, SPLIT=False, BFLY=0,
                            RBT=BWD_CONFIG.BT)),
            # chunk_pipe at its "many programs" tiles (the Table 3 training shape's)
            KernelSpec("ss_pipe_fwd", ss_fwd_kernel, _types(ss_fwd_kernel, bf16),
                       dict(flags, BT=pf.BT, BD=pf.BD, SEG=pf.SEG, HAS_H0=False, SAVE=True,
                            PIPE=True, SPLIT=False), pf.num_warps),
            KernelSpec("ss_pipe_bwd", ss_bwd_kernel, _types(ss_bwd_kernel, bf16),
                       dict(flags, BT=pb.BT, BD=pb.BD, SEG=pb.SEG, HAS_DHT=False, PIPE=True,
                            SPLIT=False, BFLY=pb.bfly, RBT=pb.RBT or pb.BT), pb.num_warps),
            # the carry passes of a forward and a backward split in time (ScanConfig.parts > 1)
            KernelSpec("ss_pipe_fwd_carry", ss_fwd_carry_kernel,
                       _types(ss_fwd_carry_kernel, bf16),
                       dict(NP=16, HAS_BIAS=True, BT=pf.BT, BD=pf.BD, SEG=pf.SEG),
                       pf.num_warps),
            KernelSpec("ss_pipe_bwd_carry", ss_bwd_carry_kernel,
                       _types(ss_bwd_carry_kernel, bf16),
                       dict(NP=16, HAS_Z=True, HAS_BIAS=True, BT=pb.BT, BD=pb.BD, SEG=pb.SEG),
                       pb.num_warps),
            KernelSpec("ss_lanes_fwd", ss_lanes_fwd_kernel, _types(ss_lanes_fwd_kernel, bf16),
                       dict(flags, BT=LANES_CONFIG.BT, BD=LANES_CONFIG.BD, SEG=BWD_CONFIG.SEG,
                            HAS_H0=False, SAVE=True), LANES_CONFIG.num_warps),
            KernelSpec("ss_lanes_bwd", ss_lanes_bwd_kernel, _types(ss_lanes_bwd_kernel, bf16),
                       dict(flags, BT=LANES_BWD_CONFIG.BT, BD=LANES_BWD_CONFIG.BD,
                            SEG=BWD_CONFIG.SEG, HAS_DHT=False), LANES_BWD_CONFIG.num_warps),
        ]
    if op == "linear_scan":
        from statetrack.ops.linear_scan import triton_impl as ls

        bf16 = ("a", "b", "h", "dh", "da", "db")
        return [
            KernelSpec("ls_fwd", ls._ls_fwd_kernel, _types(ls._ls_fwd_kernel, bf16),
                       dict(BT=ls.BT, BF=ls.BF, HAS_H0=False)),
            KernelSpec("ls_bwd", ls._ls_bwd_kernel, _types(ls._ls_bwd_kernel, bf16),
                       dict(BT=ls.BT, BF=ls.BF, HAS_H0=False, HAS_DHT=True)),
        ]
    raise ValueError(f"op: expected delta_rule, selective_scan or linear_scan, got {op!r}")


def _types(kernel: Any, bf16: tuple[str, ...]) -> dict[str, str]:
    """Runtime arguments: the names in ``bf16`` are bf16 pointers, other pointers float32;
    ``T``, ``Dm``, ``N``, ``F``, ``seg_per_part`` are int32 and ``lo``, ``width`` float32
    (constexprs left out)."""
    types = {}
    for name, param in inspect.signature(kernel.fn).parameters.items():
        if "constexpr" in str(param.annotation):
            continue
        if name in ("T", "Dm", "N", "F", "seg_per_part"):
            types[name] = "i32"
        elif name in ("lo", "width"):
            types[name] = "fp32"
        else:
            types[name] = "*bf16" if name in bf16 else "*fp32"
    return types


def _ptxas() -> Path:
    import triton

    bin_dir = Path(triton.__file__).parent / "backends" / "nvidia" / "bin"
    for name in PTXAS_NAMES:
        if (bin_dir / name).exists():
            return bin_dir / name
    raise FileNotFoundError(f"no ptxas in {bin_dir}: this Triton wheel ships none")


def compile_hopper(spec: KernelSpec, constexprs: dict[str, Any], num_warps: int,
                   maxnreg: int | None = None) -> Any:
    """``spec`` compiled by Triton for sm_90 (its ``asm`` holds the TTGIR and PTX)."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    names = list(inspect.signature(spec.kernel.fn).parameters)
    signature = {n: spec.types.get(n, "constexpr") for n in names}
    source = ASTSource(spec.kernel, signature=signature,
                       constexprs={(names.index(k),): v for k, v in constexprs.items()})
    options = {"num_warps": num_warps, "num_stages": spec.num_stages}
    if maxnreg is not None:
        options["maxnreg"] = maxnreg
    return triton.compile(source, target=GPUTarget("cuda", 90, 32), options=options)


def resources(spec: KernelSpec, constexprs: dict[str, Any], num_warps: int,
              ptxas: Path, maxnreg: int | None = None) -> dict[str, int]:
    """Compile ``spec`` for sm_90a (registers capped at ``maxnreg`` when given) and return
    registers, spill stores/loads and shared bytes."""
    compiled = compile_hopper(spec, constexprs, num_warps, maxnreg)
    with tempfile.TemporaryDirectory() as tmp:
        ptx = Path(tmp) / f"{spec.name}.ptx"
        ptx.write_text(compiled.asm["ptx"])
        cubin = Path(tmp) / f"{spec.name}.cubin"
        report = subprocess.run([str(ptxas), "-arch=sm_90a", "-v", str(ptx), "-o", str(cubin)],
                                capture_output=True, text=True, check=True).stderr
        sass = subprocess.run([str(ptxas.parent / "cuobjdump"), "-sass", str(cubin)],
                              capture_output=True, text=True, check=True).stdout
    number = lambda pattern: int(re.search(pattern, report).group(1))  # noqa: E731
    return {"registers": number(r"Used (\d+) registers"),
            "spill_stores": number(r"(\d+) bytes spill stores"),
            "spill_loads": number(r"(\d+) bytes spill loads"),
            "shared": int(compiled.metadata.shared),
            "sass": sass_counts(sass),
            "moves": moves_by_line(compiled.asm["ptx"])}


SASS_KINDS = ("SHFL", "MUFU", "FFMA", "FMUL", "FADD", "LDG", "STG", "RED", "BAR")


def sass_counts(sass: str) -> dict[str, int]:
    """Static SASS instruction counts (a loop body counts once): all instructions, and those
    whose opcode starts with each of ``SASS_KINDS``."""
    ops = re.findall(r"^\s+/\*[0-9a-f]{4,}\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_.]*)", sass,
                     re.M)
    counts = {"all": len(ops)}
    for kind in SASS_KINDS:
        counts[kind] = sum(op.startswith(kind) for op in ops)
    return counts


MOVES = {"shfl": "shuffle", "st.shared": "st.shared", "stmatrix": "st.shared",
         "ld.shared": "ld.shared", "ldmatrix": "ld.shared", "bar.sync": "barrier",
         "atom": "atomic", "red.": "atomic"}


TRITON_FILES = {"standard.py", "core.py", "math.py", "semantic.py"}


def moves_by_line(ptx: str) -> dict[str, dict[str, int]]:
    """Per ``file:line`` of the kernel's source, the count of each kind in ``MOVES`` among the
    PTX instructions attributed to it (static counts: a loop body counts once)."""
    files = {m.group(1): Path(m.group(2)).name
             for m in re.finditer(r'^\s*\.file\s+(\d+)\s+"([^"]+)"', ptx, re.M)}
    counts: dict[str, dict[str, int]] = {}
    where = "?"
    for line in ptx.splitlines():
        loc = re.match(r"\s*\.loc\s+(\d+)\s+(\d+)", line)
        if loc:
            where = f"{files.get(loc.group(1), '?')}:{loc.group(2)}"
            # inside Triton's own library (tl.sum is standard.py): name the calling line, from
            # the inlining chain in the comment ("// standard.py:293:36 @[ triton_bwd.py:122 ]")
            frames = re.findall(r"([\w.]+\.py):(\d+)", line.partition("//")[2])
            ours = [f"{f}:{n}" for f, n in frames if f not in TRITON_FILES]
            if where.split(":")[0] in TRITON_FILES and ours:
                where = f"{ours[0]} ({where})"
            continue
        op = line.strip().split(maxsplit=1)[0] if line.strip() else ""
        op = op.split("}")[-1]  # predicated: "@%p1 st.shared..." keeps its opcode second
        if op.startswith("@"):
            parts = line.strip().split()
            op = parts[1] if len(parts) > 1 else ""
        for prefix, kind in MOVES.items():
            if op.startswith(prefix):
                row = counts.setdefault(where, {})
                row[kind] = row.get(kind, 0) + 1
                break
    return counts


def _grid(pairs: list[str]) -> list[dict[str, int]]:
    """``["BT=2,4", "BD=32"]`` → every combination as a dict."""
    axes = []
    for pair in pairs:
        key, _, values = pair.partition("=")
        if not values:
            raise ValueError(f"--grid: expected NAME=V1,V2,..., got {pair!r}")
        axes.append([(key, int(v)) for v in values.split(",")])
    return [dict(combo) for combo in itertools.product(*axes)] if axes else [{}]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("op", choices=("delta_rule", "selective_scan", "linear_scan"))
    parser.add_argument("--grid", nargs="*", default=[], metavar="NAME=V1,V2",
                        help="constexprs to vary (default: the launch settings in use)")
    parser.add_argument("--warps", nargs="+", type=int, default=None,
                        help="num_warps to try (default: each kernel's launch setting)")
    parser.add_argument("--maxnreg", nargs="+", type=int, default=None,
                        help="register caps to try (the launch option maxnreg; default: none)")
    parser.add_argument("--head-dim", type=int, default=128, help="delta rule: K = V")
    parser.add_argument("--dtype", choices=("bf16", "fp32"), default="bf16",
                        help="delta rule: input dtype (fp32 takes the exact-float32 dots)")
    parser.add_argument("--kernels", nargs="+", default=None, metavar="NAME",
                        help="only these kernels (e.g. ss_lanes_fwd; default: all of the op)")
    parser.add_argument("--by-line", action="store_true",
                        help="also list shuffles, shared-memory traffic, barriers and atomics "
                             "per source line")
    args = parser.parse_args(argv)
    specs = _specs(args.op, args.head_dim, args.dtype)
    unknown = set(args.kernels or []) - {spec.name for spec in specs}
    if unknown:
        raise ValueError(f"--kernels: {sorted(unknown)} not among {[s.name for s in specs]}")
    chosen = [spec for spec in specs if not args.kernels or spec.name in args.kernels]
    known = {name for spec in chosen for name in spec.constexprs}
    stray = sorted({name for point in _grid(args.grid) for name in point} - known)
    if stray:  # a key no chosen kernel has would be dropped without a word
        raise ValueError(f"--grid: {stray} is not a constexpr of "
                         f"{[spec.name for spec in chosen]} (they have {sorted(known)})")
    ptxas = _ptxas()
    by_line: list[tuple[str, dict[str, dict[str, int]]]] = []
    print("| kernel | settings | warps | maxnreg | registers | spills (st/ld B) | shared B | "
          "programs/SM | SASS (" + ", ".join(("all",) + SASS_KINDS) + ") |")
    print("|---|---|---|---|---|---|---|---|---|")
    for spec in specs:
        if args.kernels and spec.name not in args.kernels:
            continue
        for point, warps, cap in itertools.product(_grid(args.grid),
                                                   args.warps or [spec.num_warps],
                                                   args.maxnreg or [None]):
            settings = {**spec.constexprs, **{k: v for k, v in point.items()
                                              if k in spec.constexprs}}
            r = resources(spec, settings, warps, ptxas, cap)
            shown = ", ".join(f"{k}={settings[k]}" for k in point if k in settings) or "default"
            per_sm = REGISTERS_PER_SM // (r["registers"] * 32 * warps)
            print(f"| {spec.name} | {shown} | {warps} | {cap or '-'} | {r['registers']} | "
                  f"{r['spill_stores']}/{r['spill_loads']} | {r['shared']} | {per_sm} | "
                  + " ".join(str(v) for v in r["sass"].values()) + " |")
            if args.by_line:
                by_line.append((f"{spec.name} ({shown}, {warps} warps)", r["moves"]))
    for title, moves in by_line:
        kinds = sorted({k for row in moves.values() for k in row})
        if not kinds:
            print(f"\n{title}: no shuffle, shared memory, barrier or atomic")
            continue
        print(f"\n{title}: data moved between threads, per source line (PTX, static)\n")
        print("| line | " + " | ".join(kinds) + " |")
        print("|---|" + "---|" * len(kinds))
        for where, row in sorted(moves.items(), key=lambda kv: -sum(kv[1].values())):
            print(f"| {where} | " + " | ".join(str(row.get(k, 0)) for k in kinds) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
