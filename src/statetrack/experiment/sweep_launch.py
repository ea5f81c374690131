"""Launchers: local processes over GPUs (or CPU workers), and submitit (SLURM, or local for tests).

Both take the points left to run and return the failures; finished points never reach them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from statetrack.experiment.sweep_run import (
    Failure,
    PointRunner,
    Progress,
    Running,
    TrainCommand,
    failure_of,
    run_fraction,
    start,
)
from statetrack.experiment.sweep_spec import Point, SweepError

POLL_S = 0.2


@dataclass(frozen=True)
class Slot:
    """Where one process runs: a label for messages and the environment it gets."""

    label: str
    env: dict[str, str]


def visible_gpus() -> list[str]:
    """Physical ids of the GPUs this process may use (CUDA_VISIBLE_DEVICES narrows them)."""
    import torch

    count = torch.cuda.device_count()
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        ids = [g.strip() for g in listed.split(",") if g.strip()]
        return ids[:count]
    return [str(i) for i in range(count)]


def local_slots(per_gpu: int, workers: int | None, gpus: list[str]) -> list[Slot]:
    """``per_gpu`` slots on each GPU; with no GPU, ``workers`` CPU slots sharing the cores."""
    if per_gpu < 1:
        raise ValueError(f"--per-gpu: expected an integer >= 1, got {per_gpu}")
    cores = os.cpu_count() or 1
    if gpus:
        # The host side of a GPU run samples batches; a share of the cores each is plenty.
        threads = os.environ.get("OMP_NUM_THREADS",
                                 str(max(1, cores // (per_gpu * len(gpus)))))
        # GPU-major within each round, so that n < #GPUs runs land on n different GPUs.
        return [
            Slot(f"gpu{g}.{k}", {"CUDA_VISIBLE_DEVICES": g, "OMP_NUM_THREADS": threads})
            for k in range(per_gpu) for g in gpus
        ]
    n = workers if workers is not None else max(1, cores // 4)
    if n < 1:
        raise ValueError(f"--workers: expected an integer >= 1, got {n}")
    # Each worker gets its share of the cores; without this every run starts one thread per core.
    threads = os.environ.get("OMP_NUM_THREADS", str(max(1, cores // n)))
    env = {"CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": threads}
    return [Slot(f"cpu{i}", env) for i in range(n)]


MPS_CONTROL = "nvidia-cuda-mps-control"
# One tiny CUDA computation through the daemon: `-d` returns at once, and a server that cannot
# start only shows when a client connects.
MPS_PROBE = (sys.executable, "-c",
             "import torch; assert torch.ones(4, device='cuda').sum().item() == 4")


@contextlib.contextmanager
def mps_daemon(folder: Path, probe: Sequence[str] | None = None) -> Iterator[dict[str, str]]:
    """NVIDIA's Multi-Process Service for the sweep's runs: the kernels of several processes on
    one GPU then share its multiprocessors instead of taking turns. Starts a control daemon with
    its pipe and log directories under ``folder``, checks it with one client (``probe``), yields
    the environment the runs need to reach it, and stops it afterwards. Any failure is a
    SweepError that names the daemon's log. ``probe`` defaults to ``MPS_PROBE``."""
    probe = MPS_PROBE if probe is None else probe
    path = shutil.which(MPS_CONTROL)
    if path is None:
        raise SweepError(f"--mps: {MPS_CONTROL} is not on PATH (it comes with the NVIDIA driver)")
    env = {"CUDA_MPS_PIPE_DIRECTORY": str(folder / "pipe"),
           "CUDA_MPS_LOG_DIRECTORY": str(folder / "log")}
    for directory in env.values():
        Path(directory).mkdir(parents=True, exist_ok=True)
    full = {**os.environ, **env}
    started = subprocess.run([path, "-d"], env=full, capture_output=True, text=True)
    if started.returncode != 0:
        raise SweepError(f"--mps: `{MPS_CONTROL} -d` failed ({started.returncode}): "
                         f"{(started.stderr or started.stdout).strip()}")
    try:
        check = subprocess.run(list(probe), env=full, capture_output=True, text=True,
                               timeout=120)
        if check.returncode != 0:
            raise SweepError(f"--mps: a CUDA process could not run through the daemon; see "
                             f"{env['CUDA_MPS_LOG_DIRECTORY']}: {check.stderr.strip()[-500:]}")
        yield env
    finally:
        subprocess.run([path], input="quit\n", env=full, capture_output=True, text=True)


def run_local(
    points: list[Point], command: TrainCommand, slots: list[Slot], progress: Progress
) -> list[Failure]:
    """Run the points as separate processes, one per free slot, until all have ended."""
    queue = deque(points)
    free = list(reversed(slots))
    running: dict[subprocess.Popen, tuple[Point, Slot, float]] = {}
    failures: list[Failure] = []
    try:
        while queue or running:
            for proc in [p for p in running if p.poll() is not None]:
                point, slot, began = running.pop(proc)
                free.append(slot)
                _count(failure_of(point, proc.returncode), time.monotonic() - began, progress,
                       failures)
            while queue and free:
                point, slot = queue.popleft(), free.pop()
                try:
                    running[start(point, command, slot.env)] = (point, slot, time.monotonic())
                except OSError as err:  # e.g. a train command that does not exist
                    free.append(slot)
                    _count(Failure(point, None, f"could not start: {err}"), None, progress,
                           failures)
            now = time.monotonic()
            progress.show([Running(point.name, now - began, run_fraction(point.run_dir))
                           for point, _, began in running.values()], len(queue))
            if running:
                time.sleep(POLL_S)
    except KeyboardInterrupt:
        # Stop only the processes this sweep started; their checkpoints let a re-run resume them.
        for proc in running:
            proc.terminate()
        for proc in running:
            proc.wait()
        raise
    progress.show([], 0, final=True)
    return failures


def make_executor(
    kind: str,
    folder: Path,
    name: str,
    partition: str | None,
    time_min: int,
    gpus_per_job: int,
    cpus_per_job: int | None,
    array_parallelism: int,
) -> Any:
    """A submitit executor: ``slurm`` (a cluster) or ``submitit-local`` (processes here: tests)."""
    try:
        import submitit
    except ImportError:
        raise SweepError(
            f"--launcher {kind} needs submitit: pip install 'statetrack[slurm]'"
        ) from None
    cluster = {"slurm": "slurm", "submitit-local": "local"}[kind]
    executor = submitit.AutoExecutor(folder=str(folder), cluster=cluster)
    params: dict[str, Any] = {
        "name": name,
        "timeout_min": time_min,
        "gpus_per_node": gpus_per_job,
        "tasks_per_node": 1,
        "slurm_array_parallelism": array_parallelism,
    }
    if cpus_per_job is not None:
        params["cpus_per_task"] = cpus_per_job
    if partition is not None:
        params["slurm_partition"] = partition
    executor.update_parameters(**params)
    return executor


def run_submitit(
    points: list[Point], command: TrainCommand, executor: Any, progress: Progress,
    poll_s: float = POLL_S,
) -> list[Failure]:
    """Submit the points as one job array and follow them until every job has ended.

    On SLURM, ``poll_s`` should be seconds, not fractions: each poll may query ``sacct``."""
    runner = PointRunner(command)
    jobs = executor.map_array(runner, points) if points else []
    started: dict[int, float] = {}
    pending = dict(enumerate(jobs))
    failures: list[Failure] = []
    try:
        while pending:
            running: list[Running] = []
            now = time.monotonic()
            for i, job in list(pending.items()):
                if job.done():
                    del pending[i]
                    # A job never seen running has no duration to tell the ETA.
                    elapsed = now - started[i] if i in started else None
                    _collect(points[i], job, elapsed, progress, failures)
                elif job.state.upper() in ("RUNNING", "COMPLETING"):
                    running.append(Running(points[i].name, now - started.setdefault(i, now),
                                           run_fraction(points[i].run_dir)))
            progress.show(running, len(pending) - len(running))
            if pending:
                time.sleep(poll_s)
    except KeyboardInterrupt:
        ids = sorted({str(job.job_id).split("_")[0] for job in pending.values()})
        print(f"\nthe jobs keep running; to stop them: scancel {' '.join(ids)}", flush=True)
        raise
    progress.show([], 0, final=True)
    return failures


def _collect(point: Point, job: Any, elapsed: float | None, progress: Progress,
             failures: list[Failure]) -> None:
    try:
        failure = failure_of(point, job.result())
    except Exception as err:  # any job error is reported; none stops the sweep
        first = (str(err).strip().splitlines() or [""])[0]
        detail = f"{type(err).__name__}: {first} (submitit log: {job.paths.stderr})"
        failure = Failure(point, None, detail)
    _count(failure, elapsed, progress, failures)


def _count(failure: Failure | None, elapsed: float | None, progress: Progress,
           failures: list[Failure]) -> None:
    if failure is None:
        progress.done += 1
        if elapsed is not None:
            progress.durations.append(elapsed)
    else:
        progress.failed += 1
        failures.append(failure)
