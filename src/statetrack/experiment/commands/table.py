"""``statetrack table RUN_DIR_OR_ROOT...``: a markdown table, rows = models, columns = tasks."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", type=Path, metavar="RUN_DIR",
                        help="run directories, or roots to search for them (summary.json)")
    parser.add_argument("--out", type=Path, metavar="MD", help="also write the table here")


def run(args: argparse.Namespace) -> int:
    from statetrack.experiment.rundir import find_run_dirs
    from statetrack.experiment.tables import markdown_table

    try:
        run_dirs = find_run_dirs(args.paths)
    except FileNotFoundError as err:
        print(f"statetrack table: error: {err}", file=sys.stderr)
        return 2
    if not run_dirs:
        print(f"statetrack table: error: no finished run (summary.json) under "
              f"{', '.join(map(str, args.paths))}", file=sys.stderr)
        return 2
    table = markdown_table(run_dirs)
    print(table)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(table + "\n")
    return 0
