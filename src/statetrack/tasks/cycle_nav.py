"""Cycle navigation: walk a cycle of 5 positions from 0; where do you end?

A length-s example is ``s − 1`` uniform moves ``L`` (−1), ``S`` (stay) and ``R`` (+1); the answer,
labelled at the last move, is the final position ``(#R − #L) mod 5`` as a digit token
``"0"``…``"4"`` (whose token id is its value).
Example, s = 5: inputs ``R S R L`` (+1 + 0 + 1 − 1), label ``1`` at the last ``L``.
"""

from __future__ import annotations

import numpy as np

from statetrack.tasks.base import PAD, Task, pad_rows

CYCLE = 5
MOVES = {"L": -1, "S": 0, "R": 1}


class CycleNav(Task):
    name = "cycle_nav"
    min_length = 2

    def __init__(self) -> None:
        self.vocab = [str(p) for p in range(CYCLE)] + list(MOVES) + [PAD]
        self.answer_tokens = list(range(CYCLE))
        self.num_classes = CYCLE

    def _generate(self, lengths: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray,
                                                                               np.ndarray]:
        n_moves = lengths - 1
        steps = pad_rows(rng.integers(-1, 2, size=(len(lengths), int(n_moves.max()))), n_moves, 0)
        answers = steps.sum(axis=1) % CYCLE  # numpy's % is non-negative for a positive modulus
        first_move = self.vocab.index("L")  # L, S, R have consecutive ids: L + 1 + step
        return pad_rows(first_move + 1 + steps, n_moves, self.pad_id), answers
