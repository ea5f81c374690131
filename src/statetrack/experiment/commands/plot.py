"""``statetrack plot RUN_DIR_OR_ROOT... [--out PNG]``: accuracy against length, one line per run."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", type=Path, metavar="RUN_DIR",
                        help="run directories, or roots to search for them (summary.json)")
    parser.add_argument("--out", type=Path, default=None, metavar="PNG",
                        help="the image to write (default: accuracy_by_length.png in the one "
                             "path given, else in the current directory)")
    parser.add_argument("--title", help="the plot's title")
    parser.add_argument("--models", nargs="+", metavar="NAME",
                        help="only runs of these models (the config's name, e.g. mamba "
                             "mamba_neg)")


def run(args: argparse.Namespace) -> int:
    from statetrack.experiment.commands import finished_runs
    from statetrack.experiment.plots import plot_runs

    run_dirs = finished_runs(args.paths, "plot")
    if run_dirs is None:
        return 2
    if args.models:
        run_dirs = _of_models(run_dirs, args.models)
        if run_dirs is None:
            return 2
    out = args.out
    if out is None:
        out = (args.paths[0] if len(args.paths) == 1 else Path()) / "accuracy_by_length.png"
    print(f"plot of {len(run_dirs)} run(s): {plot_runs(run_dirs, out, args.title)}")
    return 0


def _of_models(run_dirs: list[Path], models: list[str]) -> list[Path] | None:
    """The runs whose config name is one of ``models``; None (after saying why) if a name
    matches no run."""
    import yaml

    from statetrack.experiment import rundir

    names = {d: yaml.safe_load((d / rundir.CONFIG).read_text())["name"] for d in run_dirs}
    missing = sorted(set(models) - set(names.values()))
    if missing:
        print(f"statetrack plot: error: --models: no run of {', '.join(missing)}; the runs "
              f"found are of {', '.join(sorted(set(names.values())))}", file=sys.stderr)
        return None
    return [d for d in run_dirs if names[d] in models]
