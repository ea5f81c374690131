"""scripts/dev/seed_rank_sum.py: the rank-sum z behind the results READMEs' seed comparisons."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from repo_scripts import load_script

script = load_script("scripts/dev/seed_rank_sum.py")


def write_runs(root: Path, values: list[float]) -> None:
    for seed, value in enumerate(values):
        run = root / f"seed={seed}"
        run.mkdir(parents=True)
        (run / "summary.json").write_text(json.dumps({"scaled_accuracy": value}))


def test_rank_sum_by_hand_with_a_tie() -> None:
    """a = [1, 3], b = [2, 3, 5]: pooled ranks 1, 2, 3.5, 3.5, 5, so W_b = 2 + 3.5 + 5 = 10.5,
    its mean 3 · 6 / 2 = 9 and sd √(2 · 3 · 6 / 12) = √3."""
    r = script.rank_sum([1.0, 3.0], [2.0, 3.0, 5.0])
    assert r["W"] == 10.5 and r["mean"] == 9.0
    assert r["sd"] == pytest.approx(math.sqrt(3.0))
    assert r["z"] == pytest.approx(1.5 / math.sqrt(3.0))
    assert script.rank_sum([2.0, 3.0, 5.0], [1.0, 3.0])["z"] == pytest.approx(
        -1.5 / math.sqrt(3.0))  # the other group's z is the opposite


def test_groups_read_every_run_under_a_folder_once(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    write_runs(tmp_path / "a", [0.1, 0.2, 0.3])
    write_runs(tmp_path / "b", [0.4, 0.5, 0.99])
    # b named twice (its folder and one of its runs): that run still counts once
    assert script.main(["--a", str(tmp_path / "a"), "--b", str(tmp_path / "b"),
                        str(tmp_path / "b" / "seed=0"), "--at", "0.99", "0.45"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "a: n=3, median 0.200, 0 at or above 0.99, 0 at or above 0.45"
    assert out[1] == "b: n=3, median 0.500, 1 at or above 0.99, 2 at or above 0.45"
    assert out[2] == "rank sum of b: W=15, expected 10.5 ± 2.29, z=1.96"


def test_a_path_without_runs_is_an_error(tmp_path: Path) -> None:
    write_runs(tmp_path / "a", [0.1])
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit):
        script.main(["--a", str(tmp_path / "a"), "--b", str(tmp_path / "empty")])
