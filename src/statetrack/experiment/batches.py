"""Training batches by step: fresh samples every step, padded only to the longest example.

Step ``s`` draws from ``numpy.random.default_rng([data_seed, 1, s + 1])``, so a batch depends on
the step alone (a resumed run needs no data-RNG state) and can be drawn ahead of time: on a GPU
a background thread samples the next few batches while the device trains on the current one
(sampling mod_arith_brackets costs ~2.5 ms per batch of 256 on one core, as much as a step).
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import torch

from statetrack.experiment.config import TrainingSection
from statetrack.experiment.evaluation import TRAIN_STREAM, data_rng, trim
from statetrack.tasks import Task


class Batches:
    """``get(step)`` → ``(tokens, labels)`` int64 ``[B, T]`` on ``device``, T = the longest
    example of the batch; steps must be asked for in order when ``ahead > 0``."""

    def __init__(self, task: Task, training: TrainingSection, device: torch.device,
                 start: int, ahead: int) -> None:
        self.task, self.training, self.device = task, training, device
        self.ahead = ahead
        self.pin = device.type == "cuda"
        self.next_step = start
        self.pool = ThreadPoolExecutor(max_workers=1) if ahead > 0 else None
        self.pending: deque[tuple[int, Future]] = deque()
        for _ in range(ahead):
            self._submit()

    def _submit(self) -> None:
        if self.pool is not None and self.next_step < self.training.steps:
            self.pending.append((self.next_step, self.pool.submit(self._draw, self.next_step)))
            self.next_step += 1

    def _draw(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        t = self.training
        batch = self.task.sample(t.batch_size, t.min_len, t.max_len,
                                 data_rng(t.data_seed, TRAIN_STREAM, step))
        inputs, labels = (host_tensor(a, self.pin) for a in trim(batch))
        return inputs, labels

    def get(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self.pool is None:
            inputs, labels = self._draw(step)
        else:
            queued, future = self.pending.popleft()
            if queued != step:
                raise RuntimeError(f"batches asked out of order: step {step}, queued {queued}")
            inputs, labels = future.result()
            self._submit()
        return (inputs.to(self.device, non_blocking=True),
                labels.to(self.device, non_blocking=True))

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)


def host_tensor(array: np.ndarray, pin: bool) -> torch.Tensor:
    """A contiguous (and, with ``pin``, page-locked) CPU tensor holding ``array``, copied by
    numpy on the calling thread. ``torch.Tensor.copy_``, which ``pin_memory()`` runs, splits a
    copy of 32,768 elements or more over PyTorch's intra-op threads, so at batch 1024 and length
    40 every batch woke the whole thread pool twice (inputs and labels); in session 19's runs
    on a GPU machine those pools held 16 or 32 threads each. ``benchmarks/batch_draw.py``
    measures both ways."""
    out = torch.empty(array.shape, dtype=torch.from_numpy(array).dtype, pin_memory=pin)
    out.numpy()[...] = array
    return out
