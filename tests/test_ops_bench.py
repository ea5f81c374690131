"""statetrack.ops.bench's host timer, on a CPU."""

from __future__ import annotations

import time

from statetrack.ops.bench import host_ms


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
