"""Eager forward+backward of the selective scan at one shape, timed again and again as
``benchmarks/scan.py`` times it (``time_backend``: do_bench's median, host launch work
included), [0, 1] and [−1, 1] alternating: at (256, 40, 256, 16) the host sets the time and
varies from run to run, so one median says little (GPU; logs/h200_scan_eager_repeat_s12.log).
``--graph``: replayed from a CUDA graph instead (device time, steady to 1%).

    PYTHONPATH=src python scripts/dev/scan_eager_repeat.py [--repeats 5] [--shape B T Dm N]
        [--graph]
"""
import argparse
import statistics
import sys
from pathlib import Path

from statetrack.eig import EigRange

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from scan import time_backend  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--shape", type=int, nargs=4, default=(256, 40, 256, 16))
    ap.add_argument("--graph", action="store_true",
                    help="replayed from a CUDA graph (device time) instead of eager")
    args = ap.parse_args()
    shape = tuple(args.shape)
    ranges = {"[0, 1]": EigRange(0.0, 1.0), "[-1, 1]": EigRange(-1.0, 1.0)}
    times: dict[str, list[float]] = {name: [] for name in ranges}
    for _ in range(args.repeats):
        for name, eig in ranges.items():
            times[name].append(time_backend(shape, eig, "triton", "fwdbwd", 100,
                                            graph=args.graph))
    mode = "graph" if args.graph else "eager"
    for name, ms in times.items():
        print(f"{shape} {name} {mode} fwd+bwd ms: median {statistics.median(ms):.3f}, "
              f"min {min(ms):.3f}, max {max(ms):.3f}; all "
              + " ".join(f"{m:.3f}" for m in ms))


if __name__ == "__main__":
    main()
