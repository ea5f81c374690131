"""What each part of the selective-scan backward costs on the GPU: variants of
``ss_bwd_kernel`` with one part removed or replaced (results wrong on purpose), each timed
forward+backward from a CUDA graph at the benchmark's shapes ([−1, 1], bf16, "chunk_pipe" at
its default tiles). Session 10 (logs/h200_scan_ablate_s10.log) also stored dB/dC plainly
instead of atomically: no faster.

    PYTHONPATH=src python scripts/dev/scan_ablate.py
"""
import importlib.util
import sys
import tempfile
from pathlib import Path

from statetrack.eig import EigRange
from statetrack.ops.selective_scan import triton_impl as ti

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from scan import SHAPES, time_backend  # noqa: E402

SRC = Path(ti.__file__).with_name("triton_bwd.py").read_text()
DC = """tl.atomic_add(dC + o_tn, tl.sum(b_dyg[:, None, :] * b_h, axis=2), mask=m_tn,
                      sem="relaxed")"""
DB = """tl.atomic_add(dB + o_tn, tl.sum(b_g * b_dxd[:, None, :], axis=2), mask=m_tn,
                      sem="relaxed")"""
# the default tiles' path (bfly > 0): the reduce-scatter and its atomics (triton_bfly.py)
BFLY = """_add_dbc_bfly(dB + i_b * T * N, dC + i_b * T * N, b_g * b_dxd[:, None, :],
                      b_dyg[:, None, :] * b_h, o_t[:, None] * N + o_n[None, :], m_tn, BFLY)"""
EXCL = """    _, _, e_a, e_b = tl.associative_scan((b_a, b_b, ones, zeros), 0, _combine_excl)
    b_hp = e_a * b_hc[None, :, :] + e_b  # h_{t−1}
    b_h = b_a * b_hp + b_b  # h_t"""
RECOMPUTE = "    for i_c in range(tl.minimum(NC // K, tl.cdiv(T - s0, RBT))):"
NO_DBC = [(DC, "pass"), (DB, "pass"), (BFLY, "pass")]
NO_RECOMPUTE = [(RECOMPUTE, "    for i_c in range(0):")]

VARIANTS = {
    "base": [],
    "no dB/dC (sums and atomics)": NO_DBC,
    "inclusive forward scan": [(EXCL, """    e_a, e_b = tl.associative_scan((b_a, b_b), 0, _combine)
    b_h = e_a * b_hc[None, :, :] + e_b
    b_hp = b_h""")],
    "no recompute": NO_RECOMPUTE,
    "neither dB/dC nor recompute": NO_DBC + NO_RECOMPUTE,
}


def load(name: str, edits: list[tuple[str, str]], tmp: Path):
    src = SRC
    for old, new in edits:
        if old not in src:
            raise ValueError(f"{name}: text not found: {old[:60]!r}")
        src = src.replace(old, new)
    path = tmp / f"ss_bwd_{abs(hash(name))}.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.ss_bwd_kernel


def main() -> None:
    original = ti.ss_bwd_kernel
    with tempfile.TemporaryDirectory() as tmp:
        kernels = {name: load(name, edits, Path(tmp)) for name, edits in VARIANTS.items()}
        print("| variant | " + " | ".join(str(s) for s in SHAPES) + " |")
        print("|---|" + "---|" * len(SHAPES))
        fwd = [time_backend(s, EigRange(-1.0, 1.0), "triton", "fwd", 100, graph=True)
               for s in SHAPES]
        print("| forward alone | " + " | ".join(f"{m:.3f}" for m in fwd) + " |", flush=True)
        for name, kernel in kernels.items():
            ti.ss_bwd_kernel = kernel
            try:
                ms = [time_backend(s, EigRange(-1.0, 1.0), "triton", "fwdbwd", 100, graph=True)
                      for s in SHAPES]
            except Exception as e:  # noqa: BLE001  (one variant failing leaves the others)
                print(f"| {name} | FAILED: {type(e).__name__} {str(e)[:200]} |", flush=True)
                continue
            print(f"| {name} | " + " | ".join(f"{m:.3f}" for m in ms) + " |", flush=True)
    ti.ss_bwd_kernel = original


if __name__ == "__main__":
    main()
