"""A few selective-scan forward+backward calls for Nsight Compute to profile (bf16, [−1, 1]):
``profile_kernels.scan_step`` under the chosen layout.

    ncu --kernel-name regex:ss_ --launch-skip 2 --launch-count 2 --set full \
        python scripts/gpu/scan_ncu.py 8,2048,2048,16 [--layout chunk_pipe]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> None:
    import profile_kernels  # scripts/gpu/profile_kernels.py (it puts benchmarks/ on the path)
    import scan as bench  # benchmarks/scan.py

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("shape", help="B,T,Dm,N")
    ap.add_argument("--layout", default="chunk")
    ap.add_argument("--calls", type=int, default=3)
    args = ap.parse_args()
    bench.set_layout(args.layout)
    step = profile_kernels.scan_step(tuple(int(v) for v in args.shape.split(",")), "triton")
    for _ in range(args.calls):
        step()
    torch.cuda.synchronize()


if __name__ == "__main__":
    main()
