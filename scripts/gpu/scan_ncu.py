"""A few selective-scan forward+backward calls for Nsight Compute to profile (bf16, [−1, 1]).

    ncu --kernel-name regex:ss_ --launch-skip 2 --launch-count 2 --set full \
        python scripts/gpu/scan_ncu.py 8,2048,2048,16 [--layout chunk_pipe]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))


def main() -> None:
    import scan as bench  # benchmarks/scan.py

    from statetrack.eig import EigRange
    from statetrack.ops.selective_scan import selective_scan

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("shape", help="B,T,Dm,N")
    ap.add_argument("--layout", default="chunk")
    ap.add_argument("--calls", type=int, default=3)
    args = ap.parse_args()
    bench.set_layout(args.layout)
    shape = tuple(int(v) for v in args.shape.split(","))
    x, dt, A, B, C, D, z, bias = bench.make_inputs(shape, grad=True)
    dy = torch.randn_like(x)
    for _ in range(args.calls):
        y = selective_scan(x, dt, A, B, C, D=D, z=z, dt_bias=bias,
                           eig_range=EigRange(-1.0, 1.0), backend="triton")[0]
        y.backward(dy)
    torch.cuda.synchronize()


if __name__ == "__main__":
    main()
