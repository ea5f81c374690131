"""scripts/dev/kernel_resources.py: Hopper register counts of the Triton kernels, on a CPU."""

from __future__ import annotations

import re

import pytest
from repo_scripts import load_script

pytest.importorskip("triton")


def load_tool():  # noqa: ANN201 (a module)
    return load_script("scripts/dev/kernel_resources.py")


def test_reports_registers_that_grow_with_the_tile(capsys: pytest.CaptureFixture) -> None:
    """Both linear-scan kernels compile for sm_90a; each row's register count is within the
    hardware's 1..255, and a chunk of 64 steps needs more registers per thread than one of 2
    (the scan holds the chunk in registers): the numbers come from ptxas, not a constant."""
    tool = load_tool()
    assert tool.main(["linear_scan", "--grid", "BT=2,64"]) == 0
    rows = [line.split("|")[1:-1] for line in capsys.readouterr().out.splitlines()
            if re.match(r"\| ls_", line)]
    regs = {(r[0].strip(), r[1].strip()): int(r[4]) for r in rows}
    assert set(regs) == {(k, f"BT={bt}") for k in ("ls_fwd", "ls_bwd") for bt in (2, 64)}
    assert all(1 <= n <= 255 for n in regs.values())
    for kernel in ("ls_fwd", "ls_bwd"):
        assert regs[(kernel, "BT=64")] > regs[(kernel, "BT=2")]


def test_register_cap_is_applied(capsys: pytest.CaptureFixture) -> None:
    """--maxnreg compiles with the launch option: a cap under the uncapped count gives at most
    that many registers, and the spill columns stay numbers."""
    tool = load_tool()
    assert tool.main(["linear_scan", "--grid", "BT=64", "--maxnreg", "32", "255"]) == 0
    rows = [line.split("|")[1:-1] for line in capsys.readouterr().out.splitlines()
            if line.startswith("| ls_fwd")]
    regs = {r[3].strip(): int(r[4]) for r in rows}
    assert set(regs) == {"32", "255"}
    assert regs["32"] <= 32 < regs["255"]


def test_bad_grid_is_named() -> None:
    with pytest.raises(ValueError, match="NAME=V1,V2"):
        load_tool().main(["linear_scan", "--grid", "BT"])


def test_delta_rule_kernels_compile_with_their_launch_settings(
    capsys: pytest.CaptureFixture,
) -> None:
    """All seven delta-rule kernels (the split backward's two included) compile for sm_90a at
    K = V = 32 in bf16, each with the num_warps its TUNING entry launches it with."""
    tool = load_tool()
    from statetrack.ops.delta_rule.triton_impl import TUNING

    assert tool.main(["delta_rule", "--head-dim", "32"]) == 0
    rows = [line.split("|")[1:-1] for line in capsys.readouterr().out.splitlines()
            if line.startswith("| dr_")]
    warps = {r[0].strip(): int(r[2]) for r in rows}
    assert warps == {f"dr_{name}": TUNING[name][32][1] for name in TUNING}
    assert all(1 <= int(r[4]) <= 255 for r in rows)


PTX = """\t.file\t1 "/src/statetrack/ops/x/triton_bwd.py"
\t.file\t2 "/site-packages/triton/language/standard.py"
\t.loc\t1 115 80   // triton_bwd.py:115:80 @[ triton_bwd.py:187:78 ]
\tshfl.sync.bfly.b32 \t%r594, %r576, 16, 31, -1;
\tshfl.sync.bfly.b32 \t%r595, %r594, 8, 31, -1;
\tbar.sync \t0;
\tstmatrix.sync.aligned.m8n8.x1.shared.b16 [%r32], {%r577};
\t.loc\t2 293 36   // standard.py:293:36 @[ triton_bwd.py:128:30 @[ triton_bwd.py:246:74 ] ]
\t@%p7 st.shared.b32 \t[%r9], %r10;
\tld.shared.v4.b32 \t{%r1, %r2, %r3, %r4}, [%r5];
\t@%p8 atom.global.gpu.acq_rel.add.f32 \t%r6, [%rd1], %r7;
\tadd.f32 \t%r8, %r1, %r2;
"""


def test_moves_by_line_names_the_calling_line() -> None:
    """Shuffles, shared stores/loads (stmatrix, predicated ones included), barriers and atomics
    are counted per source line; a line inside Triton's library (tl.sum in standard.py) is
    named after the first line of ours in its inlining chain; arithmetic is not counted."""
    moves = load_tool().moves_by_line(PTX)
    assert moves == {
        "triton_bwd.py:115": {"shuffle": 2, "barrier": 1, "st.shared": 1},
        "triton_bwd.py:128 (standard.py:293)": {"st.shared": 1, "ld.shared": 1, "atomic": 1},
    }


def test_sass_counts_grow_with_the_tile(capsys: pytest.CaptureFixture) -> None:
    """The SASS column comes from the assembled cubin: every kernel has instructions, the kinds
    are a subset of all, and a chunk of 64 steps (held in registers, the scan unrolled) takes
    more instructions than one of 2."""
    tool = load_tool()
    assert tool.main(["linear_scan", "--grid", "BT=2,64"]) == 0
    rows = [line.split("|")[1:-1] for line in capsys.readouterr().out.splitlines()
            if re.match(r"\| ls_", line)]
    sass = {(r[0].strip(), r[1].strip()): [int(v) for v in r[8].split()] for r in rows}
    for counts in sass.values():
        assert len(counts) == 1 + len(tool.SASS_KINDS)
        assert counts[0] > 0 and sum(counts[1:]) <= counts[0]
    for kernel in ("ls_fwd", "ls_bwd"):
        assert sass[(kernel, "BT=64")][0] > sass[(kernel, "BT=2")][0]


def test_sass_counts_read_opcodes_predicated_or_not() -> None:
    """``sass_counts`` reads each instruction's opcode past a predicate guard and counts the
    kinds by prefix (HFMA2 is not FFMA; SHFL.BFLY is a shuffle)."""
    tool = load_tool()
    sass = """
        /*0000*/                   LDC R1, c[0x0][0x28] ;
        /*0010*/              @!P0 SHFL.BFLY PT, R3, R2, 0x1, 0x1f ;
        /*0020*/                   FFMA R4, R3, R2, R4 ;
        /*0030*/               @P1 FFMA R5, R3, R2, R5 ;
        /*0040*/                   HFMA2.MMA R6, -RZ, RZ, 0, 0 ;
        /*0050*/                   RED.E.ADD.F32.FTZ.RN.STRONG.GPU [R8.64], R4 ;
    """
    counts = tool.sass_counts(sass)
    assert counts["all"] == 6
    assert counts["SHFL"] == 1 and counts["FFMA"] == 2 and counts["RED"] == 1
    assert counts["MUFU"] == 0 and counts["FADD"] == 0
