"""Shared test settings: deterministic threads, and GPU tests skipped where there is no GPU."""

from __future__ import annotations

import math

import pytest
import torch

torch.set_num_threads(max(1, min(2, torch.get_num_threads())))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU (platform limit)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture(autouse=True)
def poison_chunked_scan_buffers(monkeypatch: pytest.MonkeyPatch) -> None:
    """The chunked scan's output buffers start as NaN in tests, so an unwritten element fails."""
    from statetrack.ops.linear_scan import chunked

    monkeypatch.setattr(chunked, "POISON", True)


@pytest.fixture
def nan_empty(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every torch.empty / empty_like during the test is NaN-filled: unwritten outputs show."""
    empty, empty_like = torch.empty, torch.empty_like

    def nan_empty(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202 (mirrors torch.empty)
        out = empty(*args, **kwargs)
        return out.fill_(math.nan) if out.is_floating_point() else out

    def nan_empty_like(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        out = empty_like(*args, **kwargs)
        return out.fill_(math.nan) if out.is_floating_point() else out

    monkeypatch.setattr(torch, "empty", nan_empty)
    monkeypatch.setattr(torch, "empty_like", nan_empty_like)
