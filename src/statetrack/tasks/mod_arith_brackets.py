"""Modular arithmetic with brackets: a random bracketed expression ``=`` its value modulo m.

Generated as the public code of the paper does it (after DeepMind's Chomsky-hierarchy task):
a task length is ``s = max(U[min_len, max_len], 5)``; the expression has ``s − 3`` tokens and is
built recursively. An expression of length ``ℓ < 5`` is ``d``, ``-d``, ``(d)`` or ``(-d)`` (the
one of length ℓ; ``d`` a uniform digit); a longer one is ``(L op R)`` with ``|L|`` uniform in
``[1, ℓ − 4]`` and ``|R| = ℓ − 3 − |L|``. ``op`` is uniform over ``+ -`` (``mult=False``: the
public code, the default) or ``+ - *`` (``mult=True``: DeepMind's original). The answer is the
value in ``[0, m)`` as a digit token (token id = digit value). With ``mult=True`` the answer 0
is over-represented (a zero factor zeroes a product): about 27% at lengths 3–40 and 30% at
40–256 for m = 5, against 20% without ``*``; a constant guess of 0 then beats 1/C.

Layout: inputs are the ``s − 3`` expression tokens then ``=`` (``s − 2`` tokens: the public code
counts a trailing pad inside s, so ``answer_offset = 2``); the answer is labelled at ``=``.
Task lengths drawn below 5 are raised to 5 (so ``min_len`` may be anything >= 1, and length 5
is over-represented when ``min_len < 5``); ``max_len`` must be at least 5.
Example, s = 11: inputs ``(3-(-2))=`` (9 tokens), label ``0`` at ``=`` (3 + 2 = 5 ≡ 0 mod 5).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from statetrack.tasks.base import PAD, Task
from statetrack.tasks.mod_arith import check_modulus, digit_vocab

SHORTEST = 5  # the public code's floor on s: an expression of at least 2 tokens


class ModArithBrackets(Task):
    name = "mod_arith_brackets"
    min_length = SHORTEST
    answer_offset = 2

    def __init__(self, modulus: int = 5, mult: bool = False) -> None:
        self.modulus = check_modulus(self.name, modulus)
        if not isinstance(mult, bool):
            raise ValueError(f"{self.name}.mult: expected true or false, got {mult!r}")
        self.mult = mult
        operators = "+-*" if mult else "+-"
        self.vocab = digit_vocab(self.modulus) + list(operators) + ["(", ")", "=", PAD]
        self.answer_tokens = list(range(self.modulus))
        self.num_classes = self.modulus
        self._op_ids = [self.token_id(op) for op in operators]
        self._minus, self._open, self._close = (self.token_id(t) for t in "-()")

    def _check_lengths(self, min_len: int, max_len: int) -> None:
        if min_len < 1:
            raise ValueError(f"{self.name}: min_len must be >= 1, got {min_len}")
        if max_len < max(min_len, SHORTEST):
            raise ValueError(f"{self.name}: max_len must be >= max(min_len, {SHORTEST}) = "
                             f"{max(min_len, SHORTEST)}, got {max_len}")

    def _draw_lengths(self, n: int, min_len: int, max_len: int,
                      rng: np.random.Generator) -> np.ndarray:
        return np.maximum(rng.integers(min_len, max_len + 1, size=n, dtype=np.int64), SHORTEST)

    def _generate(self, lengths: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray,
                                                                               np.ndarray]:
        n, width = len(lengths), int(lengths.max()) - self.answer_offset
        # All randomness is drawn up front, one row per example: an expression of ℓ tokens
        # never needs more than ℓ splits, operators or digits. Scalar draws cost microseconds.
        splits = rng.random(size=(n, width)).tolist()
        ops = rng.integers(0, len(self._op_ids), size=(n, width)).tolist()
        digits = rng.integers(0, self.modulus, size=(n, width)).tolist()
        inputs = np.full((n, width), self.pad_id, dtype=np.int64)
        answers = np.empty(n, dtype=np.int64)
        for i, s in enumerate(lengths.tolist()):
            tokens: list[int] = []
            answers[i] = self._expression(s - 3, iter(splits[i]), iter(ops[i]), iter(digits[i]),
                                          tokens)
            tokens.append(self.token_id("="))
            inputs[i, : len(tokens)] = tokens
        return inputs, answers

    def _expression(self, length: int, splits: Iterator[float], ops: Iterator[int],
                    digits: Iterator[int], out: list[int]) -> int:
        """Append an expression of ``length`` tokens to ``out``; return its value mod m."""
        m = self.modulus
        if length < 5:  # d, -d, (d), (-d) for lengths 1, 2, 3, 4
            d = next(digits)
            negate, bracket = length % 2 == 0, length >= 3
            out.extend([self._open] * bracket + [self._minus] * negate + [d]
                       + [self._close] * bracket)
            return (m - d) % m if negate else d
        left = 1 + int(next(splits) * (length - 4))  # uniform on [1, length − 4]
        out.append(self._open)
        a = self._expression(left, splits, ops, digits, out)
        op = self._op_ids[next(ops)]
        out.append(op)
        b = self._expression(length - 3 - left, splits, ops, digits, out)
        out.append(self._close)
        if op == self._minus:
            return (a - b) % m
        return (a * b) % m if self.vocab[op] == "*" else (a + b) % m
