"""What each part of the selective-scan backward costs on the GPU: variants of
``ss_bwd_kernel`` with one part removed or replaced (results wrong on purpose), each timed
forward+backward from a CUDA graph at the benchmark's shapes ([−1, 1], bf16, "chunk_pipe").

    PYTHONPATH=src python scripts/dev/scan_ablate.py
"""
import importlib.util
import re
import sys
import tempfile
from pathlib import Path

from statetrack.eig import EigRange
from statetrack.ops.selective_scan import triton_impl as ti

sys.path.insert(0, "benchmarks")
from scan import SHAPES, time_backend  # noqa: E402

SRC = Path(ti.__file__).with_name("triton_bwd.py").read_text()
DC = """tl.atomic_add(dC + o_tn, tl.sum(b_dyg[:, None, :] * b_h, axis=2), mask=m_tn,
                      sem="relaxed")"""
DB = """tl.atomic_add(dB + o_tn, tl.sum(b_g * b_dxd[:, None, :], axis=2), mask=m_tn,
                      sem="relaxed")"""
EXCL = """    _, _, e_a, e_b = tl.associative_scan((b_a, b_b, ones, zeros), 0, _combine_excl)
    b_hp = e_a * b_hc[None, :, :] + e_b  # h_{t−1}
    b_h = b_a * b_hp + b_b  # h_t"""
RECOMPUTE = "    for i_c in range(tl.minimum(NC, tl.cdiv(T - s0, BT))):"


def as_store(atomic: str) -> str:
    """An atomic add of the backward as a plain store to the same place."""
    return re.sub(r",\s*sem=\"relaxed\"", "", atomic.replace("tl.atomic_add", "tl.store"))


VARIANTS = {
    "base": [],
    "no dB/dC (sums and atomics)": [(DC, "pass"), (DB, "pass")],
    "dB/dC stored, not atomic": [
        (DC, as_store(DC)), (DB, as_store(DB))],
    "inclusive forward scan": [(EXCL, """    e_a, e_b = tl.associative_scan((b_a, b_b), 0, _combine)
    b_h = e_a * b_hc[None, :, :] + e_b
    b_hp = b_h""")],
    "no recompute": [(RECOMPUTE, "    for i_c in range(0):")],
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
