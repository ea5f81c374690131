"""``statetrack table RUN_DIR_OR_ROOT...``: a markdown table, rows = models, columns = tasks."""

from __future__ import annotations

import argparse
from pathlib import Path


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", type=Path, metavar="RUN_DIR",
                        help="run directories, or roots to search for them (summary.json)")
    parser.add_argument("--out", type=Path, metavar="MD", help="also write the table here")


def run(args: argparse.Namespace) -> int:
    from statetrack.experiment.commands import finished_runs
    from statetrack.experiment.tables import markdown_table

    run_dirs = finished_runs(args.paths, "table")
    if run_dirs is None:
        return 2
    table = markdown_table(run_dirs)
    print(table)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(table + "\n")
    return 0
