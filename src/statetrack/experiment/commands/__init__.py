"""The experiment's CLI commands; each module exposes ``configure(parser)`` and ``run(args)``."""

from __future__ import annotations

import sys
from pathlib import Path


def finished_runs(paths: list[Path], command: str) -> list[Path] | None:
    """The finished run directories at or below ``paths``, or None after telling the user on
    stderr why there are none (a missing path, or no summary.json below any path)."""
    from statetrack.experiment.rundir import find_run_dirs

    try:
        run_dirs = find_run_dirs(paths)
    except FileNotFoundError as err:
        print(f"statetrack {command}: error: {err}", file=sys.stderr)
        return None
    if not run_dirs:
        print(f"statetrack {command}: error: no finished run (summary.json) under "
              f"{', '.join(map(str, paths))}", file=sys.stderr)
        return None
    return run_dirs
