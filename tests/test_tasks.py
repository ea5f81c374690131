"""The formal-language tasks: every label is checked by a solver written here, from the rendered
text alone (never from the generator's code), at training (3–40) and test (40–256) lengths."""

from __future__ import annotations

import argparse
import re

import numpy as np
import pytest

from statetrack.tasks import NO_LOSS, TASKS, get_task, task_options
from statetrack.tasks import cli as tasks_cli

TRAIN, TEST = (3, 40), (40, 256)
BRACKETS_FLOOR = 5  # PAPER.md: s = max(U[min, max], 5)


# --------------------------------------------------------------------------- solvers
class _Parser:
    """Recursive descent over digits, ``+ - *``, unary minus and brackets; Python ints.

    expr := term (("+" | "-") term)* ; term := factor ("*" factor)* ;
    factor := digit | "-" factor | "(" expr ")"
    """

    def __init__(self, text: str) -> None:
        self.text, self.pos = text, 0

    def parse(self) -> int:
        value = self.expr()
        assert self.pos == len(self.text), f"trailing text in {self.text!r} at {self.pos}"
        return value

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def take(self) -> str:
        self.pos += 1
        return self.text[self.pos - 1]

    def expr(self) -> int:
        value = self.term()
        while self.peek() in ("+", "-"):
            sign = 1 if self.take() == "+" else -1
            value += sign * self.term()
        return value

    def term(self) -> int:
        value = self.factor()
        while self.peek() == "*":
            self.take()
            value *= self.factor()
        return value

    def factor(self) -> int:
        c = self.take()
        if c == "-":
            return -self.factor()
        if c == "(":
            value = self.expr()
            assert self.take() == ")", f"unbalanced {self.text!r}"
            return value
        assert c.isdigit(), f"unexpected {c!r} in {self.text!r}"
        return int(c)


def solve_arith(text: str, modulus: int) -> str:
    assert text.endswith("="), text
    return str(_Parser(text[:-1]).parse() % modulus)


def solve_parity(text: str) -> str:
    return str(text.count("1") % 2)


def solve_cycle_nav(text: str) -> str:
    return str((text.count("R") - text.count("L")) % 5)


def solve_even_pairs(text: str) -> str:
    pairs = sum(text[i : i + 2] in ("ab", "ba") for i in range(len(text) - 1))
    return "even" if pairs % 2 == 0 else "odd"


def solve(task, text: str) -> str:
    if task.name == "parity":
        return solve_parity(text)
    if task.name == "cycle_nav":
        return solve_cycle_nav(text)
    if task.name == "even_pairs":
        return solve_even_pairs(text)
    return solve_arith(text, task.modulus)


def paper_length(task, text: str) -> int:
    """Task length s from the rendered inputs, as PAPER.md counts it."""
    if task.name == "mod_arith":
        return len(text) - 1 + 2  # expression, "=", answer
    if task.name == "mod_arith_brackets":
        return len(text) - 1 + 3  # the expression has s − 3 tokens
    return len(text) + 1  # s − 1 symbols, then the answer


def alphabet(task) -> str:
    """The characters its rendered inputs may hold."""
    if task.name.startswith("mod_arith"):
        return "".join(str(d) for d in range(task.modulus)) + "+-*()="
    return {"parity": "01", "cycle_nav": "LSR", "even_pairs": "ab"}[task.name]
CASES = [(name, {}) for name in TASKS] + [("mod_arith_brackets", {"mult": True}),
                                          ("mod_arith", {"modulus": 7, "operators": "-*"})]


def _case_id(case: tuple[str, dict]) -> str:
    return case[0] + "".join(f"-{k}={v}" for k, v in case[1].items())


def _check_batch(task, batch, min_len: int, max_len: int) -> list[str]:
    """Structure and answers of every row; returns the rendered rows."""
    n, width = batch.inputs.shape
    assert batch.inputs.dtype == batch.labels.dtype == batch.lengths.dtype == np.int64
    assert batch.labels.shape == (n, width) and batch.lengths.shape == (n,)
    real = batch.inputs != task.pad_id
    count = real.sum(axis=1)
    assert width == count.max(), "a batch is as long as its longest row"
    assert (real == (np.arange(width)[None] < count[:, None])).all(), "pads only at the end"
    labelled = batch.labels != NO_LOSS
    assert (labelled.sum(axis=1) == 1).all(), "exactly one supervised position per row"
    assert (labelled[np.arange(n), count - 1]).all(), "the answer sits at the last real input"
    assert np.isin(batch.labels[labelled], task.answer_tokens).all()
    assert batch.lengths.min() >= min_len and batch.lengths.max() <= max_len
    texts = []
    for row, label, s, k in zip(batch.inputs, batch.labels, batch.lengths, count, strict=True):
        text = task.render(row)
        assert set(text) <= set(alphabet(task)), text
        assert [task.vocab.index(c) for c in text] == row[:k].tolist(), "render is one char a token"
        assert paper_length(task, text) == s, (text, s)
        assert task.vocab[label[k - 1]] == solve(task, text), (text, task.vocab[label[k - 1]])
        texts.append(text)
    return texts


# --------------------------------------------------------------------------- answers
@pytest.mark.parametrize("case", CASES, ids=_case_id)
@pytest.mark.parametrize(("lengths", "n"), [(TRAIN, 3000), (TEST, 600)], ids=["train", "test"])
def test_labels_equal_an_independent_solver(case, lengths, n):
    name, options = case
    task = get_task(name, **options)
    batch = task.sample(n=n, min_len=lengths[0], max_len=lengths[1],
                        rng=np.random.default_rng([len(name), *lengths]))
    texts = _check_batch(task, batch, *lengths)
    if name == "mod_arith":
        assert (batch.lengths % 2 == 1).all(), "mod_arith lengths are odd"
        ops = options.get("operators", "+-*")
        digit = f"[0-{task.modulus - 1}]"
        assert all(re.fullmatch(rf"{digit}([{re.escape(ops)}]{digit})*=", t) for t in texts)
        assert set("".join(texts)) >= set(ops), "every allowed operator is used"
    if name == "mod_arith_brackets":
        assert ("*" in "".join(texts)) == options.get("mult", False), "mult honoured"
    assert (batch.answers == batch.labels.max(axis=1)).all()


def test_parser_agrees_with_python_evaluation():
    """The test's own parser, checked once against Python's grammar on generated strings."""
    task = get_task("mod_arith_brackets", mult=True)
    batch = task.sample(n=300, min_len=3, max_len=60, rng=np.random.default_rng(7))
    plain = get_task("mod_arith").sample(n=300, min_len=3, max_len=60,
                                         rng=np.random.default_rng(8))
    texts = [task.render(r)[:-1] for r in batch.inputs]
    texts += [get_task("mod_arith").render(r)[:-1] for r in plain.inputs]
    for text in texts:
        assert re.fullmatch(r"[0-9+\-*()]+", text)
        assert _Parser(text).parse() == eval(text), text  # noqa: S307 (digits and + - * ( ) only)


def test_short_bracket_expressions_have_the_paper_forms():
    task = get_task("mod_arith_brackets")
    batch = task.sample(n=600, min_len=5, max_len=8, rng=np.random.default_rng(3))
    forms = {5: r"-\d", 6: r"\(\d\)", 7: r"\(-\d\)", 8: r"\(\d[+-]\d\)"}
    for row, s in zip(batch.inputs, batch.lengths, strict=True):
        assert re.fullmatch(forms[int(s)] + "=", task.render(row)), (task.render(row), s)


def _left_operand_length(expression: str) -> int:
    """|L| of ``(L op R)``: a digit, ``-d``, or a bracketed group."""
    if expression[1] != "(":
        return 1 if expression[1].isdigit() else 2
    depth = 0
    for i, c in enumerate(expression[1:], start=1):
        depth += {"(": 1, ")": -1}.get(c, 0)
        if depth == 0:
            return i
    raise AssertionError(f"unbalanced {expression!r}")


def test_bracket_split_is_uniform():
    """PAPER.md: in ``(L op R)`` of length ℓ, |L| is uniform on [1, ℓ − 4]."""
    task = get_task("mod_arith_brackets")
    batch = task.sample(n=2000, min_len=15, max_len=15, rng=np.random.default_rng(4))
    left = [_left_operand_length(task.render(r)[:-1]) for r in batch.inputs]
    counts = np.bincount(left, minlength=10)
    assert counts[0] == 0 and counts[9:].sum() == 0, counts  # ℓ = 12: |L| ∈ [1, 8]
    assert (np.abs(counts[1:9] / 250 - 1) < 0.4).all(), counts  # 250 ± 6 standard errors


# --------------------------------------------------------------------------- distributions
@pytest.mark.parametrize("case", [c for c in CASES if not c[1].get("mult")], ids=_case_id)
def test_answers_are_roughly_balanced(case):
    """Each class within 0.04 of 1/C over 4000 samples: ~5 standard errors (≤ 0.008) beyond
    the small real skew of short examples (≤ 0.01). ``mult=True`` is skewed towards 0 by design."""
    task = get_task(case[0], **case[1])
    batch = task.sample(n=4000, min_len=3, max_len=40, rng=np.random.default_rng(11))
    freq = np.bincount(batch.answers, minlength=len(task.vocab))[task.answer_tokens] / 4000
    assert np.abs(freq - 1 / task.num_classes).max() < 0.04, freq
    assert len(task.answer_tokens) == task.num_classes


@pytest.mark.parametrize("name", list(TASKS))
def test_lengths_are_uniform_over_the_allowed_values(name):
    task = get_task(name)
    lengths = task.sample(n=6000, min_len=3, max_len=40, rng=np.random.default_rng(5)).lengths
    allowed = range(3, 41, 2) if name == "mod_arith" else range(3, 41)
    expected = {s: 1.0 / len(allowed) for s in allowed}
    if name == "mod_arith_brackets":  # 3, 4 and 5 all become 5
        expected = {s: (1.0 if s > BRACKETS_FLOOR else 3.0) / len(allowed)
                    for s in allowed if s >= BRACKETS_FLOOR}
    counts = {s: int((lengths == s).sum()) for s in set(lengths.tolist())}
    assert set(counts) == set(expected)
    for s, p in expected.items():  # 6000·p ≥ 150 per value: ±40% is over 5 standard errors
        assert abs(counts[s] / (6000 * p) - 1) < 0.4, (s, counts[s], 6000 * p)


# --------------------------------------------------------------------------- options
def test_operators_and_modulus_options_are_honoured():
    task = get_task("mod_arith", modulus=3, operators="+")
    assert task.num_classes == 3 and task.answer_tokens == [0, 1, 2]
    assert "-" not in task.vocab and "*" not in task.vocab and task.options == {
        "modulus": 3, "operators": "+"}
    batch = task.sample(n=500, min_len=3, max_len=21, rng=np.random.default_rng(0))
    texts = _check_batch(task, batch, 3, 21)
    assert set("".join(texts)) == set("012+=")


def test_same_seed_same_batch_other_seed_other_batch():
    for name in TASKS:
        task = get_task(name)
        a, b, c = (task.sample(n=64, min_len=3, max_len=40, rng=np.random.default_rng(s))
                   for s in (1, 1, 2))
        for field in ("inputs", "labels", "lengths"):
            assert np.array_equal(getattr(a, field), getattr(b, field)), (name, field)
        assert not np.array_equal(a.inputs, c.inputs) or a.inputs.shape != c.inputs.shape


@pytest.mark.parametrize(("name", "options", "words"), [
    ("nope", {}, ["nope", "parity", "mod_arith_brackets"]),
    ("parity", {"modulus": 5}, ["modulus", "none"]),
    ("mod_arith", {"modulos": 5}, ["modulos", "modulus", "operators"]),
    ("mod_arith_brackets", {"mul": True}, ["mul", "mult"]),
    ("mod_arith", {"modulus": 1}, ["modulus", "[2, 10]"]),
    ("mod_arith", {"modulus": 11}, ["modulus", "11"]),
    ("mod_arith", {"modulus": "5"}, ["modulus", "'5'"]),
    ("mod_arith", {"operators": "+/"}, ["operators", "+/"]),
    ("mod_arith", {"operators": ""}, ["operators"]),
    ("mod_arith_brackets", {"mult": "yes"}, ["mult", "yes"]),
])
def test_bad_task_or_option_names_it(name, options, words):
    with pytest.raises(ValueError) as err:
        get_task(name, **options)
    for word in words:
        assert word in str(err.value), (word, str(err.value))


@pytest.mark.parametrize(("name", "kwargs", "words"), [
    ("parity", {"min_len": 1}, ["min_len", "2", "1"]),
    ("mod_arith", {"min_len": 2}, ["min_len", "3"]),
    ("mod_arith", {"min_len": 4, "max_len": 4}, ["odd", "4"]),
    ("mod_arith_brackets", {"min_len": 3, "max_len": 4}, ["max_len", "5", "4"]),
    ("mod_arith_brackets", {"min_len": 0}, ["min_len", "0"]),
    ("cycle_nav", {"min_len": 10, "max_len": 9}, ["max_len", "10", "9"]),
    ("even_pairs", {"n": 0}, ["n", "0"]),
    ("even_pairs", {"n": 2.5}, ["n", "2.5"]),
    ("parity", {"rng": 0}, ["rng", "Generator"]),
])
def test_bad_sample_arguments_name_them(name, kwargs, words):
    args = {"n": 4, "min_len": 3, "max_len": 40, "rng": np.random.default_rng(0)} | kwargs
    with pytest.raises(ValueError) as err:
        get_task(name).sample(**args)
    for word in words:
        assert word in str(err.value), (word, str(err.value))


def test_every_task_exposes_the_contract():
    for name in TASKS:
        task = get_task(name)
        assert task.name == name and task.options == task_options(name)
        assert task.vocab[task.pad_id] == "<pad>" and len(set(task.vocab)) == len(task.vocab)
        assert task.pad_id not in task.answer_tokens
        assert all(d in task.vocab for d in ("0", "1") if name != "even_pairs")
        if name.startswith("mod_arith"):
            assert [task.vocab[t] for t in task.answer_tokens] == [str(d) for d in range(5)]


# --------------------------------------------------------------------------- CLI
def _cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    tasks_cli.configure(parser)
    return tasks_cli.run(parser.parse_args(argv))


def test_cli_list_names_every_task_and_option(capsys):
    assert _cli(["list"]) == 0
    out = capsys.readouterr().out
    for name in TASKS:
        assert name in out
    assert "modulus=5" in out and "mult=False" in out


def test_cli_show_prints_solvable_examples(capsys):
    argv = ["show", "mod_arith_brackets", "-n", "7", "--min-len", "5", "--max-len", "30",
            "--seed", "3", "--option", "mult=true", "--option", "modulus=7"]
    assert _cli(argv) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("s=")]
    assert len(lines) == 7
    for line in lines:
        m = re.fullmatch(r"s=(\d+)\s+(\S+)\s+->\s+(\d)", line)
        assert m, line
        assert solve_arith(m.group(2), 7) == m.group(3)
        assert int(m.group(1)) == len(m.group(2)) + 2


def test_cli_show_reports_bad_options(capsys):
    assert _cli(["show", "mod_arith", "--option", "modulos=7"]) == 2
    assert "modulos" in capsys.readouterr().err
    assert _cli(["show", "mod_arith_brackets", "--option", "mult=maybe"]) == 2
    assert "maybe" in capsys.readouterr().err
