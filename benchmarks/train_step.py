"""Training-step time of each paper model: CUDA graphs against the eager step, and where the
device time goes.

For each model's parity config (configs/chomsky/parity/*.yaml: batch 256, lengths 3–40, bf16
autocast on CUDA), the trainer's own step (`statetrack.experiment.trainer._train_step`, fresh
batch, AdamW) runs ``--warmup`` untimed steps then ``--steps`` timed ones, eagerly and with
``training.cuda_graphs``; the table shows ms/step, steps/s and the ratio graphed/eager.
``--profile N`` also prints, for each model, the N CUDA kernels (CPU ops on a CPU) that take
the most time over 20 graphed steps, so the next optimisation starts from a measurement.

``--concurrent K ...`` also runs K copies of each model's step at once, in K processes (each
with CUDA graphs on a GPU), for ``--seconds`` after all have warmed up, and reports their
summed steps/s: how runs packed on one GPU share it (``statetrack sweep --per-gpu K``), with
``--mps`` through NVIDIA's Multi-Process Service as the Table 3 calls run them. Put 1 among
the K for the ratio to one copy alone.

    PYTHONPATH=src python benchmarks/train_step.py --out benchmarks/results/h200_train_step.json \
        [--models deltanet_neg mamba_neg] [--profile 15] [--concurrent 1 8 16 --mps] \
        [--set training.batch_size=64]

Records: ``{"op": "train_step", "model", "config", "mode": "eager"|"graphs", "ms", "steps_per_s",
"device"}``; with --profile, ``{"op": "train_step_profile", "model", "kernels": [[name,
total_ms, calls], ...], "kernels_per_step", "kernel_ms_per_step"}``; with --concurrent,
``{"op": "train_step_concurrent", "model", "k", "mps", "seconds", "steps_per_s": [one per
copy], "total_steps_per_s", "device"}``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from statetrack.experiment import trainer
from statetrack.experiment.checkpoint import TrainState
from statetrack.experiment.config import load_config
from statetrack.experiment.schedule import learning_rate
from statetrack.tasks import NO_LOSS

MODELS = ("deltanet_neg", "deltanet", "mamba_neg", "mamba", "transformer", "mlstm", "slstm")
CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "chomsky" / "parity"


def make_run(name: str, device: str, graphs: bool, overrides: list[str] | None = None
             ) -> tuple[trainer.Run, list, dict]:
    """The trainer's own run, ready to step (as ``statetrack train`` sets it up); ``overrides``
    are ``--set`` items applied first."""
    config = load_config(CONFIGS / f"{name}.yaml",
                         [*(overrides or []), f"training.device={device}",
                          f"training.cuda_graphs={str(graphs)}"])
    run = trainer.make_run(config, Path("/nonexistent"), quiet=True)  # nothing is written
    state = TrainState(0, 0.0, {"loss": 0.0, "correct": 0, "labelled": 0, "steps": 0})
    params, sums = trainer.start_steps(run, state)
    return run, params, sums


def steps(run: trainer.Run, params: list, sums: dict, start: int, n: int) -> None:
    t = run.config.training
    for step in range(start, start + n):
        lr = learning_rate(step, lr=t.lr, steps=t.steps, warmup_steps=t.warmup_steps,
                           final_lr_factor=t.final_lr_factor)
        trainer._train_step(run, step, lr, params, sums)


def warm_up(run: trainer.Run, params: list, sums: dict, n: int) -> int:
    """``n`` untimed steps; with ``training.compile``, then one more on its batch padded one
    column longer (pad tokens, no loss). Returns the next step.

    A second padded length makes dynamo recompile the forward with the length dynamic, which
    serves every later length. A run meets it at its first batch shorter than the rest (at
    batch 256 about 1 step in 1,000 for parity; DeltaNet [−1, 1]'s parity data at step 64).
    With cold compile caches that recompile took 26.6 s of one step on the H200 (session 18):
    inside a timed window it is the window (session 17's 8 packed compiled copies made 1.1
    steps/s each). Here it happens before the timing."""
    steps(run, params, sums, 0, n)
    if not run.config.training.compile:
        return n
    draw, pad = run.batches.get, run.task.pad_id

    def longer(step: int) -> tuple[torch.Tensor, torch.Tensor]:
        tokens, target = draw(step)
        return (torch.nn.functional.pad(tokens, (0, 1), value=pad),
                torch.nn.functional.pad(target, (0, 1), value=NO_LOSS))
    run.batches.get = longer
    try:
        steps(run, params, sums, n, 1)
    finally:
        del run.batches.get  # the Batches method again
    return n + 1


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_model(name: str, device: str, graphs: bool, warmup: int, n: int,
               overrides: list[str] | None = None) -> float:
    """ms per training step (median of 3 windows of n // 3 steps)."""
    run, params, sums = make_run(name, device, graphs, overrides)
    try:
        at = warm_up(run, params, sums, warmup)
        sync(run.device)
        windows = []
        for _ in range(3):
            begin = time.perf_counter()
            steps(run, params, sums, at, n // 3)
            sync(run.device)
            windows.append((time.perf_counter() - begin) * 1e3 / (n // 3))
            at += n // 3
        return sorted(windows)[1]
    finally:
        run.batches.close()


def profile_model(name: str, device: str, warmup: int, top: int,
                  overrides: list[str] | None = None) -> tuple[list[list], float, float]:
    """The ``top`` kernels (CUDA) or ops (CPU) by total time over 20 graphed steps, and the
    number of them and their summed time (ms) per step, over all."""
    from torch.profiler import ProfilerActivity, profile

    run, params, sums = make_run(name, device, graphs=True, overrides=overrides)
    cuda = run.device.type == "cuda"
    try:
        at = warm_up(run, params, sums, warmup)
        sync(run.device)
        activities = [ProfilerActivity.CUDA] if cuda else [ProfilerActivity.CPU]
        with profile(activities=activities) as prof:
            steps(run, params, sums, at, 20)
            sync(run.device)
    finally:
        run.batches.close()
    rows = []
    for e in prof.key_averages():
        total = e.device_time_total if cuda else e.self_cpu_time_total
        if total > 0:
            rows.append([e.key, total / 1e3 / 20, e.count / 20])  # ms and calls per step
    rows.sort(key=lambda r: -r[1])
    return rows[:top], sum(r[2] for r in rows), sum(r[1] for r in rows)


def worker(name: str, device: str, warmup: int, seconds: float, go: Path,
           overrides: list[str]) -> None:
    """One copy of ``--concurrent``: warm up, mark itself ready (``go``'s folder), wait for
    ``go``, then step for ``seconds`` and print ``{"steps", "seconds"}`` (the time until the
    device has run them)."""
    graphs = device.startswith("cuda")
    run, params, sums = make_run(name, device, graphs, overrides)
    try:
        at = warm_up(run, params, sums, warmup)
        sync(run.device)
        (go.parent / f"ready.{os.getpid()}").touch()
        while not go.exists():
            time.sleep(0.001)
        begin, done = time.perf_counter(), 0
        while time.perf_counter() - begin < seconds:
            steps(run, params, sums, at + done, 1)
            done += 1
        sync(run.device)
        print(json.dumps({"steps": done, "seconds": time.perf_counter() - begin}), flush=True)
    finally:
        run.batches.close()


def concurrent(name: str, device: str, k: int, warmup: int, seconds: float,
               overrides: list[str], env: dict[str, str], timeout: float = 600.0) -> list[float]:
    """steps/s of each of k copies of the model's step run at once (``worker``), timed over
    the same ``seconds`` once all have warmed up. A copy that fails is an error naming its
    output."""
    with tempfile.TemporaryDirectory() as folder:
        go = Path(folder) / "go"
        command = [sys.executable, __file__, "--worker", name, "--device", device,
                   "--warmup", str(warmup), "--seconds", str(seconds), "--go", str(go)]
        for item in overrides:
            command += ["--set", item]
        procs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True, env={**os.environ, **env}) for _ in range(k)]
        try:
            deadline = time.monotonic() + timeout
            while len(list(Path(folder).glob("ready.*"))) < k:
                failed = [p for p in procs if p.poll() not in (None, 0)]
                if failed or time.monotonic() > deadline:
                    raise RuntimeError(f"--concurrent {k}: a copy of {name} did not get ready: "
                                       + (failed[0].communicate()[1][-2000:] if failed
                                          else f"timed out after {timeout:.0f} s"))
                time.sleep(0.05)
            go.touch()
            rates = []
            for proc in procs:
                out, err = proc.communicate(timeout=seconds + timeout)
                if proc.returncode != 0:
                    raise RuntimeError(f"--concurrent {k}: a copy of {name} failed "
                                       f"({proc.returncode}): {err[-2000:]}")
                record = json.loads(out.strip().splitlines()[-1])
                rates.append(record["steps"] / record["seconds"])
            return rates
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--warmup", type=int, default=30, help="untimed steps (default 30)")
    parser.add_argument("--steps", type=int, default=150, help="timed steps (default 150)")
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="also list the N kernels taking the most time per step")
    parser.add_argument("--concurrent", type=int, nargs="+", default=[], metavar="K",
                        help="also run K copies of each model's step at once (see above)")
    parser.add_argument("--seconds", type=float, default=15.0,
                        help="--concurrent: seconds each copy steps, timed (default 15)")
    parser.add_argument("--mps", action="store_true",
                        help="--concurrent: through NVIDIA's Multi-Process Service")
    parser.add_argument("--only-concurrent", action="store_true",
                        help="skip the table of one step alone (and --profile): only --concurrent")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="SECTION.KEY=VALUE",
                        help="override a value of each config (repeatable)")
    parser.add_argument("--out", type=Path, help="JSON records (default: print only)")
    parser.add_argument("--table", type=Path, metavar="JSON",
                        help="print the table of one step alone from a run's JSON, and exit")
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # one copy of --concurrent
    parser.add_argument("--go", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.table:
        try:
            print(markdown_table(json.loads(args.table.read_text())))
        except (OSError, ValueError) as err:  # json.JSONDecodeError is a ValueError
            parser.error(f"--table {args.table}: {err}")
        return 0
    if args.worker:
        worker(args.worker, args.device, args.warmup, args.seconds, args.go, args.overrides)
        return 0
    if args.steps < 3 or args.warmup < 0:
        parser.error(f"--steps must be >= 3 and --warmup >= 0, got {args.steps}, {args.warmup}")
    if any(k < 1 for k in args.concurrent) or args.seconds <= 0:
        parser.error(f"--concurrent needs counts >= 1 and --seconds > 0, got {args.concurrent}, "
                     f"{args.seconds}")
    if (args.mps or args.only_concurrent) and not args.concurrent:
        parser.error("--mps and --only-concurrent apply to --concurrent only")
    where = (torch.cuda.get_device_name() if args.device == "cuda"
             else f"cpu ({torch.get_num_threads()} threads)")
    records: list[dict] = []
    if not args.only_concurrent:
        records += report_alone(args, where)
    if args.concurrent:
        records += report_concurrent(args, where)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(records, indent=1) + "\n")
        print(f"\nwrote {args.out}")
    return 0


def table_head(modes: list[str]) -> list[str]:
    return [f"| model | {' | '.join(f'{m} ms (steps/s)' for m in modes)} | graphs/eager |",
            f"|---|{'---|' * len(modes)}---|"]


def table_row(name: str, ms: dict[str, float]) -> str:
    """One model's row: ms (steps/s) per mode, and graphs over eager where both ran."""
    ratio = f"{ms['graphs'] / ms['eager']:.2f}" if "graphs" in ms and "eager" in ms else "—"
    cells = " | ".join(f"{v:.2f} ({1e3 / v:.0f})" for v in ms.values())
    return f"| {name} | {cells} | {ratio} |"


def markdown_table(records: list[dict]) -> str:
    """The table of one step alone, as the run printed it, from its JSON records."""
    ms: dict[str, dict[str, float]] = {}
    for record in records:
        if record.get("op") == "train_step":
            ms.setdefault(record["model"], {})[record["mode"]] = record["ms"]
    if not ms:
        raise ValueError("no train_step records (the table of one step alone) in the JSON")
    modes = list(next(iter(ms.values())))
    return "\n".join([*table_head(modes), *(table_row(name, v) for name, v in ms.items())])


def report_alone(args: argparse.Namespace, where: str) -> list[dict]:
    """The table of one step alone (eager, and from CUDA graphs on a GPU) per model, then the
    --profile lists, and their records."""
    modes = [("eager", False), ("graphs", True)] if args.device == "cuda" else [("eager", False)]
    records: list[dict] = []
    print(f"training step, parity configs, {where}")
    print("\n".join(table_head([mode for mode, _ in modes])))
    for name in args.models:
        ms = {mode: time_model(name, args.device, graphs, args.warmup, args.steps,
                               args.overrides)
              for mode, graphs in modes}
        for mode, value in ms.items():
            records.append({"op": "train_step", "model": name, "config": f"parity/{name}.yaml",
                            "mode": mode, "ms": value, "steps_per_s": 1e3 / value,
                            "overrides": args.overrides, "device": where})
        print(table_row(name, ms), flush=True)
    for name in args.models if args.profile else []:
        kernels, count, total = profile_model(name, args.device, args.warmup, args.profile,
                                              args.overrides)
        records.append({"op": "train_step_profile", "model": name, "kernels": kernels,
                        "kernels_per_step": count, "kernel_ms_per_step": total,
                        "device": where})
        what = "kernels" if args.device.startswith("cuda") else "CPU ops (nested ones too)"
        print(f"\n{name}: {count:.0f} {what} a step taking {total:.3f} ms in all; the top "
              f"{args.profile} by time per step")
        for key, ms_per_step, calls in kernels:
            print(f"  {ms_per_step:8.3f} ms  {calls:6.1f}×  {key[:110]}")
    return records


def report_concurrent(args: argparse.Namespace, where: str) -> list[dict]:
    """The --concurrent table and records: per model and K, the copies' steps/s and their sum,
    and the sum against one copy alone where 1 is among the K."""
    from statetrack.experiment.sweep_launch import mps_daemon

    records = []
    print(f"\nconcurrent copies, {args.seconds:g} s each{' under MPS' if args.mps else ''}")
    print("| model | copies | steps/s each (min–max) | summed steps/s | × one alone |")
    print("|---|---|---|---|---|")
    with contextlib.ExitStack() as stack:
        env = (stack.enter_context(mps_daemon(Path(stack.enter_context(
            tempfile.TemporaryDirectory())))) if args.mps else {})
        for name in args.models:
            alone = None
            for k in sorted(args.concurrent):
                rates = concurrent(name, args.device, k, args.warmup, args.seconds,
                                   args.overrides, env)
                total = sum(rates)
                alone = total if k == 1 else alone
                ratio = f"{total / alone:.2f}" if alone else "—"
                print(f"| {name} | {k} | {total / k:.1f} ({min(rates):.1f}–{max(rates):.1f}) "
                      f"| {total:.1f} | {ratio} |", flush=True)
                records.append({"op": "train_step_concurrent", "model": name, "k": k,
                                "mps": args.mps, "seconds": args.seconds,
                                "steps_per_s": rates, "total_steps_per_s": total,
                                "device": where})
    return records


if __name__ == "__main__":
    raise SystemExit(main())
