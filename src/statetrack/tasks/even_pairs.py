"""Even pairs: is the number of ``ab`` plus ``ba`` pairs in a string over {a, b} even?

A length-s example is ``s − 1`` uniform symbols; the answer, labelled at the last symbol, is
``"even"`` or ``"odd"``. Each ``ab``/``ba`` pair is a change of symbol, so the count is even
exactly when the first symbol equals the last (a one-symbol string has 0 pairs: ``even``).
Example, s = 5: inputs ``a b b a`` (pairs ab, ba: 2), label ``even`` at the last ``a``.
"""

from __future__ import annotations

import numpy as np

from statetrack.tasks.base import PAD, Task, pad_rows


class EvenPairs(Task):
    name = "even_pairs"
    min_length = 2

    def __init__(self) -> None:
        self.vocab = ["a", "b", "even", "odd", PAD]
        self.answer_tokens = [self.vocab.index("even"), self.vocab.index("odd")]
        self.num_classes = 2

    def _generate(self, lengths: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray,
                                                                               np.ndarray]:
        n_symbols = lengths - 1
        symbols = rng.integers(0, 2, size=(len(lengths), int(n_symbols.max())))  # a = 0, b = 1
        last = symbols[np.arange(len(lengths)), n_symbols - 1]
        even = symbols[:, 0] == last
        answers = np.where(even, self.answer_tokens[0], self.answer_tokens[1])
        return pad_rows(symbols, n_symbols, self.pad_id), answers.astype(np.int64)
