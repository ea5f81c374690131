"""scripts/dev/constant_answer_baseline.py: the best single answer's score on a run's test set."""

from __future__ import annotations

import numpy as np
from repo_scripts import load_script

from statetrack.experiment.evaluation import TEST_STREAM, data_rng, scaled_accuracy
from statetrack.tasks import NO_LOSS, get_task


def config(task: str, options: dict, n: int = 512) -> dict:
    return {"task": {"name": task, "options": options},
            "evaluation": {"n": n, "min_len": 40, "max_len": 96, "seed": 0}}


def test_scores_are_the_answer_frequencies_of_the_runs_own_test_set() -> None:
    """Each class's score is its share of the labelled answers on the set drawn from the run's
    data seed (drawn again here), scaled; the shares sum to one."""
    tool = load_script("scripts/dev/constant_answer_baseline.py")
    cfg = config("mod_arith_brackets", {"mult": True})
    scores = tool.constant_scores(cfg)
    task = get_task("mod_arith_brackets", mult=True)
    data = task.sample(512, 40, 96, data_rng(0, TEST_STREAM, 0))
    labels = data.labels[data.labels != NO_LOSS]
    for c in range(task.num_classes):
        assert np.isclose(scores[c], scaled_accuracy(np.mean(labels == c), task.num_classes))
    shares = [s * (1 - 1 / task.num_classes) + 1 / task.num_classes for s in scores.values()]
    assert np.isclose(sum(shares), 1.0)
    assert tool.constant_scores({**cfg, "evaluation": {**cfg["evaluation"], "seed": 1}}) != scores


def test_with_times_the_answer_zero_beats_chance_and_without_it_does_not() -> None:
    """With `mult: true` a product with a 0 factor is 0, so 0 is the commonest answer and
    answering it always scores well above 0; with + and - alone no answer does."""
    tool = load_script("scripts/dev/constant_answer_baseline.py")
    with_times = tool.constant_scores(config("mod_arith_brackets", {"mult": True}, n=2048))
    without = tool.constant_scores(config("mod_arith_brackets", {"mult": False}, n=2048))
    assert max(with_times, key=with_times.get) == 0 and with_times[0] > 0.08
    assert max(without.values()) < 0.05
