"""The ``statetrack`` command line: each subcommand lives in the module that owns its work.

A command module exposes ``configure(parser)`` and ``run(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# name → (module, one-line help). Modules are imported only when their command runs.
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("statetrack.experiment.commands.train", "train a model from a YAML config"),
    "eval": ("statetrack.experiment.commands.evaluate", "re-evaluate a run's checkpoint by length"),
    "sweep": ("statetrack.experiment.sweep", "run a grid of configs × seeds × overrides"),
    "table": ("statetrack.experiment.commands.table", "markdown table of run directories"),
    "plot": ("statetrack.experiment.commands.plot", "accuracy against length, one line per run"),
    "demo": ("statetrack.experiment.commands.demo", "DeltaNet [-1,1] vs [0,1] on parity, on CPU"),
    "bench": ("statetrack.ops.bench", "time the ops' backends on this machine"),
    "tasks": ("statetrack.tasks.cli", "list tasks and show rendered examples"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="statetrack",
        description="Linear RNNs with negative eigenvalues and state-tracking experiments.",
    )
    from statetrack import __version__

    parser.add_argument("--version", action="version", version=f"statetrack {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        p.set_defaults(_module=module)
        importlib.import_module(module).configure(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.command is None:
        parser.print_help()
        return 2
    return int(importlib.import_module(args._module).run(args) or 0)
