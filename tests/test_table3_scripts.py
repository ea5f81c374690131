"""The Table 3 sweep's hand-over between device calls: scripts/gpu/pack_partial.py packs the
unfinished runs' checkpoints there, scripts/gpu/table3_import.py takes a call's files in here."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from repo_scripts import ROOT, load_script


def load_import_tool():  # noqa: ANN201 (a module)
    return load_script("scripts/gpu/table3_import.py")


def make_run(root: Path, name: str, *, finished: bool, step: int = 0) -> Path:
    run = root / name
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(f"name: {name}\n")
    (run / "metrics.jsonl").write_text(json.dumps({"step": step}) + "\n")
    if finished:
        (run / "summary.json").write_text(json.dumps({"run": name}))
        (run / "eval.csv").write_text("length,accuracy\n40,1.0\n")
    else:
        (run / "checkpoint").mkdir()
        (run / "checkpoint" / "state.json").write_text(json.dumps({"step": step}))
        (run / "checkpoint" / "model.safetensors").write_bytes(name.encode() * 100)
    return run


def pack_partial(runs: Path, out: Path, *options: str) -> None:
    """scripts/gpu/pack_partial.py, run as table3_call.sh runs it on the device."""
    subprocess.run([sys.executable, str(ROOT / "scripts" / "gpu" / "pack_partial.py"),
                    str(runs), str(out), *options],
                   check=True, env={"PYTHONPATH": str(ROOT / "src")}, capture_output=True)


def fake_call(tmp_path: Path) -> Path:
    """A device call's files, made by the same commands table3_call.sh runs there."""
    work = tmp_path / "work"
    make_run(work / "runs", "mod_arith/slstm/seed=0", finished=True)  # committed earlier
    make_run(work / "runs", "mod_arith/deltanet/seed=0", finished=True)  # new in this call
    make_run(work / "runs", "mod_arith/deltanet/seed=1", finished=False, step=70000)
    make_run(work / "runs", "mod_arith/mlstm/seed=0", finished=False, step=5000)
    call = tmp_path / "call"
    pack_partial(work / "runs", call, "--piece-mib", "0.001")
    with tarfile.open(call / "table3_runs.tar.gz", "w:gz") as tar:
        for summary in (work / "runs").rglob("summary.json"):
            for f in ("config.yaml", "summary.json", "eval.csv", "metrics.jsonl"):
                tar.add(summary.parent / f, arcname=str((summary.parent / f).relative_to(work)))
    return call


def test_import_copies_new_runs_and_keeps_only_unfinished_checkpoints(tmp_path: Path) -> None:
    """A call's new finished runs land in the results (the committed one is not touched), and
    the checkpoints to carry are exactly those of the runs still unfinished, byte for byte: a
    finished run left among them would be retrained from scratch, one dropped would be lost."""
    call = fake_call(tmp_path)
    assert len(list(call.glob("partial.tar.part*"))) > 1  # pieces joined in order
    results = tmp_path / "results"
    committed = make_run(results, "mod_arith/slstm/seed=0", finished=True)
    (committed / "summary.json").write_text('{"kept": true}')
    partial = tmp_path / "partial"
    make_run(partial, "stale", finished=True)  # the previous call's pieces go

    tool = load_import_tool()
    assert tool.main([str(call), "--results", str(results), "--partial", str(partial)]) == 0

    new = results / "mod_arith/deltanet/seed=0"
    assert sorted(p.name for p in new.iterdir()) == sorted(tool.RUN_FILES)
    assert json.loads((new / "summary.json").read_text()) == {"run": "mod_arith/deltanet/seed=0"}
    assert (committed / "summary.json").read_text() == '{"kept": true}'
    restored = tmp_path / "restored"
    restored.mkdir()
    blob = b"".join(p.read_bytes() for p in sorted(partial.glob("partial.tar.part*")))
    assert not (partial / "stale").exists()
    with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
        tar.extractall(restored, filter="data")
    runs = sorted(str(p.parent.parent.relative_to(restored / "runs"))
                  for p in restored.rglob("state.json"))
    assert runs == ["mod_arith/deltanet/seed=1", "mod_arith/mlstm/seed=0"]
    source = tmp_path / "work/runs/mod_arith/deltanet/seed=1/checkpoint/model.safetensors"
    assert (restored / "runs/mod_arith/deltanet/seed=1/checkpoint/model.safetensors"
            ).read_bytes() == source.read_bytes()


def test_import_drops_checkpoints_of_runs_committed_since(tmp_path: Path) -> None:
    """A run whose checkpoint was packed but which is committed as finished (from another call)
    is not carried again."""
    call = fake_call(tmp_path)
    results = tmp_path / "results"
    make_run(results, "mod_arith/deltanet/seed=1", finished=True)
    tool = load_import_tool()
    assert tool.main([str(call), "--results", str(results),
                      "--partial", str(tmp_path / "partial")]) == 0
    blob = b"".join(p.read_bytes() for p in sorted((tmp_path / "partial").glob("partial.tar*")))
    with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
        names = {tool.run_of(n) for n in tar.getnames()} - {None}
    assert {str(n) for n in names} == {"mod_arith/mlstm/seed=0"}


def test_import_keeps_older_checkpoints_of_runs_the_call_did_not_bring(tmp_path: Path) -> None:
    """A run whose checkpoint the call left out (pack_partial.py's size limit) keeps the one
    carried before; a run the call brought takes the call's, whole (its older files do not
    survive beside it)."""
    call = fake_call(tmp_path)
    before = tmp_path / "before"
    make_run(before / "runs", "mod_arith/deltanet/seed=1", finished=False, step=55000)
    (before / "runs/mod_arith/deltanet/seed=1/checkpoint/stale.bin").write_bytes(b"old")
    make_run(before / "runs", "mod_arith/slstm/seed=2", finished=False, step=10000)
    partial = tmp_path / "partial"
    pack_partial(before / "runs", partial)
    tool = load_import_tool()
    assert tool.main([str(call), "--results", str(tmp_path / "results"),
                      "--partial", str(partial)]) == 0
    restored = tmp_path / "restored"
    restored.mkdir()
    blob = b"".join(p.read_bytes() for p in sorted(partial.glob("partial.tar.part*")))
    with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
        tar.extractall(restored, filter="data")
    steps = {str(p.parent.parent.relative_to(restored / "runs")):
             json.loads(p.read_text())["step"] for p in restored.rglob("state.json")}
    assert steps == {"mod_arith/deltanet/seed=1": 70000, "mod_arith/mlstm/seed=0": 5000,
                     "mod_arith/slstm/seed=2": 10000}
    assert not (restored / "runs/mod_arith/deltanet/seed=1/checkpoint/stale.bin").exists()


def test_import_refuses_a_directory_without_the_runs_archive(tmp_path: Path) -> None:
    """Pointing it at the wrong folder changes nothing and says why."""
    partial = tmp_path / "partial"
    make_run(partial, "kept", finished=True)
    tool = load_import_tool()
    assert tool.main([str(tmp_path), "--partial", str(partial)]) == 2
    assert (partial / "kept" / "summary.json").exists()


def test_import_keeps_the_call_logs_under_the_tag(tmp_path: Path) -> None:
    """--logs-tag keeps the call's log and the three logs the README cites from logs.tar.gz,
    byte for byte under tagged names, and nothing else of the archive."""
    call = fake_call(tmp_path)
    (call / "call.log").write_text("[12:02:52] asked 8 runs for a checkpoint; 8 written\n")
    logs = {"rates.txt": "aggregate 875\n", "gpu_util.log": "0, 100 %\n",
            "usr1_status.log": "SigCgt:\t0000000100000202\n", "sweep_tail.log": "not kept\n"}
    with tarfile.open(call / "logs.tar.gz", "w:gz") as tar:
        for name, text in logs.items():
            data = text.encode()
            info = tarfile.TarInfo(f"logs/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    results = tmp_path / "results"
    tool = load_import_tool()
    assert tool.main([str(call), "--results", str(results), "--partial", str(tmp_path / "p"),
                      "--logs-tag", "s13_call2"]) == 0
    kept = {p.name: p.read_text() for p in (results / "logs").iterdir()}
    assert kept == {"call_s13_call2.log": (call / "call.log").read_text(),
                    "rates_s13_call2.txt": logs["rates.txt"],
                    "gpu_util_s13_call2.log": logs["gpu_util.log"],
                    "usr1_status_s13_call2.log": logs["usr1_status.log"]}


def shell_function(script: str, name: str) -> str:
    """The text of one function of a bash script, from ``name() {`` to its closing ``}``."""
    text = (ROOT / script).read_text()
    start = text.index(f"\n{name}() {{") + 1
    return text[start:text.index("\n}\n", start) + 3]


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="needs Linux /proc")
def test_only_processes_with_a_sigusr1_handler_are_asked_for_a_checkpoint() -> None:
    """table3_call.sh signals a training only once it has installed its SIGUSR1 handler (the
    signal's default action would end it): catches_usr1 reads that from /proc/PID/status."""
    check = shell_function("scripts/gpu/table3_call.sh", "catches_usr1")
    body = "import signal, sys, time\n{}print('ready', flush=True)\ntime.sleep(60)\n"
    for handler, expected in (("signal.signal(signal.SIGUSR1, lambda *a: None)\n", 0), ("", 1)):
        proc = subprocess.Popen([sys.executable, "-c", body.format(handler)],
                                stdout=subprocess.PIPE, text=True)
        try:
            assert proc.stdout.readline().strip() == "ready"
            rc = subprocess.run(["bash", "-c", f"{check}\ncatches_usr1 {proc.pid}"]).returncode
            assert rc == expected, handler or "no handler"
        finally:
            proc.kill()
            proc.wait()
    assert subprocess.run(["bash", "-c", f"{check}\ncatches_usr1 999999999"]).returncode != 0
