"""Host cost of turning a sampled training batch into the tensors a step copies to the device.

For each task and batch size, the trainer's batch (`Task.sample` at training lengths, trimmed
after its last labelled column) goes to a CPU tensor two ways:

- ``torch_copy``: ``torch.from_numpy(a.copy())``, then ``pin_memory()`` (the trainer's way on
  CUDA until session 19), which copies into page-locked memory with ``Tensor.copy_``; PyTorch
  splits a copy of 32,768 elements or more over its intra-op threads. Without CUDA the same
  ``copy_`` runs into ordinary memory.
- ``numpy_copy``: `statetrack.experiment.batches.host_tensor`: numpy fills a (pinned) torch
  tensor on the calling thread.

The sampling itself is drawn once per step and not timed. Reported per batch: wall µs and
process CPU µs (every thread of the process), and the ratio numpy_copy / torch_copy of each.
A process CPU well above its wall time means other threads were woken.

    PYTHONPATH=src python benchmarks/batch_draw.py [--tasks mod_arith parity]
        [--batch-sizes 256 1024] [--threads N] [--out benchmarks/results/batch_draw.json]

Records: ``{"op": "batch_draw", "task", "batch_size", "elements", "way", "wall_us", "cpu_us",
"threads", "pinned", "device"}``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from statetrack.experiment.batches import host_tensor
from statetrack.experiment.evaluation import TRAIN_STREAM, data_rng, trim
from statetrack.tasks.registry import get_task


def torch_copy(array: np.ndarray, pin: bool) -> torch.Tensor:
    tensor = torch.from_numpy(array.copy())
    if pin:
        return tensor.pin_memory()
    return torch.empty_like(tensor).copy_(tensor)  # pin_memory()'s copy, without CUDA


WAYS = {"torch_copy": torch_copy, "numpy_copy": host_tensor}
# Before each timing: intra-op threads woken by the way timed before keep spinning for a while,
# which would count towards the next way's CPU time.
SETTLE_S = 0.2


Batch = tuple[np.ndarray, np.ndarray]  # inputs, labels


def time_way(way: str, arrays: list[Batch], pin: bool) -> tuple[float, float]:
    """(wall µs, process CPU µs) per batch of inputs and labels, over ``arrays``."""
    convert = WAYS[way]
    time.sleep(SETTLE_S)
    wall, cpu = time.perf_counter(), time.process_time()
    for inputs, labels in arrays:
        convert(inputs, pin)
        convert(labels, pin)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return 1e6 * wall / len(arrays), 1e6 * cpu / len(arrays)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=["mod_arith", "parity"])
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[256, 1024])
    parser.add_argument("--batches", type=int, default=200, help="timed batches per row")
    parser.add_argument("--rounds", type=int, default=5,
                        help="alternating rounds of both ways; each row is their median")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch.set_num_threads (default: PyTorch's own choice)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.threads is not None:
        if args.threads < 1:
            parser.error(f"--threads must be at least 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    pin = torch.cuda.is_available()
    device = torch.cuda.get_device_name() if pin else platform.processor() or "cpu"
    threads = torch.get_num_threads()
    print(f"batch to host tensor, {threads} intra-op threads, pinned: {pin}, {device}")
    print("| task | batch | elements | torch_copy wall / CPU µs | numpy_copy wall / CPU µs "
          "| wall ratio | CPU ratio |")
    print("|---|---|---|---|---|---|---|")
    records = []
    for name in args.tasks:
        task = get_task(name)
        for size in args.batch_sizes:
            arrays = [trim(task.sample(size, 3, 40, data_rng(0, TRAIN_STREAM, s)))
                      for s in range(args.batches)]
            times: dict[str, list[tuple[float, float]]] = {way: [] for way in WAYS}
            for _ in range(args.rounds):
                for way in WAYS:
                    times[way].append(time_way(way, arrays, pin))
            row = {way: tuple(float(np.median(v)) for v in zip(*times[way], strict=True))
                   for way in WAYS}
            elements = int(arrays[0][0].size)
            for way, (wall, cpu) in row.items():
                records.append({"op": "batch_draw", "task": name, "batch_size": size,
                                "elements": elements, "way": way, "wall_us": wall,
                                "cpu_us": cpu, "threads": threads, "pinned": pin,
                                "device": device})
            (tw, tc), (nw, nc) = row["torch_copy"], row["numpy_copy"]
            print(f"| {name} | {size} | {elements} | {tw:.1f} / {tc:.1f} | {nw:.1f} / {nc:.1f} "
                  f"| {nw / tw:.2f} | {nc / tc:.2f} |")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(records, indent=1) + "\n")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
