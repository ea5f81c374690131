"""What every formal-language task shares: the batch, the length checks and the label layout.

Layout of one example of task length ``s`` (the size PAPER.md gives, answer included):
```
inputs  x_0 x_1 … x_{T_s − 1} <pad> … <pad>     T_s = s − answer_offset tokens, then padding
labels  −1  −1  …  answer     −1    …  −1       the answer sits at the last real input
```
``labels[t]`` is the token the model must emit after reading ``inputs[: t + 1]``, so the one
supervised position of a row is its last real input token (for the arithmetic tasks, ``=``).
The answer itself is never an input. ``answer_offset`` is 1 for every task except
``mod_arith_brackets``, whose public code counts one trailing pad inside ``s`` (offset 2).
A batch is as long as its longest row; shorter rows are right-padded with ``pad_id``.
"""

from __future__ import annotations

import abc
import inspect
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

PAD = "<pad>"
NO_LOSS = -1


@dataclass(frozen=True)
class TaskBatch:
    """``n`` examples: ``inputs`` and ``labels`` int64 ``[n, T]``, ``lengths`` int64 ``[n]``.

    ``lengths`` is the task length ``s`` of each example (PAPER.md's size, answer included),
    not the number of input tokens (that is ``s − task.answer_offset``).
    """

    inputs: np.ndarray
    labels: np.ndarray
    lengths: np.ndarray

    def __len__(self) -> int:
        return int(self.inputs.shape[0])

    @property
    def answers(self) -> np.ndarray:
        """int64 ``[n]``: the answer token id of each row (its only label that is not −1)."""
        return self.labels.max(axis=1)


def _check_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name}: expected an integer, got {value!r}")
    return int(value)


class Task(abc.ABC):
    """A formal language with one supervised answer per sequence.

    Subclasses set ``name``, ``min_length`` (the smallest task length ``s`` they generate) and
    ``answer_offset``, build ``vocab`` / ``answer_tokens`` / ``num_classes`` in their
    constructor (whose keyword arguments are the task's options and hold their only defaults),
    and implement ``_generate``.
    """

    name: ClassVar[str] = ""
    min_length: ClassVar[int] = 2
    answer_offset: ClassVar[int] = 1

    vocab: list[str]
    answer_tokens: list[int]
    num_classes: int

    # ----------------------------------------------------------------- to implement
    @abc.abstractmethod
    def _generate(self, lengths: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray,
                                                                               np.ndarray]:
        """Draw the examples of task lengths ``lengths`` [n].

        Returns ``inputs`` int64 ``[n, T]`` with ``T = max(lengths) − answer_offset`` (rows
        right-padded with ``pad_id``) and ``answers`` int64 ``[n]`` (token ids).
        """

    def _draw_lengths(self, n: int, min_len: int, max_len: int,
                      rng: np.random.Generator) -> np.ndarray:
        """Task lengths uniform over the integers of ``[min_len, max_len]``."""
        return rng.integers(min_len, max_len + 1, size=n, dtype=np.int64)

    def _check_lengths(self, min_len: int, max_len: int) -> None:
        if min_len < self.min_length:
            raise ValueError(f"{self.name}: min_len must be >= {self.min_length}, got {min_len}")
        if max_len < min_len:
            raise ValueError(
                f"{self.name}: max_len must be >= min_len = {min_len}, got {max_len}"
            )

    # ----------------------------------------------------------------- shared
    @property
    def options(self) -> dict[str, Any]:
        """This task's options and their values (the constructor's keyword arguments)."""
        return {k: getattr(self, k) for k in option_defaults(type(self))}

    @property
    def pad_id(self) -> int:
        return self.vocab.index(PAD)

    def token_id(self, token: str) -> int:
        try:
            return self.vocab.index(token)
        except ValueError:
            raise ValueError(
                f"{self.name}: unknown token {token!r}; vocab: {' '.join(self.vocab)}"
            ) from None

    def sample(self, n: int, min_len: int, max_len: int, rng: np.random.Generator) -> TaskBatch:
        """``n`` fresh examples with task lengths drawn uniformly from the allowed values of
        ``[min_len, max_len]`` (see the subclass for which values are allowed)."""
        n = _check_int(n, "n")
        min_len = _check_int(min_len, "min_len")
        max_len = _check_int(max_len, "max_len")
        if n < 1:
            raise ValueError(f"{self.name}: n must be >= 1, got {n}")
        if not isinstance(rng, np.random.Generator):
            raise ValueError(
                f"{self.name}: rng must be a numpy Generator (np.random.default_rng(seed)), "
                f"got {type(rng).__name__}"
            )
        self._check_lengths(min_len, max_len)
        lengths = self._draw_lengths(n, min_len, max_len, rng)
        inputs, answers = self._generate(lengths, rng)
        labels = np.full(inputs.shape, NO_LOSS, dtype=np.int64)
        labels[np.arange(n), lengths - self.answer_offset - 1] = answers
        return TaskBatch(inputs=inputs.astype(np.int64, copy=False), labels=labels,
                         lengths=lengths.astype(np.int64, copy=False))

    def render(self, row: np.ndarray | list[int]) -> str:
        """The inputs of one example as a person reads it (pads dropped), e.g. ``3+4*2=``."""
        ids = [int(i) for i in np.asarray(row).reshape(-1)]
        bad = [i for i in ids if not 0 <= i < len(self.vocab)]
        if bad:
            raise ValueError(f"{self.name}: token ids {bad[:5]} outside [0, {len(self.vocab)})")
        return "".join(self.vocab[i] for i in ids if i != self.pad_id)

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options.items())
        return f"{type(self).__name__}({opts})"


def option_defaults(cls: type[Task]) -> dict[str, Any]:
    """The options of task class ``cls`` and their defaults, read from its constructor."""
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    return {p.name: p.default for p in params}


def pad_rows(body: np.ndarray, row_lengths: np.ndarray, pad_id: int) -> np.ndarray:
    """Replace ``body[i, row_lengths[i]:]`` by ``pad_id``; ``body`` int64 ``[n, T]``."""
    keep = np.arange(body.shape[1])[None, :] < row_lengths[:, None]
    return np.where(keep, body, pad_id).astype(np.int64)
