"""The committed results are self-consistent and rebuild: every summary's accuracy is the
n-weighted mean of its per-length CSV, and `statetrack table` rebuilds a row per run."""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import pytest
import yaml
from repo_scripts import load_script

from statetrack.cli import main
from statetrack.experiment.config import (
    EvaluationSection,
    TrainingSection,
    load_config,
    resolve_model,
)
from statetrack.experiment.paper import without_backend
from statetrack.experiment.sweep_spec import expand, load_sweep

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results"
RUNS = sorted(p.parent for p in RESULTS.rglob("summary.json"))
# each sweep file whose runs are committed, and their directory under results/ (its name unless
# given here)
SWEEP_RESULTS = {"deltanet_unit_keys": "deltanet_keys_gpu"}
SWEEPS = sorted(p.stem for p in (ROOT / "sweeps").glob("*.yaml")
                if (RESULTS / SWEEP_RESULTS.get(p.stem, p.stem)).is_dir())
ARCHIVE = RESULTS / "archive" / "table3_deltanet_torch_init"  # Table 3's DeltaNet to session 22
PROTOCOL = {"training": ("steps", "batch_size", "lr", "final_lr_factor", "warmup_steps",
                         "weight_decay", "decay_norms_and_biases", "grad_clip", "min_len",
                         "max_len", "seed"),
            "evaluation": ("min_len", "max_len", "n")}
DEFAULTS = {section: {f.name: f.default for f in dataclasses.fields(cls)}
            for section, cls in (("training", TrainingSection), ("evaluation", EvaluationSection))}


def table_rows(capsys: pytest.CaptureFixture[str], paths: list[Path], prefix: str = "| deltanet"
               ) -> list[str]:
    """The rows `statetrack table PATHS` prints that start with ``prefix``."""
    assert main(["table", *map(str, paths)]) == 0
    return [line for line in capsys.readouterr().out.splitlines() if line.startswith(prefix)]


def labels_of(rows: list[str]) -> list[str]:
    """Each row's first cell: the model, with the settings that split it from others."""
    return [row.split("|")[1].strip() for row in rows]


def assert_in_readmes(rows: list[str], results_dir: Path) -> None:
    """Every row stands in the root README and in ``results_dir``'s README."""
    for readme in (ROOT / "README.md", results_dir / "README.md"):
        assert all(row in readme.read_text() for row in rows), readme


@pytest.mark.parametrize("run", RUNS, ids=lambda p: str(p.relative_to(RESULTS)))
def test_summary_accuracy_is_the_mean_of_its_eval_csv(run: Path) -> None:
    summary = json.loads((run / "summary.json").read_text())
    with open(run / "eval.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    n = sum(int(r["n"]) for r in rows)
    accuracy = sum(int(r["n"]) * float(r["accuracy"]) for r in rows) / n
    assert n == summary["eval_n"]
    assert accuracy == pytest.approx(summary["accuracy"], abs=1e-6)  # the CSV keeps 6 digits
    assert (run / "config.yaml").is_file() and not (run / "checkpoint").exists()


@pytest.mark.parametrize("name", SWEEPS)
def test_each_sweep_file_trains_the_runs_committed_from_it(name: str) -> None:
    """Every committed run under a sweep's results directory is one of the sweep's points, and
    the point's config gives it the run's model (up to the kernel backend), task and protocol:
    so the sweep file regenerates the runs, and a config changed since (Table 3's DeltaNet took
    the paper's init in session 23) is caught where it would no longer."""
    out = RESULTS / SWEEP_RESULTS.get(name, name)
    points = {p.name: p for p in expand(load_sweep(ROOT / "sweeps" / f"{name}.yaml"), out, [])}
    runs = sorted(p.parent for p in out.rglob("summary.json"))
    assert runs, f"{out} holds no runs"
    for run in runs:
        rel = str(run.relative_to(out))
        assert rel in points, f"{rel}: not a point of sweeps/{name}.yaml"
        point = points[rel]
        want = load_config(point.config, point.set_items()).to_dict()
        have = yaml.safe_load((run / "config.yaml").read_text())
        assert (without_backend(resolve_model(have["model"]))
                == without_backend(resolve_model(want["model"]))), rel
        assert have["task"] == want["task"], rel
        for section, keys in PROTOCOL.items():
            for key in keys:  # a key added since the run was written has its default there
                had = have[section].get(key, DEFAULTS[section][key])
                assert had == want[section][key], f"{rel}: {section}.{key}"


def test_table_rebuilds_from_committed_runs(capsys: pytest.CaptureFixture[str]) -> None:
    assert RUNS, "results/ holds committed runs"
    assert main(["table", str(RESULTS)]) == 0
    out = capsys.readouterr().out
    for run in RUNS:  # a row "name" or, where runs of one name differ, "name (key=value)"
        summary = json.loads((run / "summary.json").read_text())
        assert f"| {summary['model']} |" in out or f"| {summary['model']} (" in out


def test_readme_table3_is_what_statetrack_table_prints(capsys: pytest.CaptureFixture[str]) -> None:
    """The README's Table 3 is the output of `statetrack table results/table3`, row for row."""
    assert main(["table", str(RESULTS / "table3")]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("|")]
    assert len(rows) == 2 + 7  # header, rule, the seven models
    readme = (RESULTS.parent / "README.md").read_text()
    missing = [row for row in rows if row not in readme]
    assert not missing, f"README rows differ from `statetrack table results/table3`: {missing}"


def test_readme_cpu_key_check_is_what_statetrack_table_prints(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The README's CPU check of bf16 keys is `statetrack table results/deltanet_keys_cpu`."""
    assert main(["table", str(RESULTS / "deltanet_keys_cpu")]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("|")]
    assert len(rows) == 2 + 3  # header, rule, float32 / bf16 / bf16 with unit_keys
    readme = (RESULTS.parent / "README.md").read_text()
    assert all(row in readme for row in rows)


def test_readme_gpu_key_check_is_what_statetrack_table_prints(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The README's H200 check of `unit_keys` is `statetrack table results/deltanet_keys_gpu`:
    one row each for the runs with and without it (one name, two models)."""
    assert main(["table", str(RESULTS / "deltanet_keys_gpu")]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("|")]
    assert [row.split("|")[1].strip() for row in rows[2:]] == [
        "deltanet_neg (unit_keys=False)", "deltanet_neg (unit_keys=True)"]
    readme = (RESULTS.parent / "README.md").read_text()
    assert all(row in readme for row in rows)


def test_readme_fla_init_check_is_what_statetrack_table_prints(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The README's DeltaNet rows with fla's init are `statetrack table
    results/archive/table3_deltanet_torch_init/parity results/deltanet_fla_init`: each DeltaNet
    name split into its two models, PyTorch's init (Table 3's until session 22) and fla's,
    never pooled."""
    rows = table_rows(capsys, [ARCHIVE / "parity", RESULTS / "deltanet_fla_init"])
    assert labels_of(rows) == [
        "deltanet (init=fla, mlp_ratio=6.0)", "deltanet (init=torch, mlp_ratio=4.0)",
        "deltanet_neg (init=fla, mlp_ratio=6.0)", "deltanet_neg (init=torch, mlp_ratio=4.0)"]
    readme = (RESULTS.parent / "README.md").read_text()
    assert all(row in readme for row in rows)


def test_readme_text_protocol_check_is_what_statetrack_table_prints(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The README's DeltaNet [−1, 1] mod_arith rows under the two protocols are `statetrack table
    results/archive/table3_deltanet_torch_init/mod_arith/deltanet_neg
    results/deltanet_text_protocol`: Table 3's runs to session 22 (public configs, PyTorch's
    init) and the paper text's (3 layers, batch 1024, clipping) in rows of their own, never
    pooled."""
    rows = table_rows(capsys, [ARCHIVE / "mod_arith" / "deltanet_neg",
                               RESULTS / "deltanet_text_protocol"], prefix="| deltanet_neg")
    labels = labels_of(rows)
    assert "deltanet_neg (n_layers=2, batch_size=256, grad_clip=None, lr=0.001)" in labels
    # a row per learning rate of the text's grid that has finished runs
    text_runs = RESULTS / "deltanet_text_protocol"
    rates = {yaml.safe_load((p.parent / "config.yaml").read_text())["training"]["lr"]
             for p in text_runs.rglob("summary.json")}
    text = [label for label in labels if "n_layers=3, batch_size=1024, grad_clip=1.0" in label]
    assert len(text) == len(rates) >= 3 and len(labels) == len(text) + 1
    assert_in_readmes(rows, text_runs)


def test_readme_parity_text_protocol_check_is_what_statetrack_table_prints(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The README's DeltaNet parity rows under the two protocols are `statetrack table
    results/archive/table3_deltanet_torch_init/parity results/deltanet_parity_text_protocol`:
    per model, the row of Table 3's runs to session 22 and one per rate of the text's grid
    (batch 1024, clipping), never pooled."""
    parity = ARCHIVE / "parity"
    text_runs = RESULTS / "deltanet_parity_text_protocol"
    rows = table_rows(capsys, [parity / "deltanet", parity / "deltanet_neg", text_runs])
    labels = labels_of(rows)
    rates = {yaml.safe_load((p.parent / "config.yaml").read_text())["training"]["lr"]
             for p in text_runs.rglob("summary.json")}
    for model in ("deltanet", "deltanet_neg"):
        mine = [label for label in labels if label.startswith(f"{model} (")]
        assert f"{model} (batch_size=256, grad_clip=None, lr=0.001)" in mine
        assert len(mine) == len(rates) + 1 == 5
    assert_in_readmes(rows, text_runs)


@pytest.mark.parametrize("dirs, labels, readme", [
    (["archive/table3_deltanet_torch_init/parity", "deltanet_parity_no_conv"],
     ["deltanet (conv_kernel=1)", "deltanet (conv_kernel=4)", "deltanet_neg (conv_kernel=1)",
      "deltanet_neg (conv_kernel=4)"], "deltanet_parity_no_conv"),
    (["archive/table3_deltanet_torch_init", "archive/table3_deltanet_conv_bias"],
     ["deltanet (init=paper, mlp_ratio=6.0)", "deltanet (init=torch, mlp_ratio=4.0)",
      "deltanet_neg (init=paper, mlp_ratio=6.0)", "deltanet_neg (init=torch, mlp_ratio=4.0)"],
     "archive/table3_deltanet_torch_init"),
    (["archive/table3_deltanet_conv_bias", "table3/*/deltanet*"],
     ["deltanet (conv_bias=False)", "deltanet (conv_bias=True)",
      "deltanet_neg (conv_bias=False)", "deltanet_neg (conv_bias=True)"],
     "archive/table3_deltanet_conv_bias"),
])
def test_readme_deltanet_variant_check_is_what_statetrack_table_prints(
    dirs: list[str], labels: list[str], readme: str, capsys: pytest.CaptureFixture[str],
) -> None:
    """The README's DeltaNet rows of a variant of a Table 3 model (no short convolution; the
    init and MLP width before and since session 23; the convolution bias before and since
    session 24) are `statetrack table` over the directories (shell globs) its README names:
    each model split by the setting that differs, in the root README and the variant's own."""
    paths = [p for d in dirs for p in sorted(RESULTS.glob(d))]
    assert len(paths) >= len(dirs)
    rows = table_rows(capsys, paths)
    assert labels_of(rows) == labels
    assert_in_readmes(rows, RESULTS / readme)


def test_readme_nine_seed_parity_check_is_what_statetrack_table_prints(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The README's nine-seed DeltaNet parity rows are `statetrack table` over Table 3's parity
    runs and results/deltanet_parity_seeds: one row per model pooling seeds 0–8 (the extra seeds
    are Table 3's model exactly, so they share its row and its paper value)."""
    parity = RESULTS / "table3" / "parity"
    extra = RESULTS / "deltanet_parity_seeds"
    rows = table_rows(capsys, [parity / "deltanet", parity / "deltanet_neg", extra])
    assert labels_of(rows) == ["deltanet", "deltanet_neg"]
    assert all("n=9)" in row and "/ paper" in row for row in rows)
    assert_in_readmes(rows, extra)


@pytest.mark.parametrize("model", ["deltanet", "mamba"])
def test_readme_harness_details_are_what_statetrack_table_prints(
    capsys: pytest.CaptureFixture[str], model: str,
) -> None:
    """The README's "harness details" rows are `statetrack table` over Table 3's mod_arith runs
    of a model and its harness sweep: four rows, Table 3's (the paper's model, with its value)
    and the harness's of each eigenvalue range, in both READMEs."""
    table3 = RESULTS / "table3" / "mod_arith"
    extra = RESULTS / f"{model}_harness_arith"
    rows = table_rows(capsys, [table3 / model, table3 / f"{model}_neg", extra], f"| {model}")
    assert len(rows) == 4 and sum("/ paper" in row for row in rows) == 2
    assert all("n=3)" in row for row in rows)
    assert_in_readmes(rows, extra)


def test_readme_slstm_harness_rows_are_what_statetrack_table_prints(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The README's sLSTM mod_arith rows: Table 3's model (the paper's value beside it) and
    seeds 0–2 of xLSTM's (the cell set beside Table 3's; seed 3 is shown run by run only), in
    both READMEs."""
    extra = RESULTS / "slstm_harness_arith"
    seeds = sorted((extra / "mod_arith" / "slstm").glob("seed=[012]"))
    assert [p.name for p in seeds] == ["seed=0", "seed=1", "seed=2"]
    rows = table_rows(capsys, [RESULTS / "table3" / "mod_arith" / "slstm", *seeds], "| slstm")
    assert [("init=torch" in r, "/ paper" in r, "n=3)" in r) for r in rows] == [
        (True, True, True), (False, False, True)]
    assert_in_readmes(rows, extra)


def test_readme_fla_rows_are_what_statetrack_table_prints(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The README's fla side-by-side rows: statetrack's DeltaNet and fla's, each [0, 1] and
    [−1, 1], seeds 0–2 of the paper's norm eps, in both READMEs; the fla runs started from the
    same seeds as statetrack's."""
    eps = RESULTS / "deltanet_parity_eps" / "parity"
    ours = [run for model in ("deltanet", "deltanet_neg")
            for run in sorted((eps / model).glob("seed=[012]"))]
    fla = RESULTS / "fla_deltanet_parity"
    fla_runs = sorted(p.parent for p in fla.rglob("summary.json"))
    seeds = lambda runs: sorted(json.loads((r / "summary.json").read_text())["seed"] for r in runs)
    assert len(ours) == 6 and seeds(ours) == seeds(fla_runs) == [0, 0, 1, 1, 2, 2]
    rows = [row for row in table_rows(capsys, [*ours, fla], "| ")
            if not row.startswith("| model")]
    assert labels_of(rows) == ["deltanet", "deltanet_neg", "fla_deltanet", "fla_deltanet_neg"]
    assert all("n=3)" in row for row in rows)
    assert_in_readmes(rows, fla)


def test_readme_norm_eps_rows_are_what_statetrack_table_prints(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The README's "norm eps" rows are `statetrack table` over Table 3's DeltaNet runs (with
    the nine parity seeds) and the eps sweeps: on parity a row per model and eps, the paper's
    value beside Table 3's model only; on mod_arith Table 3's, the eps alone and the eps with
    the harness's weight decay. Each sweep's README holds its rows too."""
    table3 = RESULTS / "table3"
    parity_eps, arith_eps = RESULTS / "deltanet_parity_eps", RESULTS / "deltanet_mod_arith_eps"
    parity = table_rows(capsys, [table3 / "parity" / "deltanet", table3 / "parity" / "deltanet_neg",
                                 RESULTS / "deltanet_parity_seeds", parity_eps])
    assert len(parity) == 4 and [("n=9)" in r, "/ paper" in r) for r in parity] == [
        (True, True), (False, False), (True, True), (False, False)]
    arith = table_rows(capsys, [table3 / "mod_arith" / "deltanet_neg",
                                RESULTS / "deltanet_harness_arith" / "mod_arith" / "deltanet_neg",
                                arith_eps])
    assert len(arith) == 3 and sum("n=6)" in r for r in arith) == 1
    for rows, own in ((parity, parity_eps), (arith, arith_eps)):
        assert_in_readmes(rows, own)


def test_readme_twelve_seed_eps_rows_are_what_statetrack_table_prints(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The README's pooled DeltaNet [−1, 1] parity rows: nine seeds of Table 3's model (its
    paper value beside it) and twelve with the paper's eps, in the root README and the extra
    seeds' README."""
    neg = "parity/deltanet_neg"
    more = RESULTS / "deltanet_parity_eps_more"
    rows = table_rows(capsys, [RESULTS / "table3" / neg, RESULTS / "deltanet_parity_seeds" / neg,
                               RESULTS / "deltanet_parity_eps" / neg, more])
    assert len(rows) == 2 and "n=9)" in rows[0] and "/ paper" in rows[0] and "n=12)" in rows[1]
    assert_in_readmes(rows, more)


def test_readme_rank_sum_z_of_the_eps_seeds_is_what_the_script_computes() -> None:
    """The z values the READMEs quote for DeltaNet [−1, 1] parity with the paper's eps (six
    seeds, then twelve) against Table 3's model (nine seeds) are seed_rank_sum.py's."""
    script = load_script("scripts/dev/seed_rank_sum.py")
    neg = "parity/deltanet_neg"
    table3 = script.scores([RESULTS / "table3" / neg, RESULTS / "deltanet_parity_seeds" / neg])
    six = script.scores([RESULTS / "deltanet_parity_eps" / neg])
    twelve = six + script.scores([RESULTS / "deltanet_parity_eps_more"])
    z6, z12 = (round(script.rank_sum(table3, b)["z"], 1) for b in (six, twelve))
    assert (len(table3), len(six), len(twelve)) == (9, 6, 12)
    assert f"z over the 21 scores is {z12} ({z6} with six)" in (ROOT / "README.md").read_text()
    assert f"falls from {z6} (six seeds) to {z12}" in (
        RESULTS / "deltanet_parity_eps_more" / "README.md").read_text()
