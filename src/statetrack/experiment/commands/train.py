"""``statetrack train CONFIG [--set section.key=value ...] [--out DIR] [--resume RUN_DIR]``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from statetrack.experiment.config import ConfigError, ExperimentConfig, load_config
from statetrack.experiment.rundir import CONFIG, SUMMARY


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", nargs="?", type=Path, help="the YAML config of the run")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="SECTION.KEY=VALUE",
                        help="override a config value, e.g. --set training.lr=3e-4 (repeatable)")
    parser.add_argument("--out", type=Path, metavar="DIR",
                        help="the run directory (default: runs/TASK/NAME/seedSEED)")
    parser.add_argument("--resume", type=Path, metavar="RUN_DIR",
                        help="continue an interrupted run from its last checkpoint")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or log lines")


def default_run_dir(config: ExperimentConfig) -> Path:
    return Path("runs") / config.task.name / config.name / f"seed{config.training.seed}"


def run(args: argparse.Namespace) -> int:
    from statetrack.experiment.trainer import TrainingDiverged, train

    try:
        config, run_dir, where = _resolve(args)
        if args.resume and (run_dir / SUMMARY).exists():
            print(f"{run_dir} has finished already (summary.json exists)")
            return 0
        summary = train(config, run_dir, resume=args.resume is not None, quiet=args.quiet,
                        where=where)
    except (ConfigError, FileNotFoundError) as err:  # FileNotFoundError: resume, no checkpoint
        print(f"statetrack train: error: {err}", file=sys.stderr)
        return 2
    except TrainingDiverged as err:
        print(f"statetrack train: {err}", file=sys.stderr)
        return 1
    print_summary(summary, run_dir)
    return 0


def _resolve(args: argparse.Namespace) -> tuple[ExperimentConfig, Path, str]:
    """The config, the run directory and ' in FILE' for messages; checks the arguments."""
    if args.resume is not None:
        if args.config is not None or args.overrides or args.out is not None:
            raise ConfigError("--resume continues a run with its own config.yaml; "
                              "CONFIG, --set and --out are not allowed with it")
        path = args.resume / CONFIG
        if not path.is_file():
            raise ConfigError(f"--resume {args.resume}: not a run directory (no {CONFIG})")
        return load_config(path), args.resume, f" in {path}"
    if args.config is None:
        raise ConfigError("a CONFIG file is required (or --resume RUN_DIR)")
    config = load_config(args.config, args.overrides)
    run_dir = args.out if args.out is not None else default_run_dir(config)
    if (run_dir / CONFIG).exists():
        raise ConfigError(f"run directory {run_dir} holds a run already; continue it with "
                          f"--resume {run_dir} or choose another with --out")
    return config, run_dir, f" in {args.config}"


def print_summary(summary: dict, run_dir: Path) -> None:
    print(f"{summary['model']} on {summary['task']} (seed {summary['seed']}): scaled accuracy "
          f"{summary['scaled_accuracy']:.3f} (accuracy {summary['accuracy']:.3f}) on lengths "
          f"{summary['eval_min_len']}–{summary['eval_max_len']}, {summary['steps']} steps in "
          f"{summary['wall_seconds']:.1f} s on {summary['device']}")
    print(f"run directory: {run_dir}")

