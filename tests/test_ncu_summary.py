"""scripts/dev/ncu_sass_summary.py: Nsight Compute's per-instruction CSV summed per opcode."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
from repo_scripts import load_script

HEADER = ('"Address","Source","Warp Stall Sampling (All Samples)","Instructions Executed",'
          '"L1 Wavefronts Shared","L1 Wavefronts Shared Excessive","stall_barrier",'
          '"stall_membar","stall_barrier (Not Issued)"')


def load_tool():  # noqa: ANN201 (a module)
    return load_script("scripts/dev/ncu_sass_summary.py")


def export(kernels: dict[str, list[str]]) -> str:
    """An ncu --page source --csv export with one section per kernel."""
    return "".join(f'"Kernel Name","{k}",\n{HEADER}\n' + "\n".join(rows) + "\n"
                   for k, rows in kernels.items())


def test_sums_per_opcode_and_kernel(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Predicates and modifiers are dropped, each kernel is summed apart, stalls of the "Not
    Issued" columns are not counted twice, and gzip input reads the same as plain."""
    tool = load_tool()
    text = export({
        "ss_bwd_kernel": [
            '"0x0","      ERRBAR;","30","4","0","0","0","30","99"',
            '"0x10","  @!P6 LDS R5, [R98] ;","10","8","64","48","7","0","0"',
            '"0x20","      LDS.U.128 R4, [R2] ;","5","8","16","0","5","0","0"',
        ],
        "ss_fwd_kernel": ['"0x0","      LDS R1, [R0] ;","2","1","1","0","2","0","0"'],
    })
    summary = tool.summarize(text)
    assert set(summary) == {"ss_bwd_kernel", "ss_fwd_kernel"}
    lds = summary["ss_bwd_kernel"]["LDS"]
    assert (lds["samples"], lds["instructions"], lds["wavefronts"], lds["excess"]) == (15, 16, 80,
                                                                                       48)
    assert summary["ss_bwd_kernel"]["ERRBAR"]["stalls"] == {"membar": 30}
    assert summary["ss_fwd_kernel"]["LDS"]["samples"] == 2
    path = tmp_path / "r_sass.csv.gz"
    path.write_bytes(gzip.compress(text.encode()))
    assert tool.main([str(path)]) == 0
    out = capsys.readouterr().out
    assert "ss_bwd_kernel: 45 stall samples, 20 warp instructions" in out
    assert out.index("| ERRBAR | 30 | 66.7 |") < out.index("| LDS | 15 | 33.3 |")


def test_refuses_a_file_without_kernels(tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_text("==PROF== nothing profiled\n")
    assert load_tool().main([str(path)]) == 2
