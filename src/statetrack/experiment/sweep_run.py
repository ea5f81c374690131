"""What a sweep does for one point: decide its state, build its train command, run it, report it.

A point is done iff ``RUN_DIR/summary.json`` exists. A point whose run directory holds a complete
checkpoint but no summary was interrupted and is resumed (``train --resume RUN_DIR``) rather than
restarted. Anything else is trained from the start; a run directory left by an attempt that died
before its first checkpoint is first moved aside (``RUN_DIR.stale-N``), since ``train`` refuses
to overwrite a run.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import yaml

from statetrack.experiment.rundir import CONFIG, METRICS, SUMMARY
from statetrack.experiment.sweep_spec import Point

DONE, PARTIAL, NOT_STARTED = "done", "partial", "todo"


def point_state(point: Point) -> str:
    """``done`` (a summary.json), ``partial`` (a checkpoint, no summary) or ``todo``."""
    if (point.run_dir / SUMMARY).is_file():
        return DONE
    if not (point.run_dir / CONFIG).is_file():
        return NOT_STARTED
    from statetrack.experiment.checkpoint import checkpoint_dir  # imports torch: only if needed

    return PARTIAL if checkpoint_dir(point.run_dir) is not None else NOT_STARTED


@dataclass(frozen=True)
class TrainCommand:
    """``PREFIX CONFIG --set k=v ... --out RUN_DIR``, or ``PREFIX --resume RUN_DIR``.

    The prefix is ``python -m statetrack train``; tests swap in a stand-in script with the same
    arguments. It is plain data so that it pickles into a submitit job.
    """

    prefix: tuple[str, ...] = (sys.executable, "-m", "statetrack", "train")

    def argv(self, point: Point, resume: bool) -> list[str]:
        if resume:  # the run continues with its own resolved config.yaml
            return [*self.prefix, "--resume", str(point.run_dir)]
        argv = [*self.prefix, str(point.config)]
        for item in point.set_items():
            argv += ["--set", item]
        return [*argv, "--out", str(point.run_dir)]


def open_log(point: Point, argv: list[str]) -> IO[str]:
    """The point's log, appended to, with a header per attempt so retries stay readable."""
    point.log_path.parent.mkdir(parents=True, exist_ok=True)
    log = open(point.log_path, "a")  # closed by the caller once the child holds it
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    log.write(f"=== statetrack sweep {stamp}: {shlex.join(argv)}\n")
    log.flush()
    return log


def move_aside(run_dir: Path) -> Path:
    """Rename a dead attempt's run directory to the first free ``RUN_DIR.stale-N``."""
    for n in range(1, 10_000):
        target = run_dir.with_name(f"{run_dir.name}.stale-{n}")
        if not target.exists():
            shutil.move(str(run_dir), str(target))
            return target
    raise RuntimeError(f"{run_dir}: too many stale attempts beside it; remove them")


def start(point: Point, command: TrainCommand, env: Mapping[str, str]) -> subprocess.Popen:
    """Launch the point's train process (stdout and stderr to its log) and return at once."""
    state = point_state(point)
    stale = move_aside(point.run_dir) if state == NOT_STARTED and point.run_dir.exists() else None
    argv = command.argv(point, resume=state == PARTIAL)
    with open_log(point, argv) as log:
        if stale is not None:
            log.write(f"=== the previous attempt left no checkpoint; moved it to {stale}\n")
            log.flush()
        # The child holds its own copy of the log's descriptor, so closing ours here is safe.
        return subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **env},  # the log shows progress live
        )


@dataclass(frozen=True)
class PointRunner:
    """A submitit job body: run one point to completion in a child process, return its exit code.

    The state is decided when the job starts (not when it was submitted), so a job requeued after
    a SLURM time limit resumes from the checkpoint its previous attempt left.
    """

    command: TrainCommand = field(default_factory=TrainCommand)

    def __call__(self, point: Point) -> int:
        if point_state(point) == DONE:
            return 0
        return start(point, self.command, {}).wait()

    def checkpoint(self, point: Point) -> Any:
        """Called by submitit on a time limit or preemption: requeue the same point."""
        import submitit

        return submitit.helpers.DelayedSubmission(self, point)


@dataclass(frozen=True)
class Failure:
    point: Point
    returncode: int | None  # None when it never started or its job was lost (e.g. cancelled)
    detail: str = ""


def failure_of(point: Point, returncode: int | None, detail: str = "") -> Failure | None:
    """None when the point finished; a train that exits 0 without a summary.json still failed."""
    if returncode == 0 and point_state(point) == DONE:
        return None
    if returncode == 0:
        detail = detail or f"exited 0 but wrote no {SUMMARY}"
    return Failure(point, returncode, detail)


def last_line(path: Path) -> str:
    """The last non-empty line of a log: usually the error that ended the run."""
    try:
        lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1][:200] if lines else ""


def report_failures(failures: list[Failure], stream: IO[str]) -> None:
    for failure in failures:
        code = "lost" if failure.returncode is None else f"exit {failure.returncode}"
        print(f"FAILED {failure.point.name} ({code}); log: {failure.point.log_path}", file=stream)
        detail = failure.detail or last_line(failure.point.log_path)
        if detail:
            print(f"    {detail}", file=stream)


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


_STEPS: dict[Path, int] = {}  # run dir -> training.steps of its config (read once)


def run_fraction(run_dir: Path) -> float | None:
    """How far a run's training has got: the step of the last line of its metrics.jsonl over
    its config's ``training.steps``; None before its first log line (or if unreadable)."""
    try:
        if run_dir not in _STEPS:
            _STEPS[run_dir] = int(yaml.safe_load((run_dir / CONFIG).read_text())
                                  ["training"]["steps"])
        with open(run_dir / METRICS, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 4096))
            last = f.read().decode(errors="replace").strip().splitlines()[-1]
        step = int(json.loads(last)["step"])
    except (OSError, ValueError, KeyError, IndexError, TypeError, yaml.YAMLError):
        return None  # not started, mid-write or malformed: no estimate this time
    steps = _STEPS[run_dir]
    return min(1.0, step / steps) if steps > 0 else None


@dataclass(frozen=True)
class Running:
    """A running point as the live line sees it: a key, seconds since it started and, when its
    metrics tell, the fraction of its training steps done."""

    key: str
    elapsed: float
    fraction: float | None = None


@dataclass
class Progress:
    """The live line: done / running / failed / queued and an ETA.

    The ETA spreads the remaining work over the slots. A running point with a known fraction
    counts its own rate since it was first seen with one (so a resumed run's earlier steps and
    its start-up do not count); the others count the mean duration of finished points. Before
    any point has finished, queued points are costed at the running ones' projected durations.
    """

    name: str
    total: int
    done: int
    slots: int
    stream: IO[str] = field(default_factory=lambda: sys.stderr)
    failed: int = 0
    durations: list[float] = field(default_factory=list)
    _last: str = ""
    # key -> (elapsed, fraction) when a running point was first seen with a fraction
    _seen: dict[str, tuple[float, float]] = field(default_factory=dict)

    def _rate(self, run: Running) -> float | None:
        """Fraction per second since ``run`` was first seen with a fraction."""
        if run.fraction is None:
            return None
        first = self._seen.get(run.key)
        if first is None or run.fraction < first[1]:  # new, or restarted from an earlier step
            self._seen[run.key] = (run.elapsed, run.fraction)
            return None
        seconds, done = run.elapsed - first[0], run.fraction - first[1]
        return done / seconds if seconds > 0 and done > 0 else None

    def line(self, running: list[Running], queued: int) -> str:
        rates = [self._rate(r) for r in running]
        projected = [1.0 / rate for rate in rates if rate]  # seconds for a whole run
        mean = (sum(self.durations) / len(self.durations) if self.durations
                else sum(projected) / len(projected) if projected else None)
        eta = "?"
        if mean is not None:
            left = queued * mean + sum(
                (1.0 - r.fraction) / rate if rate else max(mean - r.elapsed, 0.0)
                for r, rate in zip(running, rates, strict=True))
            eta = _duration(left / max(1, min(self.slots, queued + len(running))))
        return (
            f"[{self.name}] done {self.done}/{self.total} | running {len(running)} | "
            f"failed {self.failed} | queued {queued} | ETA {eta}"
        )

    def show(self, running: list[Running], queued: int, final: bool = False) -> None:
        line = self.line(running, queued)
        if self.stream.isatty():
            self.stream.write("\r" + line + "\033[K" + ("\n" if final else ""))
        elif line.split(" | ETA")[0] != self._last.split(" | ETA")[0]:
            # Not a terminal (a log file, CI): one line per change of the counts only.
            self.stream.write(line + "\n")
        self._last = line
        self.stream.flush()
