"""Accuracy at the labelled positions, overall and by task length.

accuracy = mean over labelled positions of [argmax over the full vocabulary == label];
scaled accuracy = (acc − 1/C) / (1 − 1/C) with C the task's number of answer classes, so that
chance is 0 and perfect is 1 (PAPER.md reports it).
"""

from __future__ import annotations

import contextlib
import functools
import json
from dataclasses import dataclass

import numpy as np
import torch

from statetrack.tasks import NO_LOSS, Task, TaskBatch

# Independent streams of the data RNG: numpy.random.default_rng([seed, stream, index]); the
# last entry is never 0 because SeedSequence([a, b]) equals SeedSequence([a, b, 0]).
TRAIN_STREAM, VALIDATION_STREAM, TEST_STREAM = 1, 2, 3


def data_rng(seed: int, stream: int, index: int) -> np.random.Generator:
    """The generator of one training step (``index`` = step) or of a held-out set."""
    return np.random.default_rng([seed, stream, index + 1])


def scaled_accuracy(accuracy: float, num_classes: int) -> float:
    chance = 1.0 / num_classes
    return (accuracy - chance) / (1.0 - chance)


def trim(batch: TaskBatch) -> tuple[np.ndarray, np.ndarray]:
    """``inputs``, ``labels`` cut after the last labelled column: a causal model's prediction at
    a labelled position never depends on later tokens, so the padding after it is wasted work."""
    labelled = (batch.labels != NO_LOSS).any(axis=0)
    width = int(np.flatnonzero(labelled)[-1]) + 1 if labelled.any() else 1
    return batch.inputs[:, :width], batch.labels[:, :width]


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """bf16 autocast for precision bf16, and for auto on CUDA; float32 otherwise (auto on the
    CPU). bf16 on the CPU reproduces the rounding of a GPU run's mixed precision there."""
    if precision == "bf16" or (precision == "auto" and device.type == "cuda"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


@dataclass
class LengthResult:
    """Per task length: ``n`` sequences, ``correct`` of ``labelled`` answer positions."""

    length: int
    n: int
    correct: int
    labelled: int

    @property
    def accuracy(self) -> float:
        return self.correct / max(self.labelled, 1)


@dataclass
class EvalResult:
    by_length: list[LengthResult]
    num_classes: int

    @property
    def accuracy(self) -> float:
        correct = sum(r.correct for r in self.by_length)
        return correct / max(sum(r.labelled for r in self.by_length), 1)

    @property
    def scaled_accuracy(self) -> float:
        return scaled_accuracy(self.accuracy, self.num_classes)

    def rows(self) -> list[dict[str, float | int]]:
        """The rows of eval.csv: length, n, accuracy, scaled_accuracy."""
        return [{"length": r.length, "n": r.n, "accuracy": r.accuracy,
                 "scaled_accuracy": scaled_accuracy(r.accuracy, self.num_classes)}
                for r in self.by_length]


def constant_answer_accuracy(task: Task, *, min_len: int, max_len: int, n: int,
                             rng: np.random.Generator) -> dict[int, float]:
    """{answer token id: accuracy of answering it at every labelled position} on the sequences
    ``evaluate`` draws with the same arguments: what a model reaches without reading its
    input. Above 1/C where the answers are not uniform (mod_arith_brackets with ``mult``: a
    product with a 0 factor is 0, so about 30% of the answers are 0)."""
    data = task.sample(n, min_len, max_len, rng)
    labels = data.labels[data.labels != NO_LOSS]
    return {int(t): float(np.mean(labels == t)) if labels.size else 0.0
            for t in task.answer_tokens}


def answer_shares(config: dict) -> tuple[Task, dict[int, float]]:
    """A run's task (its config's ``task`` section) and ``constant_answer_accuracy`` on the
    test set it was scored on (``evaluation``), drawn once per distinct config (cached: do not
    change the dict)."""
    sections = {k: config[k] for k in ("task", "evaluation")}
    return _answer_shares(json.dumps(sections, sort_keys=True))


@functools.lru_cache(maxsize=64)
def _answer_shares(sections: str) -> tuple[Task, dict[int, float]]:
    from statetrack.tasks import get_task

    config = json.loads(sections)
    task_cfg, ev = config["task"], config["evaluation"]
    task = get_task(task_cfg["name"], **(task_cfg.get("options") or {}))
    return task, constant_answer_accuracy(task, min_len=ev["min_len"], max_len=ev["max_len"],
                                          n=ev["n"], rng=data_rng(ev["seed"], TEST_STREAM, 0))


def constant_floor(config: dict, margin: float = 0.05) -> tuple[str, float] | None:
    """(answer, accuracy) of always giving the commonest answer of a run's test set
    (``answer_shares``), or None unless that beats chance by more than ``margin`` in
    scaled accuracy (a few sequences per length make any set a little uneven)."""
    task, shares = answer_shares(config)
    token = max(shares, key=shares.get)
    if scaled_accuracy(shares[token], task.num_classes) <= margin:
        return None
    return task.vocab[token], shares[token]


@torch.no_grad()
def evaluate(model: torch.nn.Module, task: Task, *, min_len: int, max_len: int, n: int,
             batch_size: int, rng: np.random.Generator, device: torch.device,
             precision: str = "auto") -> EvalResult:
    """Accuracy of ``model`` on ``n`` fresh sequences of task lengths in ``[min_len, max_len]``.

    The sequences are sorted by length and cut into batches, each trimmed to its longest row, so
    that padding stays small; results are grouped by task length.
    """
    data = task.sample(n, min_len, max_len, rng)
    order = np.argsort(data.lengths, kind="stable")
    hits = np.zeros(n, dtype=np.int64)
    counts = np.zeros(n, dtype=np.int64)
    was_training = model.training
    model.eval()
    for start in range(0, n, batch_size):
        rows = order[start:start + batch_size]
        part = TaskBatch(data.inputs[rows], data.labels[rows], data.lengths[rows])
        inputs, labels = trim(part)
        tokens = torch.from_numpy(inputs).to(device)
        target = torch.from_numpy(labels).to(device)
        with autocast(device, precision):
            logits, _ = model(tokens)
        mask = target != NO_LOSS
        correct = (logits.argmax(dim=-1) == target) & mask
        hits[rows] = correct.sum(dim=1).cpu().numpy()
        counts[rows] = mask.sum(dim=1).cpu().numpy()
    model.train(was_training)
    by_length = []
    for length in np.unique(data.lengths):
        sel = data.lengths == length
        by_length.append(LengthResult(int(length), int(sel.sum()), int(hits[sel].sum()),
                                      int(counts[sel].sum())))
    return EvalResult(by_length, task.num_classes)
