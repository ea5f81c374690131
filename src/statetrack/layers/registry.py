"""Mixers registered by name; their constructors hold the only defaults of their options."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from torch import nn

MIXERS: dict[str, type[nn.Module]] = {}


def register(name: str) -> Callable[[type[nn.Module]], type[nn.Module]]:
    def deco(cls: type[nn.Module]) -> type[nn.Module]:
        if name in MIXERS:
            raise ValueError(f"mixer {name!r} registered twice")
        MIXERS[name] = cls
        cls.mixer_name = name
        return cls

    return deco


def mixer_options(name: str) -> dict[str, Any]:
    """The keyword options of mixer ``name`` and their defaults (``inspect.Parameter.empty``
    for a required one), read from its constructor's signature."""
    cls = get_mixer_class(name)
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    return {p.name: p.default for p in params if p.name != "d_model"}


def get_mixer_class(name: str) -> type[nn.Module]:
    if name not in MIXERS:
        raise ValueError(f"mixer: expected one of {', '.join(sorted(MIXERS))}, got {name!r}")
    return MIXERS[name]


def build_mixer(name: str, d_model: int, options: dict[str, Any] | None = None,
                where: str = "model.mixer_options") -> nn.Module:
    """Build mixer ``name``; an unknown option is a ``ValueError`` naming it and the allowed."""
    allowed = mixer_options(name)
    options = dict(options or {})
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(f"{where}: unknown option(s) {', '.join(unknown)} for mixer {name!r}; "
                         f"allowed: {', '.join(sorted(allowed))}")
    return get_mixer_class(name)(d_model, **options)
