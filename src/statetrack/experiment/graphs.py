"""Training steps replayed as CUDA graphs, one graph per padded batch shape.

A training step of the paper's small models (d_model 128, batch 256, length 40) is bound by
kernel launches, not by the GPU: the CPU issues about 2,500 of them per DeltaNet step. Captured
once as a CUDA graph, the whole step (forward, loss, backward, AdamW and the log sums) replays
with one launch.

Batches are padded to their longest example, so a run meets few shapes (at batch 256 parity pads
to 40 in all but about 1 step in 1,000). A shape runs ``warmup`` eager steps on a side stream
(lazy initialisation, cuBLAS workspaces and Triton autotuning must not happen inside a capture),
then its step is captured and replayed from then on; once ``max_graphs`` shapes hold a graph,
other shapes stay eager. Every step, eager or replayed, is a real training step on its own batch.

What the step may do: no host synchronisation and no CPU-side branching on tensor values; the
learning rate is a device tensor in the optimizer's param groups (filled, never rebound); the
optimizer is built with ``capturable=True``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import torch

Body = Callable[[torch.Tensor, torch.Tensor], None]


@dataclass
class _Captured:
    graph: torch.cuda.CUDAGraph
    tokens: torch.Tensor  # the graph reads its batch from these two buffers
    target: torch.Tensor


class GraphedStep:
    """``step(tokens, target)`` runs ``body(tokens, target)``: eagerly for the first ``warmup``
    batches of a shape, then as a replay of that shape's captured graph."""

    def __init__(self, body: Body, device: torch.device, *, warmup: int = 3,
                 max_graphs: int = 8) -> None:
        if device.type != "cuda":
            raise ValueError(f"CUDA graphs need a CUDA device, got {device}")
        if warmup < 1:
            raise ValueError(f"warmup must be >= 1 (capture needs a warmed-up step), got {warmup}")
        self.body, self.device = body, device
        self.warmup, self.max_graphs = warmup, max_graphs
        self.seen: Counter[tuple[int, ...]] = Counter()
        self.graphs: dict[tuple[int, ...], _Captured] = {}
        self.side = torch.cuda.Stream(device)
        self.replays = 0  # counted for tests and the run's log

    def __call__(self, tokens: torch.Tensor, target: torch.Tensor) -> None:
        shape = tuple(tokens.shape)
        captured = self.graphs.get(shape)
        if captured is None:
            self.seen[shape] += 1
            if self.seen[shape] <= self.warmup or len(self.graphs) >= self.max_graphs:
                self._eager(tokens, target)
                return
            captured = self._capture(tokens, target)
            self.graphs[shape] = captured
        else:
            captured.tokens.copy_(tokens, non_blocking=True)
            captured.target.copy_(target, non_blocking=True)
        captured.graph.replay()  # a capture records without running: the first replay trains
        self.replays += 1

    def _eager(self, tokens: torch.Tensor, target: torch.Tensor) -> None:
        current = torch.cuda.current_stream(self.device)
        self.side.wait_stream(current)
        with torch.cuda.stream(self.side):
            self.body(tokens, target)
        current.wait_stream(self.side)

    def _capture(self, tokens: torch.Tensor, target: torch.Tensor) -> _Captured:
        static_tokens, static_target = tokens.clone(), target.clone()
        graph = torch.cuda.CUDAGraph()
        # thread_local: the batch thread may pin memory (a CUDA call) while this one captures
        with torch.cuda.graph(graph, capture_error_mode="thread_local"):
            self.body(static_tokens, static_target)
        return _Captured(graph, static_tokens, static_target)
