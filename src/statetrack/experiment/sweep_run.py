"""What a sweep does for one point: decide its state, build its train command, run it, report it.

A point is done iff ``RUN_DIR/summary.json`` exists. A point whose run directory holds a complete
checkpoint but no summary was interrupted and is resumed (``train --resume RUN_DIR``) rather than
restarted. Anything else is trained from the start; a run directory left by an attempt that died
before its first checkpoint is first moved aside (``RUN_DIR.stale-N``), since ``train`` refuses
to overwrite a run.
"""

from __future__ import annotations

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

from statetrack.experiment.rundir import CONFIG, SUMMARY
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


@dataclass
class Progress:
    """The live line: done / running / failed / queued and an ETA from finished runs' durations."""

    name: str
    total: int
    done: int
    slots: int
    stream: IO[str] = field(default_factory=lambda: sys.stderr)
    failed: int = 0
    durations: list[float] = field(default_factory=list)
    _last: str = ""

    def line(self, running: list[float], queued: int) -> str:
        """``running`` holds the elapsed seconds of each running point."""
        eta = "?"
        if self.durations:
            mean = sum(self.durations) / len(self.durations)
            left = queued * mean + sum(max(mean - t, 0.0) for t in running)
            eta = _duration(left / max(1, min(self.slots, queued + len(running))))
        return (
            f"[{self.name}] done {self.done}/{self.total} | running {len(running)} | "
            f"failed {self.failed} | queued {queued} | ETA {eta}"
        )

    def show(self, running: list[float], queued: int, final: bool = False) -> None:
        line = self.line(running, queued)
        if self.stream.isatty():
            self.stream.write("\r" + line + "\033[K" + ("\n" if final else ""))
        elif line.split(" | ETA")[0] != self._last.split(" | ETA")[0]:
            # Not a terminal (a log file, CI): one line per change of the counts only.
            self.stream.write(line + "\n")
        self._last = line
        self.stream.flush()
