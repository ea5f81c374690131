"""The experiment commands end to end: train → run directory → eval, table, plot, demo."""

from __future__ import annotations

import csv
import json
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from statetrack.cli import main
from statetrack.experiment.config import load_config
from statetrack.experiment.paper import TABLE3

ROOT = Path(__file__).resolve().parents[1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TINY = {
    "name": "tiny",
    "task": {"name": "parity"},
    "model": {"d_model": 16, "n_layers": 1, "mixer": "deltanet",
              "mixer_options": {"num_heads": 2, "eig_range": [-1, 1]}},
    "training": {"steps": 8, "batch_size": 8, "max_len": 12, "log_every": 2,
                 "checkpoint_every": 4, "val_every": 4, "device": "cpu"},
    "evaluation": {"min_len": 12, "max_len": 24, "n": 40, "batch_size": 16, "val_n": 8},
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two seeds of the tiny config trained through the CLI under one root."""
    root = tmp_path_factory.mktemp("runs")
    config = root / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY))
    for seed in (0, 1):
        code = main(["train", str(config), "--set", f"training.seed={seed}", "--out",
                     str(root / "sweep" / f"seed{seed}"), "--quiet"])
        assert code == 0
    return root


def test_train_writes_every_run_directory_file(trained: Path) -> None:
    run = trained / "sweep" / "seed0"
    assert (run / "accuracy_by_length.png").read_bytes().startswith(PNG_MAGIC)
    resolved = yaml.safe_load((run / "config.yaml").read_text())
    assert resolved["training"]["seed"] == 0 and "conv_kernel" in resolved["model"][
        "mixer_options"]
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [2, 4, 6, 8]
    assert {"loss", "accuracy", "lr", "steps_per_second"} <= set(metrics[0])
    with open(run / "eval.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["length", "n", "accuracy", "scaled_accuracy"]
    assert sum(int(r["n"]) for r in rows) == TINY["evaluation"]["n"]
    summary = json.loads((run / "summary.json").read_text())
    for key in ("task", "model", "seed", "accuracy", "scaled_accuracy", "steps", "wall_seconds",
                "device", "statetrack_version"):
        assert key in summary
    assert summary["model"] == "tiny" and summary["steps"] == 8
    assert sorted(p.name for p in (run / "checkpoint").iterdir()) == [
        "model.safetensors", "optimizer.safetensors", "state.json"]


def test_eval_reproduces_the_final_evaluation(trained: Path, capsys) -> None:
    run = trained / "sweep" / "seed1"
    assert main(["eval", str(run), "--out", str(trained / "again.csv")]) == 0
    assert (trained / "again.csv").read_text() == (run / "eval.csv").read_text()
    assert main(["eval", str(run), "--min-len", "30", "--max-len", "40", "--n", "10"]) == 0
    assert "lengths 30–40" in capsys.readouterr().out
    with open(run / "eval_30-40_n10.csv") as f:
        assert all(30 <= int(r["length"]) <= 40 for r in csv.DictReader(f))
    # a precision asked for is named in the file; the run trained and evaluated in float32 (auto
    # on a CPU), so fp32 reproduces its evaluation; bf16 evaluates the same sequences
    e = TINY["evaluation"]
    for precision in ("fp32", "bf16"):
        assert main(["eval", str(run), "--precision", precision]) == 0
    csvs = {p: run / f"eval_{e['min_len']}-{e['max_len']}_n{e['n']}_{p}.csv"
            for p in ("fp32", "bf16")}
    assert csvs["fp32"].read_text() == (run / "eval.csv").read_text()
    with open(csvs["bf16"]) as f, open(run / "eval.csv") as g:
        assert [(r["length"], r["n"]) for r in csv.DictReader(f)] == [
            (r["length"], r["n"]) for r in csv.DictReader(g)]


def test_table_and_plot_accept_a_root_directory(trained: Path, capsys) -> None:
    assert main(["table", str(trained)]) == 0
    table = capsys.readouterr().out
    scores = [json.loads((trained / "sweep" / s / "summary.json").read_text())
              ["scaled_accuracy"] for s in ("seed0", "seed1")]
    row = next(line for line in table.splitlines() if line.startswith("| tiny |"))
    assert f"**{max(scores):.3f}**" in row and f"{statistics.median(scores):.3f} ±" in row
    assert "n=2" in row and "paper" not in row
    png = trained / "plot" / "both.png"
    assert main(["plot", str(trained), "--out", str(png)]) == 0
    assert png.read_bytes().startswith(PNG_MAGIC)


def fake_run(root: Path, config_path: Path, seed: int, scaled: float,
             set_: list[str] | None = None) -> None:
    """A run directory as train leaves it, written by hand (reports read only these files)."""
    config = load_config(config_path, [f"training.seed={seed}", *(set_ or [])])
    run = root / config.task.name / config.name / f"seed{seed}"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(config.to_yaml())
    (run / "eval.csv").write_text("length,n,accuracy,scaled_accuracy\n"
                                  f"40,10,{(1 + scaled) / 2},{scaled}\n")
    (run / "summary.json").write_text(json.dumps({"scaled_accuracy": scaled, "seed": seed,
                                                  "num_classes": 2}))


def test_table_sets_table3_beside_paper_configs_with_median_and_mad(tmp_path: Path,
                                                                     capsys) -> None:
    scores = [0.2, 0.9, 0.5]
    for seed, score in enumerate(scores):
        fake_run(tmp_path, ROOT / "configs/chomsky/parity/deltanet_neg.yaml", seed, score)
    fake_run(tmp_path, ROOT / "configs/chomsky/parity/deltanet.yaml", 0, 0.01)
    assert main(["table", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("| model | parity |")
    neg = next(line for line in lines if line.startswith("| deltanet_neg |"))
    median = statistics.median(scores)
    mad = statistics.median(abs(s - median) for s in scores)
    assert f"**{max(scores):.3f}** ({median:.3f} ± {mad:.3f}, n=3)" in neg
    assert f"paper {TABLE3['deltanet_neg']['parity']:.3f}" in neg
    order = [line.split("|")[1].strip() for line in lines[2:] if line.startswith("| ")]
    assert order == ["deltanet", "deltanet_neg"]  # the paper's row order
    assert main(["plot", str(tmp_path), "--out", str(tmp_path / "p.png")]) == 0


def test_train_refuses_an_existing_run_and_resume_of_a_finished_one_is_a_no_op(
        trained: Path, capsys) -> None:
    run = trained / "sweep" / "seed0"
    assert main(["train", str(trained / "tiny.yaml"), "--out", str(run), "--quiet"]) == 2
    assert "--resume" in capsys.readouterr().err
    assert main(["train", "--resume", str(run)]) == 0
    assert main(["train", "--resume", str(run), "--set", "training.lr=1"]) == 2


def test_the_installed_command_exits_2_on_a_config_error(tmp_path: Path) -> None:
    bad = dict(TINY, training={**TINY["training"], "stpes": 5})
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad))
    proc = subprocess.run([sys.executable, "-m", "statetrack", "train",
                           str(tmp_path / "bad.yaml"), "--out", str(tmp_path / "run")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "training.stpes" in proc.stderr and "training.steps" in proc.stderr
    assert not (tmp_path / "run").exists()


def test_demo_prints_a_side_by_side_table_and_the_plot(tmp_path: Path, capsys) -> None:
    """The demo's plumbing on shortened copies of its configs (`make demo` shows the numbers)."""
    configs = tmp_path / "configs"
    configs.mkdir()
    for path in (ROOT / "configs/demo").glob("*.yaml"):
        raw = yaml.safe_load(path.read_text())
        raw["training"].update(steps=4, warmup_steps=1, log_every=2)
        raw["evaluation"].update(n=32)
        (configs / path.name).write_text(yaml.safe_dump(raw))
    out = tmp_path / "demo"
    assert main(["demo", "--configs", str(configs), "--out", str(out), "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "| lengths | DeltaNet [-1,1] | DeltaNet [0,1] |" in text
    plot = out / "parity_deltanet_neg_vs_deltanet.png"
    assert f"plot: {plot}" in text and plot.read_bytes().startswith(PNG_MAGIC)
    assert all((out / name / "summary.json").is_file()
               for name in ("parity_deltanet_neg", "parity_deltanet"))


def test_table_keeps_task_variants_in_separate_columns(tmp_path: Path, capsys) -> None:
    """Brackets with and without '*' are different tasks: their seeds are never pooled."""
    config = ROOT / "configs/chomsky/mod_arith_brackets/deltanet_neg.yaml"
    fake_run(tmp_path / "plain", config, 0, 0.25)
    fake_run(tmp_path / "mult", config, 0, 0.75, set_=["task.options.mult=true"])
    assert main(["table", str(tmp_path)]) == 0
    header, _, row = capsys.readouterr().out.splitlines()[:3]
    columns = [c.strip() for c in header.split("|")[2:-1]]
    assert columns == ["mod_arith_brackets", "mod_arith_brackets (mult=True)"]
    cells = [c.strip() for c in row.split("|")[2:-1]]
    assert "**0.250** (0.250 ± 0.000, n=1)" in cells[0]
    assert "**0.750** (0.750 ± 0.000, n=1)" in cells[1]


def test_table_keeps_model_variants_of_one_name_in_separate_rows(tmp_path: Path,
                                                                 capsys) -> None:
    """Runs of one name that differ in a model setting (a sweep grid over a mixer option) get
    rows of their own, labelled by that setting; a different kernel backend is the same model
    and is pooled, and only the rows that are the paper's model show its value."""
    config = ROOT / "configs/chomsky/parity/deltanet_neg.yaml"
    fake_run(tmp_path / "a", config, 0, 0.25)
    fake_run(tmp_path / "b", config, 1, 0.5, set_=["model.mixer_options.backend=torch"])
    fake_run(tmp_path / "c", config, 0, 0.75, set_=["model.mixer_options.unit_keys=true"])
    assert main(["table", str(tmp_path)]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    cells = {row.split("|")[1].strip(): row.split("|")[2].strip() for row in rows[1:]}
    assert list(cells) == ["deltanet_neg (unit_keys=False)", "deltanet_neg (unit_keys=True)"]
    assert cells["deltanet_neg (unit_keys=False)"].startswith("**0.500** (0.375 ± 0.125, n=2)")
    assert "paper" in cells["deltanet_neg (unit_keys=False)"]
    assert cells["deltanet_neg (unit_keys=True)"] == "**0.750** (0.750 ± 0.000, n=1)"
    # the plot keeps them apart too: a colour and legend entry each
    from statetrack.experiment import plots

    drawn: list[str] = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(plots, "_draw_panel",
                   lambda ax, runs, colour: drawn.extend(sorted(colour) + [r[-1] for r in runs]))
        plots.plot_runs(sorted(p.parent for p in tmp_path.rglob("config.yaml")),
                        tmp_path / "p.png")
    assert sorted(set(drawn)) == list(cells) and len(drawn) == 2 + 3


def test_table_labels_spell_out_settings_whose_last_parts_clash(tmp_path: Path,
                                                                 capsys) -> None:
    """Two varying settings that end alike (the model's and the mixer's norm_eps) keep their
    dotted names in the row label, so the label says which value is which; others keep the
    short name."""
    config = ROOT / "configs/chomsky/parity/deltanet_neg.yaml"
    fake_run(tmp_path / "a", config, 0, 0.25)
    fake_run(tmp_path / "b", config, 0, 0.5, set_=["model.norm_eps=1e-6",
                                                   "model.mixer_options.norm_eps=2e-6",
                                                   "model.final_norm=false"])
    assert main(["table", str(tmp_path)]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    labels = sorted(row.split("|")[1].strip() for row in rows[1:])
    assert labels == [
        "deltanet_neg (final_norm=False, mixer_options.norm_eps=2e-06, norm_eps=1e-06)",
        "deltanet_neg (final_norm=True, mixer_options.norm_eps=1e-05, norm_eps=1e-05)"]


def test_table_keeps_protocols_of_one_name_and_task_in_separate_rows(tmp_path: Path,
                                                                      capsys) -> None:
    """Runs of one name and task that differ in a training setting (a sweep grid over the
    learning rate) get rows of their own; seeds, device, compile and logging are not the
    protocol and are pooled; and the other task's protocol, which differs anyway, splits
    nothing."""
    parity = ROOT / "configs/chomsky/parity/deltanet_neg.yaml"
    fake_run(tmp_path / "a", parity, 0, 0.25)
    fake_run(tmp_path / "b", parity, 1, 0.5, set_=[
        "training.compile=true", "training.device=cpu", "training.val_every=0",
        "training.data_seed=7", "training.checkpoint_every=0"])
    fake_run(tmp_path / "c", parity, 0, 0.75, set_=["training.lr=5e-4"])
    fake_run(tmp_path / "d", ROOT / "configs/chomsky/mod_arith/deltanet_neg.yaml", 0, 0.125)
    assert main(["table", str(tmp_path)]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    cells = {row.split("|")[1].strip(): [c.strip() for c in row.split("|")[2:-1]]
             for row in rows[1:]}
    assert sorted(cells) == ["deltanet_neg", "deltanet_neg (lr=0.0005)",
                             "deltanet_neg (lr=0.001)"]
    assert cells["deltanet_neg (lr=0.001)"][0].startswith("**0.500** (0.375 ± 0.125, n=2)")
    assert cells["deltanet_neg (lr=0.0005)"][0] == "**0.750** (0.750 ± 0.000, n=1)"
    assert cells["deltanet_neg"][0] == "–"
    assert cells["deltanet_neg"][1].startswith("**0.125** (0.125 ± 0.000, n=1)")


def test_plot_filters_models_and_names_a_missing_one(tmp_path: Path, capsys) -> None:
    config = ROOT / "configs/chomsky/parity"
    fake_run(tmp_path, config / "deltanet_neg.yaml", 0, 0.9)
    fake_run(tmp_path, config / "deltanet.yaml", 0, 0.1)
    fake_run(tmp_path / "mult", ROOT / "configs/chomsky/mod_arith_brackets/deltanet.yaml", 0,
             0.2, set_=["task.options.mult=true"])
    png = tmp_path / "only_neg.png"
    assert main(["plot", str(tmp_path), "--models", "deltanet_neg", "--out", str(png)]) == 0
    assert "plot of 1 run(s)" in capsys.readouterr().out
    assert png.read_bytes().startswith(PNG_MAGIC)
    assert main(["plot", str(tmp_path), "--out", str(tmp_path / "all.png")]) == 0
    assert "plot of 3 run(s)" in capsys.readouterr().out
    assert main(["plot", str(tmp_path), "--models", "mamba"]) == 2
    err = capsys.readouterr().err
    assert "mamba" in err and "deltanet, deltanet_neg" in err


def test_plot_keeps_the_curves_wide_beside_a_long_legend(tmp_path: Path) -> None:
    """The legend sits outside the axes: labels that name a sweep's settings widen the figure
    instead of squeezing the curves (session 21's text-protocol plot had about 2 inches of axes)."""
    import matplotlib.pyplot as plt

    from statetrack.experiment import plots

    config = ROOT / "configs/chomsky/mod_arith/deltanet_neg.yaml"
    for i, lr in enumerate(["1e-2", "1e-3", "5e-4"]):  # labels name all four settings
        fake_run(tmp_path / str(i), config, 0, 0.5, set_=[
            f"training.lr={lr}", f"model.n_layers={2 + i}", f"training.batch_size={256 << i}",
            f"training.grad_clip={1.0 + i}"])
    fake_run(tmp_path / "short", ROOT / "configs/chomsky/parity/deltanet.yaml", 0, 0.1)
    figures = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(plt, "close", figures.append)
        plots.plot_runs(sorted(p.parent for p in tmp_path.rglob("config.yaml")),
                        tmp_path / "p.png")
    (fig,) = figures
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert len(panels) == 2
    labels = [t.get_text() for ax in panels for t in ax.get_legend().get_texts()]
    assert max(map(len, labels)) > 60  # the long labels this is about
    for ax in panels:
        assert ax.get_position().width * fig.get_figwidth() >= 0.8 * plots.AXES_WIDTH
    plt.close(fig)


def test_plot_breaks_a_long_title_into_lines_inside_the_figure(tmp_path: Path) -> None:
    """A single panel's title is centred over its axes, left of the legend: a long ``--title``
    is broken into lines so that no part of it falls outside the figure (session 24's
    conv-bias plot lost its first letters off the left edge)."""
    import matplotlib.pyplot as plt

    from statetrack.experiment import plots

    fake_run(tmp_path, ROOT / "configs/chomsky/parity/deltanet.yaml", 0, 0.1)
    title = "DeltaNet parity, with the convolution bias (archived) or without (Table 3)"
    figures = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(plt, "close", figures.append)
        plots.plot_runs([p.parent for p in tmp_path.rglob("config.yaml")], tmp_path / "p.png",
                        title=title)
    (fig,) = figures
    (ax,) = [ax for ax in fig.axes if ax.get_visible()]
    text = ax.title
    assert "\n" in text.get_text() and text.get_text().split() == title.split()
    box = text.get_window_extent(fig.canvas.get_renderer())
    assert 0 <= box.x0 and box.x1 <= fig.get_figwidth() * fig.dpi
    assert box.y1 <= fig.get_figheight() * fig.dpi
    plt.close(fig)
