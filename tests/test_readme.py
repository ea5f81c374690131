"""The README's Python examples run as written (they are the first code a user copies)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_blocks_run() -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert blocks, "the README shows the Python API"
    namespace: dict[str, object] = {}
    exec(compile("\n".join(blocks), str(README), "exec"), namespace)  # noqa: S102
    assert "o" in namespace and "logits" in namespace


def test_readme_delta_rule_table_is_the_committed_benchmark() -> None:
    """The README's delta-rule table is what ``benchmarks/delta_rule.py --table`` prints for
    the committed H200 JSON: no number in it was typed by hand."""
    import json

    from repo_scripts import load_script

    root = README.parent
    bench = load_script("benchmarks/delta_rule.py")
    records = json.loads((root / "benchmarks" / "results" / "h200_delta_rule.json").read_text())
    table = bench.markdown_table(records)
    assert len(table.splitlines()) == 2 + len(records) // 2  # a row per shape and pass
    assert table in README.read_text()


def test_readme_scan_table_is_the_committed_benchmark() -> None:
    """The README's selective-scan table is what ``benchmarks/scan.py --table`` prints for the
    committed H200 JSON."""
    import json

    from repo_scripts import load_script

    root = README.parent
    bench = load_script("benchmarks/scan.py")
    records = json.loads((root / "benchmarks" / "results" / "h200_scan.json").read_text())
    table = bench.markdown_table(records)
    assert len(table.splitlines()) == 2 + 8  # four shapes, two passes
    assert table in README.read_text()
    # and it is the layout selective_scan uses by default
    ti = pytest.importorskip("statetrack.ops.selective_scan.triton_impl")
    assert table == bench.markdown_table(records, ti.LAYOUT)


@pytest.mark.parametrize(("name", "has_log"), [("h200_train_step_s16.json", True),
                                             ("h200_train_step_compiled_s17.json", False)])
def test_readme_train_step_tables_are_the_committed_benchmark(name: str, has_log: bool) -> None:
    """The README's steps/s tables are what ``benchmarks/train_step.py --table`` prints for the
    committed H200 JSON, and, where its log was kept, the run's own printed table is the same
    (session 17's compiled run came back as JSON only)."""
    import json

    from repo_scripts import load_script

    root = README.parent
    bench = load_script("benchmarks/train_step.py")
    records = json.loads((root / "benchmarks" / "results" / name).read_text())
    table = bench.markdown_table(records)
    assert len(table.splitlines()) == 2 + len({r["model"] for r in records})
    assert table in README.read_text()
    log = root / "benchmarks" / "results" / "logs" / name.replace(".json", ".log")
    assert log.exists() == has_log
    if has_log:
        assert table in log.read_text()
