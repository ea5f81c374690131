"""``statetrack sweep SWEEP.yaml``: a grid of runs (configs × variants × grid × seeds), resumable.

Each point is a separate ``statetrack train`` process writing its own run directory under the
sweep's root (``out:`` in the file, or ``--out``). Finished points (a ``summary.json``) are
skipped, interrupted ones (a checkpoint) resumed, so re-running a sweep continues it. A failing
point is reported with its log (``RUN_DIR.log``) and never stops the others. The sweep file's
format is documented in :mod:`statetrack.experiment.sweep_spec`.
"""

from __future__ import annotations

import argparse
import fnmatch
import os
import shlex
import sys
from collections import Counter
from pathlib import Path

from statetrack.experiment.sweep_launch import (
    Slot,
    local_slots,
    make_executor,
    mps_daemon,
    run_local,
    run_submitit,
    visible_gpus,
)
from statetrack.experiment.sweep_run import (
    DONE,
    PARTIAL,
    Failure,
    Progress,
    TrainCommand,
    point_state,
    report_failures,
)
from statetrack.experiment.sweep_spec import (
    Point,
    SweepError,
    expand,
    load_sweep,
    parse_set,
)

LAUNCHERS = ("local", "slurm", "submitit-local")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sweep", type=Path, help="the sweep file (YAML)")
    parser.add_argument("--out", type=Path, help="root of the run directories (default: out:)")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override applied to every point, e.g. --set training.steps=100 (repeatable)",
    )
    parser.add_argument("--only", action="append", default=[], metavar="PATTERN",
                        help="run only points whose name matches, e.g. 'parity/*' (repeatable)")
    parser.add_argument("--first", action="append", default=[], metavar="PATTERN",
                        help="start points whose name matches before the others, in the "
                        "order of the patterns, e.g. 'parity/*' (repeatable)")
    parser.add_argument("--dry-run", action="store_true",
                        help="list the points and their state (done / partial / todo) and stop")
    parser.add_argument(
        "--launcher", choices=LAUNCHERS, default="local",
        help="local: processes on this machine; slurm: a submitit job array; "
        "submitit-local: submitit's local executor (for tests)",
    )
    local = parser.add_argument_group("local launcher")
    local.add_argument("--per-gpu", type=int, default=1, metavar="K",
                       help="runs at a time on each visible GPU (default 1)")
    local.add_argument("--workers", type=int, metavar="N",
                       help="runs at a time when there is no GPU (default: cores / 4)")
    local.add_argument("--mps", action="store_true",
                       help="run the GPU runs through NVIDIA's Multi-Process Service (a daemon "
                       "started for the sweep and stopped after it), so that --per-gpu K runs "
                       "share a GPU's multiprocessors instead of taking turns")
    slurm = parser.add_argument_group("slurm launcher")
    slurm.add_argument("--partition", help="SLURM partition")
    slurm.add_argument("--time", type=int, default=240, metavar="MIN",
                       help="time limit of each job in minutes; a job that hits it is requeued "
                       "and resumes from its checkpoint (default 240)")
    slurm.add_argument("--gpus-per-job", type=int, default=1, metavar="G", help="default 1")
    slurm.add_argument("--cpus-per-job", type=int, metavar="C", help="default: the cluster's")
    slurm.add_argument("--array-parallelism", type=int, default=32, metavar="N",
                       help="jobs of the array running at once (default 32)")
    # The train command's prefix, for tests that stand in a fake trainer.
    parser.add_argument("--train-command", help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    try:
        check_options(args)
        sweep = load_sweep(args.sweep)
        root = (args.out if args.out is not None else sweep.out).absolute()
        points = expand(sweep, root, parse_set(args.overrides))
        if args.only:
            points = [p for p in points if any(fnmatch.fnmatchcase(p.name, o) for o in args.only)]
            if not points:
                raise SweepError(f"--only {' '.join(args.only)}: no point of the sweep matches")
        points = prioritise(points, args.first)
        check_points(points)
    except SweepError as err:
        print(f"statetrack sweep: {err}", file=sys.stderr)
        return 2
    states = {p.name: point_state(p) for p in points}
    if args.dry_run:
        print_points(points, states)
        return 0
    todo = [p for p in points if states[p.name] != DONE]
    counts = Counter(states.values())
    print(
        f"[{sweep.name}] {len(points)} points under {root}: {counts[DONE]} done, "
        f"{counts[PARTIAL]} to resume, {len(todo) - counts[PARTIAL]} to start",
        file=sys.stderr,
    )
    prefix = shlex.split(args.train_command) if args.train_command else None
    command = TrainCommand(tuple(prefix)) if prefix else TrainCommand()
    progress = Progress(sweep.name, len(points), counts[DONE], slots=1)
    try:
        failures = launch(args, sweep.name, root, todo, command, progress)
    except SweepError as err:  # e.g. submitit is not installed
        print(f"statetrack sweep: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\n[{sweep.name}] interrupted; run the same command again to resume",
              file=sys.stderr)
        return 130
    report_failures(failures, sys.stderr)
    if failures:
        print(f"[{sweep.name}] {len(failures)} of {len(todo)} runs failed", file=sys.stderr)
        return 1
    return 0


def prioritise(points: list[Point], first: list[str]) -> list[Point]:
    """Points matching the first pattern, then the second, ..., then the rest; the sweep's own
    order is kept within each group. A pattern that matches nothing is an error (a typo)."""
    rank: dict[str, int] = {}
    for i, pattern in enumerate(first):
        matched = [p.name for p in points if fnmatch.fnmatchcase(p.name, pattern)]
        if not matched:
            raise SweepError(f"--first {pattern}: no point of the sweep matches")
        for name in matched:
            rank.setdefault(name, i)
    return sorted(points, key=lambda p: rank.get(p.name, len(first)))  # stable


def check_options(args: argparse.Namespace) -> None:
    """Every count option is checked before anything is read or launched."""
    minimum = {"--per-gpu": (args.per_gpu, 1), "--workers": (args.workers, 1),
               "--time": (args.time, 1), "--gpus-per-job": (args.gpus_per_job, 0),
               "--cpus-per-job": (args.cpus_per_job, 1),
               "--array-parallelism": (args.array_parallelism, 1)}
    for flag, (value, lo) in minimum.items():
        if value is not None and value < lo:
            raise SweepError(f"{flag}: expected an integer >= {lo}, got {value}")
    if args.mps and args.launcher != "local":
        raise SweepError(f"--mps: only the local launcher starts MPS, not {args.launcher}")


def check_points(points: list[Point]) -> None:
    """Validate every point's config with its overrides now, not one failed run at a time."""
    from statetrack.experiment.config import ConfigError, load_config

    for point in points:
        try:
            load_config(point.config, point.set_items())
        except ConfigError as err:
            raise SweepError(f"point {point.name}: {err}") from None


def launch(
    args: argparse.Namespace,
    name: str,
    root: Path,
    todo: list[Point],
    command: TrainCommand,
    progress: Progress,
) -> list[Failure]:
    """Hand the points left to run to the chosen launcher; returns the failures."""
    if args.launcher == "local":
        gpus = visible_gpus()
        slots = local_slots(args.per_gpu, args.workers, gpus)
        progress.slots = len(slots)
        if not args.mps:
            return run_local(todo, command, slots, progress)
        if not gpus:
            raise SweepError("--mps: no GPU is visible (MPS shares GPUs between processes)")
        with mps_daemon(root / ".mps") as env:
            return run_local(todo, command, [Slot(s.label, {**s.env, **env}) for s in slots],
                             progress)
    executor = make_executor(
        args.launcher, root / ".submitit", name, args.partition, args.time,
        args.gpus_per_job if args.launcher == "slurm" else 0, args.cpus_per_job,
        args.array_parallelism,
    )
    progress.slots = args.array_parallelism
    return run_submitit(todo, command, executor, progress,
                        poll_s=10.0 if args.launcher == "slurm" else 0.2)


def print_points(points: list[Point], states: dict[str, str]) -> None:
    """One line per point: state, run directory name, config and overrides."""
    width = max((len(p.name) for p in points), default=0)
    for p in points:
        sets = " ".join(p.set_items())
        print(f"{states[p.name]:<8}{p.name:<{width}}  {os.path.relpath(p.config)}  {sets}")
    counts = Counter(states.values())
    summary = ", ".join(f"{counts[s]} {s}" for s in ("done", "partial", "todo"))
    print(f"{len(points)} points: {summary}")
