"""Where a kernel's time goes, by SASS opcode, from Nsight Compute's per-instruction export.

    python3 scripts/dev/ncu_sass_summary.py REPORT_sass.csv[.gz] [--top 14]

The input is what `ncu --import R.ncu-rep --page source --print-source sass --csv` prints
(`scripts/gpu/scan_run.sh` writes it for each profiled layout). For each kernel in it: the
warp-stall samples, executed instructions and shared-memory wavefronts (and the excess ones,
i.e. bank conflicts) summed per opcode, most sampled first, with each opcode's three main
stall reasons. Session 7 found the backward's acq_rel atomics this way (MEMBAR / ERRBAR /
CCTL around every atomic add).
"""

from __future__ import annotations

import argparse
import collections
import csv
import gzip
import io
import re
from pathlib import Path

SAMPLES = "Warp Stall Sampling (All Samples)"


def opcode(source: str) -> str | None:
    """'@!P0 LDS.U.128 R4, [R2]' -> 'LDS', 'ERRBAR;' -> 'ERRBAR' (predicate, modifiers and
    punctuation dropped)."""
    words = source.split()
    if words and words[0].startswith("@"):
        words = words[1:]
    return words[0].split(".")[0].rstrip(";,") if words else None


def summarize(text: str) -> dict[str, dict[str, dict]]:
    """{kernel: {opcode: {"samples", "instructions", "wavefronts", "excess", "stalls"}}}."""
    out: dict[str, dict[str, dict]] = {}
    for section in re.split(r'^"Kernel Name",', text, flags=re.M)[1:]:
        name, body = section.split("\n", 1)
        per: dict[str, dict] = collections.defaultdict(lambda: {
            "samples": 0, "instructions": 0, "wavefronts": 0, "excess": 0,
            "stalls": collections.Counter()})
        for row in csv.DictReader(io.StringIO(body)):
            op = opcode(row["Source"])
            if op is None:
                continue
            d = per[op]
            d["samples"] += int(row[SAMPLES] or 0)
            d["instructions"] += int(row["Instructions Executed"] or 0)
            d["wavefronts"] += int(row.get("L1 Wavefronts Shared") or 0)
            d["excess"] += int(row.get("L1 Wavefronts Shared Excessive") or 0)
            for key, value in row.items():
                if key.startswith("stall_") and "(Not" not in key and value not in ("", "0"):
                    d["stalls"][key[len("stall_"):]] += int(value)
        out[name.strip().rstrip(",").strip("\"")] = dict(per)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("csv", type=Path)
    parser.add_argument("--top", type=int, default=14)
    args = parser.parse_args(argv)
    raw = args.csv.read_bytes()
    text = (gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw).decode()
    kernels = summarize(text)
    if not kernels:
        print(f"error: no kernel sections in {args.csv}")
        return 2
    for name, per in kernels.items():
        total = sum(d["samples"] for d in per.values()) or 1
        n_inst = sum(d["instructions"] for d in per.values())
        print(f"{name}: {total} stall samples, {n_inst} warp instructions executed")
        print("| opcode | samples | % | instructions | smem wavefronts | excess | main stalls |")
        print("|---|---|---|---|---|---|---|")
        ranked = sorted(per.items(), key=lambda kv: -kv[1]["samples"])[:args.top]
        for op, d in ranked:
            stalls = ", ".join(f"{k} {v}" for k, v in d["stalls"].most_common(3))
            print(f"| {op} | {d['samples']} | {100 * d['samples'] / total:.1f} | "
                  f"{d['instructions']} | {d['wavefronts']} | {d['excess']} | {stalls} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
