"""``statetrack eval RUN_DIR [--min-len L] [--max-len L] [--n N] [--precision P]``: re-evaluate a
checkpoint."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    parser.add_argument("--min-len", type=int, help="shortest task length (default: the run's)")
    parser.add_argument("--max-len", type=int, help="longest task length (default: the run's)")
    parser.add_argument("--n", type=int, help="number of sequences (default: the run's)")
    parser.add_argument("--batch-size", type=int, help="sequences per forward pass")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--precision", choices=("auto", "bf16", "fp32"),
                        help="bf16 autocast, float32, or auto (bf16 on CUDA, float32 on the "
                             "CPU); default: the run's training precision")
    parser.add_argument("--out", type=Path, metavar="CSV",
                        help="where to write the per-length CSV (default: in RUN_DIR)")


def run(args: argparse.Namespace) -> int:
    from statetrack.experiment import rundir
    from statetrack.experiment.checkpoint import load_weights
    from statetrack.experiment.config import ConfigError, load_config
    from statetrack.experiment.evaluation import TEST_STREAM, data_rng, evaluate
    from statetrack.experiment.trainer import build, resolve_device

    path = args.run_dir / rundir.CONFIG
    try:
        overrides = [f"evaluation.{key}={value}" for key, value in
                     (("min_len", args.min_len), ("max_len", args.max_len), ("n", args.n),
                      ("batch_size", args.batch_size)) if value is not None]
        if not path.is_file():
            raise ConfigError(f"{args.run_dir}: not a run directory (no {rundir.CONFIG})")
        if args.precision is not None:
            overrides.append(f"training.precision={args.precision}")
        config = load_config(path, overrides + [f"training.device={args.device}"])
        device = resolve_device(config.training.device)
        task, model = build(config, f" in {path}")
        load_weights(args.run_dir, model)
    except (ConfigError, FileNotFoundError) as err:
        print(f"statetrack eval: error: {err}", file=sys.stderr)
        return 2
    e = config.evaluation
    result = evaluate(model.to(device), task, min_len=e.min_len, max_len=e.max_len, n=e.n,
                      batch_size=e.batch_size, rng=data_rng(e.seed, TEST_STREAM, 0),
                      device=device, precision=config.training.precision)
    suffix = "" if args.precision is None else f"_{args.precision}"
    out = args.out or args.run_dir / f"eval_{e.min_len}-{e.max_len}_n{e.n}{suffix}.csv"
    rundir.write_eval_csv(out, result.rows())
    print(f"{config.name} on {config.task.name}: scaled accuracy {result.scaled_accuracy:.3f} "
          f"(accuracy {result.accuracy:.3f}) on {e.n} sequences of lengths "
          f"{e.min_len}–{e.max_len}")
    print(f"per-length results: {out}")
    return 0
