"""The learning-rate schedule: linear warm-up from 0, then cosine decay to lr × final_lr_factor."""

from __future__ import annotations

import math


def learning_rate(step: int, *, lr: float, steps: int, warmup_steps: int,
                  final_lr_factor: float) -> float:
    """The learning rate of optimizer step ``step`` (0-based, ``0 <= step < steps``).

    Warm-up: ``lr · (step + 1) / warmup_steps`` for ``step < warmup_steps`` (the first update is
    not wasted at lr = 0). Then ``lr_min + (lr − lr_min) · ½(1 + cos(π·p))`` with
    ``lr_min = lr · final_lr_factor`` and ``p`` going from 0 to 1 over the remaining steps.
    """
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    decay_steps = max(steps - warmup_steps - 1, 1)
    progress = min((step - warmup_steps) / decay_steps, 1.0)
    lr_min = lr * final_lr_factor
    return lr_min + (lr - lr_min) * 0.5 * (1.0 + math.cos(math.pi * progress))
