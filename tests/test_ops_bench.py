"""statetrack.ops.bench's host timers, on a CPU."""

from __future__ import annotations

import time
from collections import defaultdict

from statetrack.ops.bench import host_ms, timed


def test_host_ms_counts_every_call_and_averages_over_the_timed_ones() -> None:
    """``fn`` runs warmup + n times; the per-call figures are averages over the n timed calls
    (a 2 ms sleep each gives at least 2 ms), and the synchronised one is never the smaller."""
    calls = []

    def fn() -> None:
        calls.append(1)
        time.sleep(0.002)

    host, synced = host_ms(fn, n=5, warmup=3)
    assert len(calls) == 8
    assert 2.0 <= host <= synced < 50.0


def test_timed_returns_fn_results_and_adds_each_calls_time_under_its_name() -> None:
    """The wrapper passes arguments and results through and sums its calls' seconds (two 2 ms
    sleeps: at least 4 ms) under its own name only."""
    totals: dict[str, float] = defaultdict(float)

    def nap(ms: float, *, tag: str) -> str:
        time.sleep(ms / 1e3)
        return tag

    wrapped = timed(totals, "nap", nap)
    assert wrapped(2, tag="a") == "a" and wrapped(2, tag="b") == "b"
    assert list(totals) == ["nap"] and 0.004 <= totals["nap"] < 0.5
