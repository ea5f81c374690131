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


def run(args: argparse.Namespace) -> int:
    from statetrack.experiment.plots import plot_runs
    from statetrack.experiment.rundir import find_run_dirs

    try:
        run_dirs = find_run_dirs(args.paths)
    except FileNotFoundError as err:
        print(f"statetrack plot: error: {err}", file=sys.stderr)
        return 2
    if not run_dirs:
        print(f"statetrack plot: error: no finished run (summary.json) under "
              f"{', '.join(map(str, args.paths))}", file=sys.stderr)
        return 2
    out = args.out
    if out is None:
        out = (args.paths[0] if len(args.paths) == 1 else Path()) / "accuracy_by_length.png"
    print(f"plot of {len(run_dirs)} run(s): {plot_runs(run_dirs, out, args.title)}")
    return 0
