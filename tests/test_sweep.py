"""statetrack sweep: grid expansion, strict validation, resume, failures, and end-to-end launches.

The launcher tests use a stand-in trainer (a script taking ``train``'s arguments) so they are
fast and can fail on purpose; the end-to-end tests run the real ``statetrack train`` on a tiny
config through the local launcher and through submitit's local executor.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from statetrack.experiment import sweep as sweep_cmd
from statetrack.experiment.sweep_launch import local_slots, mps_daemon
from statetrack.experiment.sweep_run import (
    DONE,
    NOT_STARTED,
    PARTIAL,
    Progress,
    Running,
    point_state,
    run_fraction,
)
from statetrack.experiment.sweep_spec import (
    SEED_KEY,
    SweepError,
    expand,
    format_value,
    load_sweep,
    parse_set,
    parse_sweep,
)

REPO = Path(__file__).resolve().parents[1]
SAFE_NAME = re.compile(r"^[A-Za-z0-9_.+\-=/]+$")

# A stand-in for `statetrack train CONFIG --set k=v ... --out DIR` and `statetrack train --resume
# DIR`: it records its arguments, fails when training.seed is in FAIL_SEEDS, and otherwise writes
# summary.json.
FAKE_TRAIN = """
import json, os, sys
from pathlib import Path
argv = sys.argv[1:]
if argv[0] == "--resume":
    config, sets, out, resume = None, {}, Path(argv[1]), argv[1]
else:
    config, rest = argv[0], argv[1:]
    sets = dict(rest[i + 1].split("=", 1) for i in range(len(rest)) if rest[i] == "--set")
    out, resume = Path(rest[rest.index("--out") + 1]), None
with open(Path(__file__).with_name("calls.jsonl"), "a") as f:
    call = {"config": config, "sets": sets, "out": str(out), "resume": resume}
    if "CUDA_MPS_PIPE_DIRECTORY" in os.environ:  # the MPS daemon this run was given
        call["mps"] = os.environ["CUDA_MPS_PIPE_DIRECTORY"]
    f.write(json.dumps(call) + "\\n")
if int(sets.get("training.seed", -1)) in FAIL_SEEDS:
    print("boom: this seed is set up to fail", file=sys.stderr)
    sys.exit(3)
out.mkdir(parents=True, exist_ok=True)
(out / "summary.json").write_text(json.dumps({"sets": sets}))
"""


def write_config(path: Path, task: str = "parity") -> Path:
    """A tiny but real experiment config: d_model 16, one layer, a few steps, a tiny evaluation."""
    config = {
        "name": path.stem,
        "task": {"name": task},
        "model": {"d_model": 16, "n_layers": 1, "mixer": "deltanet",
                  "mixer_options": {"num_heads": 2, "eig_range": [-1, 1]}},
        "training": {"steps": 4, "batch_size": 8, "max_len": 10, "log_every": 2,
                     "val_every": 0, "checkpoint_every": 0, "device": "cpu"},
        "evaluation": {"min_len": 10, "max_len": 12, "n": 16, "batch_size": 16, "val_n": 8},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config))
    return path


def write_sweep(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def fake_train(tmp_path: Path, fail_seeds: tuple[int, ...] = ()) -> str:
    script = tmp_path / "fake_train.py"
    script.write_text(f"FAIL_SEEDS = {set(fail_seeds)!r}\n" + FAKE_TRAIN)
    return f"{sys.executable} {script}"


def calls(tmp_path: Path) -> list[dict]:
    path = tmp_path / "calls.jsonl"
    return [json.loads(ln) for ln in path.read_text().splitlines()] if path.exists() else []


def run_sweep(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    sweep_cmd.configure(parser)
    return sweep_cmd.run(parser.parse_args(argv))


def grid_sweep(tmp_path: Path) -> dict:
    write_config(tmp_path / "configs" / "parity" / "deltanet.yaml")
    write_config(tmp_path / "configs" / "mod_arith_brackets" / "deltanet.yaml",
                 task="mod_arith_brackets")
    return {
        "name": "grid",
        "configs": ["configs/*/deltanet.yaml"],
        "seeds": [0, 1],
        "grid": {"training.lr": ["1e-3", 5e-4],
                 "model.mixer_options.eig_range": [[0, 1], [-1, 1]]},
        "variants": [{"name": "mult", "applies_to": "mod_arith_brackets/*",
                      "set": {"task.options.mult": True}}],
    }


# ---------------------------------------------------------------------------- expansion
def test_grid_expands_to_the_full_product_with_unique_safe_names(tmp_path: Path) -> None:
    """Points are exactly configs × (base, matching variants) × grid × seeds, each named once.

    The file spells a learning rate ``1e-3``, which plain YAML 1.1 would read as a string."""
    sweep = load_sweep(write_sweep(tmp_path / "grid.yaml", grid_sweep(tmp_path)))
    points = expand(sweep, tmp_path / "out", [])
    assert points == expand(sweep, tmp_path / "out", [])  # deterministic
    names = [p.name for p in points]
    assert len(set(names)) == len(names) and all(SAFE_NAME.match(n) for n in names)
    assert all(p.run_dir == tmp_path / "out" / p.name for p in points)
    seen = set()
    for p in points:
        sets = dict(p.overrides)
        assert len(sets) == len(p.overrides)  # no key set twice
        variant = sets.get("task.options.mult")
        assert (variant is True) == (p.config.parent.name == "mod_arith_brackets"
                                     and "-mult/" in p.name)
        assert p.name.endswith(f"seed={sets[SEED_KEY]}")
        seen.add((p.config.parent.name, variant, sets["training.lr"],
                  tuple(sets["model.mixer_options.eig_range"]), sets[SEED_KEY]))
    expected = {(task, v, lr, tuple(eig), seed)
                for task, v in [("parity", None), ("mod_arith_brackets", None),
                                ("mod_arith_brackets", True)]
                for lr, eig, seed in itertools.product([1e-3, 5e-4], [[0, 1], [-1, 1]], [0, 1])}
    assert seen == expected and len(points) == len(expected)


def test_table3_sweep_is_seven_models_by_four_tasks_by_three_seeds() -> None:
    sweep = load_sweep(REPO / "sweeps" / "table3.yaml")
    points = expand(sweep, Path("runs/table3"), [])
    assert len(points) == 7 * 4 * 3
    heads = {p.name.rsplit("/", 1)[0] for p in points}
    assert {h.split("/")[0] for h in heads} == {"parity", "mod_arith", "mod_arith_brackets"}
    assert sum(h.endswith("-mult") for h in heads) == 7
    assert all(c.is_file() for c in sweep.configs)
    for p in points:
        mult = dict(p.overrides).get("task.options.mult")
        assert (mult is True) == p.name.split("/")[1].endswith("-mult")
        assert sorted(dict(p.overrides)) == sorted([SEED_KEY] + (["task.options.mult"] if mult
                                                                else []))


@pytest.mark.parametrize("path", sorted((REPO / "sweeps").glob("*.yaml")),
                         ids=lambda p: p.name)
def test_every_committed_sweep_expands_to_configs_that_validate(path: Path) -> None:
    """Each point of each sweep file is a config the trainer accepts: the file parses, its
    configs exist, and every point's overrides validate (a typo in a key or value fails here,
    not on the GPU machine)."""
    from statetrack.experiment.config import load_config

    sweep = load_sweep(path)
    points = expand(sweep, Path("runs") / sweep.name, [])
    assert points and all(c.is_file() for c in sweep.configs)
    names = [p.name for p in points]
    assert len(set(names)) == len(names) and all(SAFE_NAME.match(n) for n in names)
    for p in points:
        config = load_config(p.config, p.set_items())
        assert config.training.seed == dict(p.overrides)[SEED_KEY]


def test_grid_keys_are_named_by_their_shortest_unambiguous_suffix(tmp_path: Path) -> None:
    data = grid_sweep(tmp_path)
    data["grid"] = {"training.lr": [1e-3], "model.mixer_options.lr": [2e-3],
                    "training.warmup_steps": [0]}
    names = [p.name for p in expand(parse_sweep(data, tmp_path), tmp_path, [])]
    assert all("/training.lr=0.001-mixer_options.lr=0.002-warmup_steps=0-seed=" in n
               for n in names)


@settings(max_examples=60, deadline=None)
@given(st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.integers(), st.booleans(),
                 st.lists(st.integers(-3, 3), max_size=3), st.text("abc_-", min_size=1)))
def test_set_values_round_trip_through_the_trainers_yaml_parser(value: object) -> None:
    """``train --set k=TEXT`` reads TEXT with yaml.safe_load; it must get the sweep's value back."""
    assert yaml.safe_load(format_value(value)) == value


# ---------------------------------------------------------------------------- validation
@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.update(seed=[0]), "unknown key 'seed'"),
        (lambda d: d["variants"][0].update(apply_to="x"), "unknown key 'apply_to'"),
        (lambda d: d.update(seeds=[0, "1"]), "seeds"),
        (lambda d: d.update(seeds=[0, 0]), "seeds repeat"),
        (lambda d: d["grid"].update({"training.steps": 10}), "grid.training.steps"),
        (lambda d: d["grid"].update({"lr": [1]}), "dotted config keys"),
        (lambda d: d.update(configs=["nothing/*.yaml"]), "'nothing/*.yaml' matches no file"),
        (lambda d: d.update(set={"training.lr": 1e-4}), "'training.lr' is given by both"),
        (lambda d: d.update(set={SEED_KEY: 3}), "given by both seeds"),
        (lambda d: d.pop("seeds"), "missing key 'seeds'"),
    ],
)
def test_invalid_sweep_files_are_errors_that_name_the_problem(tmp_path, edit, message) -> None:
    data = grid_sweep(tmp_path)
    edit(data)
    with pytest.raises(SweepError, match=re.escape(message)):
        parse_sweep(data, tmp_path)


def test_cli_reports_a_bad_sweep_file_with_exit_status_2(tmp_path, capsys) -> None:
    data = grid_sweep(tmp_path)
    data["seeds_"] = [1]
    path = write_sweep(tmp_path / "bad.yaml", data)
    assert run_sweep([str(path), "--dry-run"]) == 2
    assert "unknown key 'seeds_'" in capsys.readouterr().err
    path = write_sweep(tmp_path / "ok.yaml", grid_sweep(tmp_path))
    assert run_sweep([str(path), "--dry-run", "--set", "training.lr=1e-2"]) == 2
    assert run_sweep([str(path), "--dry-run", "--set", "steps"]) == 2
    assert run_sweep([str(path), "--dry-run", "--per-gpu", "0"]) == 2
    assert run_sweep([str(path), "--dry-run", "--only", "nothing/*"]) == 2
    capsys.readouterr()
    assert run_sweep([str(path), "--dry-run", "--only", "parity/*"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert len(listed) == 1 + 2 * 4 and all(ln.split()[1].startswith("parity/")
                                            for ln in listed[:-1])
    with pytest.raises(SweepError, match="section.key=value"):
        parse_set(["training.steps"])


def test_first_starts_the_matching_points_first_and_keeps_the_order_otherwise(
        tmp_path: Path, capsys) -> None:
    path = write_sweep(tmp_path / "ok.yaml", grid_sweep(tmp_path))
    assert run_sweep([str(path), "--dry-run"]) == 0
    plain = [ln.split()[1] for ln in capsys.readouterr().out.splitlines()[:-1]]
    assert run_sweep([str(path), "--dry-run", "--first", "parity/*",
                      "--first", "*-mult/*"]) == 0
    ordered = [ln.split()[1] for ln in capsys.readouterr().out.splitlines()[:-1]]
    groups = [0 if n.startswith("parity/") else 1 if "-mult/" in n else 2 for n in plain]
    assert sorted(ordered) == sorted(plain) and groups.count(0) == 8 and groups.count(1) == 8
    assert ordered == [n for g in (0, 1, 2) for n, k in zip(plain, groups, strict=True)
                       if k == g]
    assert run_sweep([str(path), "--dry-run", "--first", "nothing/*"]) == 2
    assert "--first nothing/*" in capsys.readouterr().err


def test_a_point_the_config_schema_rejects_stops_the_sweep_before_any_launch(
    tmp_path: Path, capsys
) -> None:
    data = grid_sweep(tmp_path)
    data["grid"]["training.lrr"] = [1e-3]
    path = write_sweep(tmp_path / "typo.yaml", data)
    assert run_sweep([str(path), "--workers", "2", "--train-command", fake_train(tmp_path)]) == 2
    assert "training.lrr" in capsys.readouterr().err and calls(tmp_path) == []
    path = write_sweep(tmp_path / "ok.yaml", grid_sweep(tmp_path))
    assert run_sweep([str(path), "--dry-run", "--set", "training.steps=0"]) == 2
    assert "training.steps" in capsys.readouterr().err


# ---------------------------------------------------------------------------- launching
def test_resume_skips_finished_points_and_resumes_partial_ones(tmp_path: Path, capsys) -> None:
    """done: not launched; a checkpoint: --resume; a dead attempt: moved aside, started afresh."""
    write_config(tmp_path / "parity" / "deltanet.yaml")
    path = write_sweep(tmp_path / "s.yaml", {"name": "s", "configs": ["parity/deltanet.yaml"],
                                             "seeds": [0, 1, 2, 3], "out": str(tmp_path / "out")})
    points = expand(load_sweep(path), tmp_path / "out", [])
    done, partial, stale, fresh = points
    for point in (done, partial, stale):
        point.run_dir.mkdir(parents=True)
        (point.run_dir / "config.yaml").write_text("name: x\n")
    (done.run_dir / "summary.json").write_text("{}")
    (partial.run_dir / "checkpoint").mkdir()
    (partial.run_dir / "checkpoint" / "state.json").write_text("{}")
    assert [point_state(p) for p in points] == [DONE, PARTIAL, NOT_STARTED, NOT_STARTED]
    assert run_sweep([str(path), "--dry-run"]) == 0
    listed = capsys.readouterr().out
    assert all(f"{s:<8}{p.name}" in listed
               for s, p in zip([DONE, PARTIAL, NOT_STARTED, NOT_STARTED], points, strict=True))

    command = fake_train(tmp_path)
    assert run_sweep([str(path), "--workers", "2", "--train-command", command]) == 0
    launched = {c["out"]: c for c in calls(tmp_path)}
    assert set(launched) == {str(p.run_dir) for p in (partial, stale, fresh)}
    assert launched[str(partial.run_dir)] == {"config": None, "sets": {}, "resume":
                                              str(partial.run_dir), "out": str(partial.run_dir)}
    for seed, point in ((2, stale), (3, fresh)):
        assert launched[str(point.run_dir)]["resume"] is None
        assert launched[str(point.run_dir)]["sets"] == {SEED_KEY: str(seed)}
    assert (stale.run_dir.parent / f"{stale.run_dir.name}.stale-1" / "config.yaml").is_file()
    assert all(point_state(p) == DONE for p in points)
    assert run_sweep([str(path), "--workers", "2", "--train-command", command]) == 0
    assert len(calls(tmp_path)) == 3  # a re-run of a finished sweep launches nothing


@pytest.mark.parametrize("launcher", ["local", "submitit-local"])
def test_a_failing_run_is_reported_with_its_log_and_the_others_finish(
    tmp_path: Path, capsys, launcher: str
) -> None:
    write_config(tmp_path / "parity" / "deltanet.yaml")
    path = write_sweep(tmp_path / "s.yaml", {"name": "s", "configs": ["parity/deltanet.yaml"],
                                             "seeds": [0, 1, 2], "out": str(tmp_path / "out")})
    points = expand(load_sweep(path), tmp_path / "out", [])
    argv = [str(path), "--launcher", launcher, "--workers", "2",
            "--train-command", fake_train(tmp_path, fail_seeds=(1,))]
    assert run_sweep(argv) == 1
    err = capsys.readouterr().err
    assert f"FAILED {points[1].name} (exit 3); log: {points[1].log_path}" in err
    assert "boom" in err and "boom" in points[1].log_path.read_text()
    assert [point_state(p) for p in points] == [DONE, NOT_STARTED, DONE]
    assert len(calls(tmp_path)) == 3


def test_a_train_command_that_cannot_start_is_a_reported_failure(tmp_path: Path, capsys) -> None:
    write_config(tmp_path / "parity" / "deltanet.yaml")
    path = write_sweep(tmp_path / "s.yaml", {"name": "s", "configs": ["parity/deltanet.yaml"],
                                             "seeds": [0, 1], "out": str(tmp_path / "out")})
    argv = [str(path), "--workers", "2", "--train-command", str(tmp_path / "no-such-train")]
    assert run_sweep(argv) == 1
    assert capsys.readouterr().err.count("could not start") == 2


def test_local_slots_cover_each_gpu_k_times_or_share_the_cpu(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr("os.cpu_count", lambda: 12)
    slots = local_slots(per_gpu=3, workers=None, gpus=["2", "5"])
    assert sorted(s.env["CUDA_VISIBLE_DEVICES"] for s in slots) == ["2"] * 3 + ["5"] * 3
    assert all(s.env["OMP_NUM_THREADS"] == "2" for s in slots)  # 12 cores over 6 runs
    assert {s.env["CUDA_VISIBLE_DEVICES"] for s in slots[:2]} == {"2", "5"}  # spread first
    cpu = local_slots(per_gpu=1, workers=4, gpus=[])
    assert len(cpu) == 4 and all(s.env["CUDA_VISIBLE_DEVICES"] == "" for s in cpu)
    with pytest.raises(ValueError, match="--per-gpu"):
        local_slots(per_gpu=0, workers=None, gpus=["0"])


# A stand-in for nvidia-cuda-mps-control: records each call (arguments, standard input, pipe
# directory) and starts nothing.
FAKE_MPS = """#!/bin/sh
printf '%s|%s|%s\\n' "$*" "$(cat)" "$CUDA_MPS_PIPE_DIRECTORY" >> "$(dirname "$0")/mps_calls.txt"
"""


def fake_mps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """nvidia-cuda-mps-control on PATH as FAKE_MPS; returns its call log."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    control = bin_dir / "nvidia-cuda-mps-control"
    control.write_text(FAKE_MPS)
    control.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    return bin_dir / "mps_calls.txt"


def test_mps_daemon_starts_checks_and_stops_with_its_own_pipe(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The daemon is started (-d) and stopped (quit on stdin) with the pipe directory under the
    given folder, which every run gets; a probe that fails is an error naming the log directory,
    and the daemon is stopped all the same."""
    log = fake_mps(tmp_path, monkeypatch)
    ok = [sys.executable, "-c", "pass"]
    with mps_daemon(tmp_path / ".mps", probe=ok) as env:
        assert env["CUDA_MPS_PIPE_DIRECTORY"] == str(tmp_path / ".mps" / "pipe")
        assert Path(env["CUDA_MPS_LOG_DIRECTORY"]).is_dir()
        assert log.read_text().splitlines() == [f"-d||{tmp_path / '.mps' / 'pipe'}"]
    assert log.read_text().splitlines()[-1] == f"|quit|{tmp_path / '.mps' / 'pipe'}"
    failing = [sys.executable, "-c", "import sys; sys.exit('no CUDA device')"]
    with pytest.raises(SweepError, match=r"could not run through the daemon; see .*log"):
        with mps_daemon(tmp_path / ".mps", probe=failing):
            pass
    assert log.read_text().splitlines()[-1].startswith("|quit|")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(SweepError, match="nvidia-cuda-mps-control is not on PATH"):
        with mps_daemon(tmp_path / ".mps", probe=ok):
            pass


def test_mps_sweep_gives_every_run_the_daemons_pipe(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """--mps on the local launcher: with a GPU (stubbed) every run's environment names the
    daemon's pipe; with no GPU, or with another launcher, it is refused with exit status 2."""
    log = fake_mps(tmp_path, monkeypatch)
    monkeypatch.setattr("statetrack.experiment.sweep_launch.MPS_PROBE",
                        (sys.executable, "-c", "pass"))
    write_config(tmp_path / "parity" / "deltanet.yaml")
    path = write_sweep(tmp_path / "s.yaml", {"name": "s", "configs": ["parity/deltanet.yaml"],
                                             "seeds": [0, 1], "out": str(tmp_path / "out")})
    argv = [str(path), "--mps", "--train-command", fake_train(tmp_path)]
    monkeypatch.setattr(sweep_cmd, "visible_gpus", lambda: [])
    assert run_sweep(argv) == 2
    assert "--mps: no GPU is visible" in capsys.readouterr().err
    assert run_sweep([*argv, "--launcher", "submitit-local"]) == 2
    assert "only the local launcher" in capsys.readouterr().err
    assert calls(tmp_path) == [] and not log.exists()
    monkeypatch.setattr(sweep_cmd, "visible_gpus", lambda: ["0"])
    assert run_sweep([*argv, "--per-gpu", "2"]) == 0
    pipe = str(tmp_path / "out" / ".mps" / "pipe")
    assert [c["mps"] for c in calls(tmp_path)] == [pipe, pipe]
    assert [line.split("|")[0] for line in log.read_text().splitlines()] == ["-d", ""]


def test_eta_is_the_remaining_work_spread_over_the_slots() -> None:
    progress = Progress("s", total=10, done=2, slots=2, durations=[60.0, 120.0])
    # mean 90 s: 4 queued + one running for 30 s → (4·90 + 60) / 2 = 210 s.
    line = progress.line(running=[Running("a", 30.0)], queued=4)
    assert "ETA 3m30s" in line and "running 1" in line and "queued 4" in line
    assert "ETA ?" in Progress("s", total=3, done=0, slots=1).line(
        running=[Running("a", 1.0)], queued=2)


def test_eta_before_any_point_finished_comes_from_the_running_points_rates() -> None:
    progress = Progress("s", total=4, done=0, slots=2)
    # first sight of a fraction: a reference, no rate yet
    assert "ETA ?" in progress.line(running=[Running("a", 10.0, 0.1)], queued=1)
    # 0.1 of the run in 10 s: 80 s left for "a", 100 s for the queued one → 180 / 2 slots
    line = progress.line(running=[Running("a", 20.0, 0.2)], queued=1)
    assert "ETA 1m30s" in line, line
    # with finished points, queued ones cost their mean (60 s), running ones their own rate
    progress.durations.append(60.0)
    assert "ETA 1m10s" in progress.line(running=[Running("a", 20.0, 0.2)], queued=1)


def test_eta_takes_a_resumed_run_from_where_it_restarted() -> None:
    progress = Progress("s", total=1, done=0, slots=1)
    progress.line(running=[Running("a", 5.0, 0.70)], queued=0)  # an old metrics tail
    # restarted from its checkpoint at 0.5: the reference moves there, no rate yet
    assert "ETA ?" in progress.line(running=[Running("a", 8.0, 0.50)], queued=0)
    # 0.1 in 10 s from there: 0.4 left → 40 s
    assert "ETA 0m40s" in progress.line(running=[Running("a", 18.0, 0.60)], queued=0)


def test_run_fraction_reads_the_last_logged_step(tmp_path: Path) -> None:
    assert run_fraction(tmp_path) is None  # nothing written yet
    (tmp_path / "config.yaml").write_text("training: {steps: 200}\n")
    assert run_fraction(tmp_path) is None  # no log line yet
    (tmp_path / "metrics.jsonl").write_text('{"step": 50}\n{"step": 100, "loss": 0.5}\n')
    assert run_fraction(tmp_path) == 0.5
    (tmp_path / "metrics.jsonl").write_text('{"step": 100}\n{"step": 1')  # cut mid-write
    assert run_fraction(tmp_path) is None


# ---------------------------------------------------------------------------- end to end
@pytest.mark.parametrize("launcher", ["local", "submitit-local"])
def test_two_point_sweep_end_to_end_with_the_real_trainer(tmp_path: Path, launcher: str) -> None:
    from statetrack.cli import main

    write_config(tmp_path / "parity" / "tiny.yaml")
    path = write_sweep(tmp_path / "s.yaml", {"name": "e2e", "configs": ["parity/tiny.yaml"],
                                             "seeds": [0, 1], "out": str(tmp_path / "out")})
    assert main(["sweep", str(path), "--launcher", launcher, "--workers", "2"]) == 0
    points = expand(load_sweep(path), tmp_path / "out", [])
    for seed, point in enumerate(points):
        assert point_state(point) == DONE, point.log_path.read_text()
        resolved = yaml.safe_load((point.run_dir / "config.yaml").read_text())
        assert resolved["training"]["seed"] == seed
        assert (point.run_dir / "eval.csv").is_file()
    stamps = [(p.run_dir / "summary.json").stat().st_mtime_ns for p in points]
    assert main(["sweep", str(path), "--launcher", launcher, "--workers", "2"]) == 0
    assert stamps == [(p.run_dir / "summary.json").stat().st_mtime_ns for p in points]
    if launcher == "local":  # an interrupted run (a checkpoint, no summary) is resumed, not redone
        (points[1].run_dir / "summary.json").unlink()
        assert point_state(points[1]) == PARTIAL
        assert main(["sweep", str(path), "--workers", "2"]) == 0
        assert point_state(points[1]) == DONE
        headers = [ln for ln in points[1].log_path.read_text().splitlines() if ln[:3] == "==="]
        assert len(headers) == 2 and headers[1].endswith(f"train --resume {points[1].run_dir}")
        assert stamps[0] == (points[0].run_dir / "summary.json").stat().st_mtime_ns
