"""Training-step time of each paper model: CUDA graphs against the eager step, and where the
device time goes.

For each model's parity config (configs/chomsky/parity/*.yaml: batch 256, lengths 3–40, bf16
autocast on CUDA), the trainer's own step (`statetrack.experiment.trainer._train_step`, fresh
batch, AdamW) runs ``--warmup`` untimed steps then ``--steps`` timed ones, eagerly and with
``training.cuda_graphs``; the table shows ms/step, steps/s and the ratio graphed/eager.
``--profile N`` also prints, for each model, the N CUDA kernels (CPU ops on a CPU) that take
the most time over 20 graphed steps, so the next optimisation starts from a measurement.

    PYTHONPATH=src python benchmarks/train_step.py --out benchmarks/results/h200_train_step.json \
        [--models deltanet_neg mamba_neg] [--profile 15]

Records: ``{"op": "train_step", "model", "config", "mode": "eager"|"graphs", "ms", "steps_per_s",
"device"}`` and, with --profile, ``{"op": "train_step_profile", "model", "kernels": [[name,
total_ms, calls], ...]}``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from statetrack.experiment import trainer
from statetrack.experiment.checkpoint import TrainState
from statetrack.experiment.config import load_config
from statetrack.experiment.schedule import learning_rate

MODELS = ("deltanet_neg", "deltanet", "mamba_neg", "mamba", "transformer", "mlstm", "slstm")
CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "chomsky" / "parity"


def make_run(name: str, device: str, graphs: bool) -> tuple[trainer.Run, list, dict]:
    """The trainer's own run, ready to step (as ``statetrack train`` sets it up)."""
    config = load_config(CONFIGS / f"{name}.yaml",
                         [f"training.device={device}", f"training.cuda_graphs={str(graphs)}"])
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


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_model(name: str, device: str, graphs: bool, warmup: int, n: int) -> float:
    """ms per training step (median of 3 windows of n // 3 steps)."""
    run, params, sums = make_run(name, device, graphs)
    try:
        steps(run, params, sums, 0, warmup)
        sync(run.device)
        windows, at = [], warmup
        for _ in range(3):
            begin = time.perf_counter()
            steps(run, params, sums, at, n // 3)
            sync(run.device)
            windows.append((time.perf_counter() - begin) * 1e3 / (n // 3))
            at += n // 3
        return sorted(windows)[1]
    finally:
        run.batches.close()


def profile_model(name: str, device: str, warmup: int, top: int) -> list[list]:
    """The ``top`` kernels (CUDA) or ops (CPU) by total time over 20 graphed steps."""
    from torch.profiler import ProfilerActivity, profile

    run, params, sums = make_run(name, device, graphs=True)
    cuda = run.device.type == "cuda"
    try:
        steps(run, params, sums, 0, warmup)
        sync(run.device)
        activities = [ProfilerActivity.CUDA] if cuda else [ProfilerActivity.CPU]
        with profile(activities=activities) as prof:
            steps(run, params, sums, warmup, 20)
            sync(run.device)
    finally:
        run.batches.close()
    rows = []
    for e in prof.key_averages():
        total = e.device_time_total if cuda else e.self_cpu_time_total
        if total > 0:
            rows.append([e.key, total / 1e3 / 20, e.count / 20])  # ms and calls per step
    return sorted(rows, key=lambda r: -r[1])[:top]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--warmup", type=int, default=30, help="untimed steps (default 30)")
    parser.add_argument("--steps", type=int, default=150, help="timed steps (default 150)")
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="also list the N kernels taking the most time per step")
    parser.add_argument("--out", type=Path, help="JSON records (default: print only)")
    args = parser.parse_args(argv)
    if args.steps < 3 or args.warmup < 0:
        parser.error(f"--steps must be >= 3 and --warmup >= 0, got {args.steps}, {args.warmup}")
    where = (torch.cuda.get_device_name() if args.device == "cuda"
             else f"cpu ({torch.get_num_threads()} threads)")
    modes = [("eager", False), ("graphs", True)] if args.device == "cuda" else [("eager", False)]
    records: list[dict] = []
    print(f"training step, parity configs, {where}")
    print(f"| model | {' | '.join(f'{m} ms (steps/s)' for m, _ in modes)} | graphs/eager |")
    print(f"|---|{'---|' * len(modes)}---|")
    for name in args.models:
        ms = {mode: time_model(name, args.device, graphs, args.warmup, args.steps)
              for mode, graphs in modes}
        for mode, value in ms.items():
            records.append({"op": "train_step", "model": name, "config": f"parity/{name}.yaml",
                            "mode": mode, "ms": value, "steps_per_s": 1e3 / value,
                            "device": where})
        ratio = f"{ms['graphs'] / ms['eager']:.2f}" if "graphs" in ms else "—"
        cells = " | ".join(f"{v:.2f} ({1e3 / v:.0f})" for v in ms.values())
        print(f"| {name} | {cells} | {ratio} |", flush=True)
    for name in args.models if args.profile else []:
        kernels = profile_model(name, args.device, args.warmup, args.profile)
        records.append({"op": "train_step_profile", "model": name, "kernels": kernels,
                        "device": where})
        print(f"\n{name}: top {args.profile} by time per step")
        for key, ms_per_step, calls in kernels:
            print(f"  {ms_per_step:8.3f} ms  {calls:6.1f}×  {key[:110]}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(records, indent=1) + "\n")
        print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
