"""Re-time fla and statetrack at one shape on a quiet GPU (fla autotunes with nothing else
running), to check how stable fla's column of benchmarks/delta_rule.py is.

    python3 scripts/gpu/fla_recheck.py B T H K
"""

from __future__ import annotations

import sys

sys.path.insert(0, "benchmarks")

from delta_rule import load_fla, make_inputs, runner, time_ms  # noqa: E402

shape = tuple(int(x) for x in sys.argv[1:5])
fla = load_fla()
x1 = make_inputs(shape, 1.0)
for pass_ in ("fwd", "fwdbwd"):
    for _ in range(2):
        f, s = time_ms(runner("fla", fla), x1, pass_), time_ms(runner("triton", None), x1, pass_)
        print(f"{shape} {pass_}: fla {f:.3f} ms, statetrack {s:.3f} ms, ratio {s / f:.2f}",
              flush=True)
