"""How many ops one training step of each paper model issues on a CPU (batch 8, parity config):
the profiler's innermost aten ops, less views and other ops that launch no kernel. A proxy
for the number of kernels a GPU step launches, where each small one costs a few µs.

    PYTHONPATH=src python scripts/dev/count_step_ops.py deltanet_neg mlstm
"""
import sys
from pathlib import Path

from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import train_step as ts  # noqa: E402

NO_KERNEL = {
    "aten::as_strided", "aten::empty", "aten::empty_strided", "aten::view", "aten::to",
    "aten::promote_types", "aten::unsqueeze", "aten::unfold", "aten::slice", "aten::select",
    "aten::narrow", "aten::expand", "aten::detach", "aten::resolve_conj", "aten::resolve_neg",
    "aten::alias", "aten::result_type", "aten::reshape", "aten::_reshape_alias", "aten::t",
    "aten::transpose", "aten::permute", "aten::squeeze", "aten::split", "aten::chunk",
    "aten::unbind", "aten::_unsafe_view", "aten::lift_fresh", "aten::item",
    "aten::_local_scalar_dense", "aten::is_nonzero", "aten::size", "aten::stride", "aten::dim",
    "aten::numel", "aten::flatten", "aten::expand_as", "aten::view_as"}


def main() -> None:
    for name in sys.argv[1:] or ts.MODELS:
        run, params, sums = ts.make_run(name, "cpu", False, ["training.batch_size=8"])
        try:
            ts.steps(run, params, sums, 0, 2)
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                ts.steps(run, params, sums, 2, 1)
        finally:
            run.batches.close()
        ops = [e for e in prof.events() if not e.cpu_children and e.name.startswith("aten::")
               and e.name not in NO_KERNEL]
        print(f"{name}: {len(ops)} ops a step", flush=True)


if __name__ == "__main__":
    main()
