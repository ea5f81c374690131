"""Parity: is the number of ones among s − 1 random bits odd?

A length-s example is ``s − 1`` uniform bits; the answer (the parity of the count of ones:
``"1"`` if odd, ``"0"`` if even) is labelled at the last bit. ``min_length`` is 2 (one bit).
Example, s = 5: inputs ``0 1 1 1``, label ``1`` at the last ``1``.
"""

from __future__ import annotations

import numpy as np

from statetrack.tasks.base import PAD, Task, pad_rows


class Parity(Task):
    name = "parity"
    min_length = 2

    def __init__(self) -> None:
        self.vocab = ["0", "1", PAD]  # token id of a bit = its value
        self.answer_tokens = [0, 1]
        self.num_classes = 2

    def _generate(self, lengths: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray,
                                                                               np.ndarray]:
        n_bits = lengths - 1
        bits = pad_rows(rng.integers(0, 2, size=(len(lengths), int(n_bits.max()))), n_bits, 0)
        answers = bits.sum(axis=1) % 2
        return pad_rows(bits, n_bits, self.pad_id), answers
