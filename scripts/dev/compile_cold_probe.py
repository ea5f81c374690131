"""One compiled training run of a parity model, step by step: the warm-up's time, then every
step's (synchronised), and the graphs captured. Run after emptying the compile caches
(``rm -rf /tmp/torchinductor_* ~/.triton/cache``) it shows where a cold compile lands (GPU;
logs/h200_compile_cold_s18.log, call 7: one step of 26.6 s at step 64, the data's first
shorter batch, where dynamo recompiles with the length dynamic).

    PYTHONPATH=src python scripts/dev/compile_cold_probe.py [--model deltanet_neg]
        [--warmup 30] [--blocks 3]
"""
import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import train_step as ts  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="deltanet_neg", choices=ts.MODELS)
    ap.add_argument("--warmup", type=int, default=30)
    ap.add_argument("--blocks", type=int, default=3, help="lines of 30 timed steps")
    args = ap.parse_args()
    run, params, sums = ts.make_run(args.model, "cuda", True, ["training.compile=true"])
    try:
        t = time.perf_counter()
        ts.steps(run, params, sums, 0, args.warmup)
        ts.sync(run.device)
        print(f"warm-up {args.warmup} steps: {time.perf_counter() - t:.1f} s")
        step = args.warmup
        for _ in range(args.blocks):
            ms = []
            for _ in range(30):
                t = time.perf_counter()
                ts.steps(run, params, sums, step, 1)
                ts.sync(run.device)
                ms.append(1e3 * (time.perf_counter() - t))
                step += 1
            print("steps ms:", " ".join(f"{m:.1f}" for m in ms))
        print("graphs", len(run.graphed.graphs), "replays", run.graphed.replays)
    finally:
        run.batches.close()


if __name__ == "__main__":
    main()
