"""Modular arithmetic without brackets: ``d op d op … d =`` then the value modulo m.

A length-s example (s odd) is an expression of ``s − 2`` tokens, ``(s − 1)/2`` uniform digits
``0``…``m−1`` alternating with uniform operators, then ``=``; the answer, labelled at ``=``, is
the value modulo m as a digit token (token id = digit value). ``*`` binds tighter than ``+`` and
``-``, which associate to the left; the result is taken in ``[0, m)``. The shortest example is
s = 3: ``d =`` then ``d``. Lengths are drawn uniformly over the odd values of
``[min_len, max_len]`` (training {3, 5, …, 39}, testing {39, …, 255} in PAPER.md).
Example, s = 7: inputs ``3 + 4 * 2 =``, label ``1`` at ``=`` (3 + 8 = 11 ≡ 1 mod 5).
"""

from __future__ import annotations

import numpy as np

from statetrack.tasks.base import PAD, Task, pad_rows

ALL_OPERATORS = "+-*"
MAX_MODULUS = 10  # digits are single tokens "0".."9"


def check_modulus(task: str, modulus: object) -> int:
    if isinstance(modulus, bool) or not isinstance(modulus, (int, np.integer)) or not (
        2 <= modulus <= MAX_MODULUS
    ):
        raise ValueError(
            f"{task}.modulus: expected an integer in [2, {MAX_MODULUS}], got {modulus!r}"
        )
    return int(modulus)


def digit_vocab(modulus: int) -> list[str]:
    return [str(d) for d in range(modulus)]


class ModArith(Task):
    name = "mod_arith"
    min_length = 3

    def __init__(self, modulus: int = 5, operators: str = "+-*") -> None:
        self.modulus = check_modulus(self.name, modulus)
        if (not isinstance(operators, str) or not operators
                or len(set(operators)) != len(operators) or set(operators) - set(ALL_OPERATORS)):
            raise ValueError(f"{self.name}.operators: expected distinct characters among "
                             f"{ALL_OPERATORS!r}, e.g. '+-', got {operators!r}")
        self.operators = operators
        used = [op for op in ALL_OPERATORS if op in operators]
        self.vocab = digit_vocab(self.modulus) + used + ["=", PAD]
        self.answer_tokens = list(range(self.modulus))
        self.num_classes = self.modulus

    def _check_lengths(self, min_len: int, max_len: int) -> None:
        super()._check_lengths(min_len, max_len)
        if (min_len | 1) > max_len:  # min_len | 1: the smallest odd value >= min_len
            raise ValueError(f"{self.name}: lengths are odd (expression + '=' + answer); "
                             f"[min_len, max_len] = [{min_len}, {max_len}] holds no odd length")

    def _draw_lengths(self, n: int, min_len: int, max_len: int,
                      rng: np.random.Generator) -> np.ndarray:
        lo = min_len | 1
        count = (max_len - lo) // 2 + 1
        return lo + 2 * rng.integers(0, count, size=n, dtype=np.int64)

    def _generate(self, lengths: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray,
                                                                               np.ndarray]:
        n = len(lengths)
        n_digits = (lengths - 1) // 2
        k = int(n_digits.max())
        digits = rng.integers(0, self.modulus, size=(n, k))
        op_ids = np.array([self.token_id(op) for op in self.operators])
        ops = op_ids[rng.integers(0, len(op_ids), size=(n, k))]  # ops[:, j] joins digit j, j + 1
        answers = self._evaluate(digits, ops, n_digits)
        body = np.empty((n, 2 * k), dtype=np.int64)
        body[:, 0::2] = digits  # digit token id = digit value
        body[:, 1::2] = ops
        body[np.arange(n), 2 * n_digits - 1] = self.token_id("=")
        return pad_rows(body, lengths - 1, self.pad_id), answers

    def _evaluate(self, digits: np.ndarray, ops: np.ndarray, n_digits: np.ndarray) -> np.ndarray:
        """Left to right with one pending product: ``total + term`` where ``term`` is the signed
        product of the current run of ``*``; every value is kept in [0, m)."""
        m = self.modulus
        plus, minus = (self.token_id(op) if op in self.operators else -1 for op in "+-")
        total = np.zeros(len(digits), dtype=np.int64)
        term = digits[:, 0].copy()
        for j in range(digits.shape[1] - 1):
            live = j < n_digits - 1  # rows whose expression has an operator at j
            d, op = digits[:, j + 1], ops[:, j]
            additive = live & ((op == plus) | (op == minus))
            total = np.where(additive, (total + term) % m, total)
            term = np.where(additive, np.where(op == minus, (m - d) % m, d), term)
            term = np.where(live & ~additive, term * d % m, term)
        return (total + term) % m
