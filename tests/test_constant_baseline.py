"""The constant-answer floor: statetrack.experiment.evaluation.constant_answer_accuracy and
scripts/dev/constant_answer_baseline.py, which prints it for run directories."""

from __future__ import annotations

import numpy as np
from repo_scripts import load_script

from statetrack.experiment.evaluation import (
    TEST_STREAM,
    constant_answer_accuracy,
    data_rng,
    scaled_accuracy,
)
from statetrack.tasks import NO_LOSS, get_task


def config(task: str, options: dict, n: int = 512) -> dict:
    return {"task": {"name": task, "options": options},
            "evaluation": {"n": n, "min_len": 40, "max_len": 96, "seed": 0}}


def test_each_answer_scores_its_share_of_the_answers_evaluate_would_see() -> None:
    """Each answer token's accuracy is its share of the labelled positions of the set drawn
    from the same generator as evaluate's (drawn again here); the shares sum to one."""
    task = get_task("mod_arith_brackets", mult=True)
    shares = constant_answer_accuracy(task, min_len=40, max_len=96, n=512,
                                      rng=data_rng(0, TEST_STREAM, 0))
    data = task.sample(512, 40, 96, data_rng(0, TEST_STREAM, 0))
    labels = data.labels[data.labels != NO_LOSS]
    assert sorted(shares) == sorted(task.answer_tokens)
    for token in task.answer_tokens:
        assert np.isclose(shares[token], np.mean(labels == token))
    assert np.isclose(sum(shares.values()), 1.0)
    other = constant_answer_accuracy(task, min_len=40, max_len=96, n=512,
                                     rng=data_rng(1, TEST_STREAM, 0))
    assert other != shares


def test_with_times_the_answer_zero_beats_chance_and_without_it_does_not() -> None:
    """With `mult: true` a product with a 0 factor is 0, so 0 is the commonest answer and
    giving it always scores well above 0; with + and - alone no answer does. The script
    reports the same numbers scaled, by answer."""
    tool = load_script("scripts/dev/constant_answer_baseline.py")
    with_times = tool.constant_scores(config("mod_arith_brackets", {"mult": True}, n=2048))
    without = tool.constant_scores(config("mod_arith_brackets", {"mult": False}, n=2048))
    assert max(with_times, key=with_times.get) == "0" and with_times["0"] > 0.08
    assert max(without.values()) < 0.05
    task = get_task("mod_arith_brackets", mult=True)
    raw = constant_answer_accuracy(task, min_len=40, max_len=96, n=2048,
                                   rng=data_rng(0, TEST_STREAM, 0))
    assert np.isclose(with_times["0"], scaled_accuracy(raw[0], task.num_classes))


def test_plots_dash_the_floor_only_where_it_lies_above_chance() -> None:
    """statetrack plot's dashed line (evaluation.constant_floor): mod_arith_brackets with ×
    gets one at the share of 0s, parity and the + - task none."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from statetrack.experiment import plots
    from statetrack.experiment.evaluation import constant_floor

    times = config("mod_arith_brackets", {"mult": True}, n=2048)
    task = get_task("mod_arith_brackets", mult=True)
    shares = constant_answer_accuracy(task, min_len=40, max_len=96, n=2048,
                                      rng=data_rng(0, TEST_STREAM, 0))
    assert constant_floor(times) == ("0", shares[0])
    assert constant_floor(config("mod_arith_brackets", {"mult": False})) is None
    assert constant_floor(config("parity", {})) is None

    def dashed(cfg: dict) -> list[float]:
        run_cfg = {**cfg, "training": {"min_len": 3, "max_len": 40}}
        fig, ax = plt.subplots()
        plots._draw_panel(ax, [("t", run_cfg, {"num_classes": 5}, ([40.0], [0.5]), "m")],
                          {"m": "C0"})
        levels = [line.get_ydata()[0] for line in ax.get_lines() if line.get_linestyle() == "--"]
        plt.close(fig)
        return levels

    assert dashed(times) == [shares[0]]
    assert dashed(config("mod_arith_brackets", {"mult": False})) == []


def test_the_table_names_the_floor_of_each_column_that_has_one(tmp_path) -> None:
    """statetrack table adds a line for the columns whose commonest answer beats chance, with
    its scaled accuracy, and none when no column has one."""
    import json

    import yaml

    from statetrack.experiment.tables import markdown_table

    def run(name: str, cfg: dict) -> object:
        d = tmp_path / name
        d.mkdir()
        full = {"name": "m", "model": {"mixer": "deltanet"}, **cfg}
        (d / "config.yaml").write_text(yaml.safe_dump(full))
        (d / "summary.json").write_text(json.dumps({"scaled_accuracy": 0.5}))
        return d

    times = run("times", config("mod_arith_brackets", {"mult": True}, n=2048))
    plain = run("plain", config("mod_arith_brackets", {"mult": False}, n=2048))
    task = get_task("mod_arith_brackets", mult=True)
    shares = constant_answer_accuracy(task, min_len=40, max_len=96, n=2048,
                                      rng=data_rng(0, TEST_STREAM, 0))
    floor = scaled_accuracy(shares[0], task.num_classes)
    text = markdown_table([times, plain])
    assert (f"mod_arith_brackets (mult=True): always answering 0 scores {floor:.3f}" in text)
    assert "mod_arith_brackets:" not in text
    assert "always answering" not in markdown_table([plain])
