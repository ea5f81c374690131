"""A sweep file, validated strictly, and its expansion into points (one run directory each).

A sweep file reads::

    name: table3
    out: runs/table3                # root of the run directories, relative to the working dir
    configs:                        # paths or glob patterns, relative to this file's directory
      - ../configs/chomsky/parity/*.yaml
    seeds: [0, 1, 2]                # each point gets --set training.seed=S
    set: {training.steps: 100}      # optional: overrides applied to every point
    grid:                           # optional: key → values; points are the cartesian product
      training.lr: [1e-3, 5e-4]
    variants:                       # optional: named extra points with more overrides
      - name: mult
        applies_to: [mod_arith_brackets/*]   # patterns over "task/model"; all when omitted
        set: {task.options.mult: true}

A config ``.../<task>/<model>.yaml`` gives the points ``<task>/<model>[-<variant>]/
[<key>=<value>-...]seed=<S>`` under ``out``, one per (config, variant or none, grid value, seed).
"""

from __future__ import annotations

import fnmatch
import glob
import itertools
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

# The config key that holds a run's random seed (statetrack.experiment's config schema).
SEED_KEY = "training.seed"

TOP_KEYS = ("name", "out", "configs", "seeds", "set", "grid", "variants")
REQUIRED_KEYS = ("name", "configs", "seeds")
VARIANT_KEYS = ("name", "applies_to", "set")
_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$")
_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+]*$")


class SweepError(ValueError):
    """A sweep file (or a command-line override) that cannot be expanded; the message says why."""


class _Loader(yaml.SafeLoader):
    """YAML 1.1 reads ``1e-3`` as a string (its floats need a dot); a learning rate is a float."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$"),
    list("-+0123456789."),
)


def load_yaml(text: str) -> Any:
    """Parse YAML with ``1e-3`` read as a float (also used for ``--set`` values)."""
    return yaml.load(text, Loader=_Loader)  # a SafeLoader: builds plain data only


def format_value(value: Any) -> str:
    """The ``--set`` text of a value, which YAML reads back as that value (1e-06 → ``1.0e-06``)."""
    text = yaml.safe_dump(value, default_flow_style=True, width=10**9).strip()
    return text.removesuffix("...").strip()


def slug(value: Any) -> str:
    """A filesystem-safe, deterministic rendering of a value for a directory name."""
    text = format_value(value)
    return re.sub(r"_+", "_", re.sub(r"[^A-Za-z0-9.+\-]", "_", text)).strip("_") or "_"


@dataclass(frozen=True)
class Variant:
    """Extra points with more overrides, for the configs whose ``task/model`` matches a pattern."""

    name: str
    applies_to: tuple[str, ...]
    overrides: tuple[tuple[str, Any], ...]

    def applies(self, label: str) -> bool:
        return not self.applies_to or any(fnmatch.fnmatchcase(label, p) for p in self.applies_to)


@dataclass(frozen=True)
class Point:
    """One run of a sweep: a config, its overrides (in order) and its run directory."""

    config: Path
    name: str  # task/model[-variant]/[key=value-...]seed=S, relative to the sweep's root
    overrides: tuple[tuple[str, Any], ...]
    run_dir: Path

    def set_items(self) -> list[str]:
        """The overrides as ``train --set`` arguments: ``section.key=value``."""
        return [f"{key}={format_value(value)}" for key, value in self.overrides]

    @property
    def log_path(self) -> Path:
        """Beside the run directory, so a restart never has to clear a log out of the run."""
        return self.run_dir.with_name(self.run_dir.name + ".log")


@dataclass
class Sweep:
    """A validated sweep file; :func:`expand` turns it into points."""

    name: str
    out: Path
    configs: list[Path]
    seeds: list[int]
    overrides: list[tuple[str, Any]] = field(default_factory=list)
    grid: dict[str, list[Any]] = field(default_factory=dict)
    variants: list[Variant] = field(default_factory=list)
    source: str = "<sweep>"


def _fail(where: str, message: str) -> SweepError:
    return SweepError(f"{where}: {message}")


def _check_keys(data: dict, allowed: tuple[str, ...], where: str) -> None:
    unknown = [k for k in data if k not in allowed]
    if unknown:
        raise _fail(where, f"unknown key {unknown[0]!r}; allowed keys: {', '.join(allowed)}")


def _overrides(value: Any, where: str) -> list[tuple[str, Any]]:
    if not isinstance(value, dict):
        raise _fail(where, f"expected a mapping of key: value, got {value!r}")
    for key in value:
        if not isinstance(key, str) or not _KEY_RE.match(key):
            raise _fail(where, f"expected dotted config keys like 'training.lr', got {key!r}")
    return list(value.items())


def _string_list(value: Any, where: str) -> list[str]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or not all(isinstance(v, str) for v in items):
        raise _fail(where, f"expected a string or a non-empty list of strings, got {value!r}")
    return items


def _resolve_configs(patterns: list[str], base: Path, where: str) -> list[Path]:
    found: list[Path] = []
    for pattern in patterns:
        full = Path(os.path.normpath(base / pattern))  # an absolute pattern replaces base
        matches = sorted(Path(p) for p in glob.glob(str(full)))
        if not matches:
            raise _fail(where, f"{pattern!r} matches no file (looked for {full})")
        found.extend(m for m in matches if m not in found)
    return found


def _variants(value: Any, where: str) -> list[Variant]:
    if not isinstance(value, list):
        raise _fail(where, f"expected a list of variants, got {value!r}")
    variants: list[Variant] = []
    for i, item in enumerate(value):
        at = f"{where}[{i}]"
        if not isinstance(item, dict):
            raise _fail(at, f"expected a mapping with keys {', '.join(VARIANT_KEYS)}, got {item!r}")
        _check_keys(item, VARIANT_KEYS, at)
        name = item.get("name")
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise _fail(f"{at}.name", f"expected a name of letters, digits, _ . +, got {name!r}")
        if name in (v.name for v in variants):
            raise _fail(f"{at}.name", f"variant {name!r} is defined twice")
        if "set" not in item:
            raise _fail(at, "missing key 'set'")
        patterns = []
        if "applies_to" in item:
            patterns = _string_list(item["applies_to"], f"{at}.applies_to")
        overrides = _overrides(item["set"], f"{at}.set")
        variants.append(Variant(name, tuple(patterns), tuple(overrides)))
    return variants


def parse_sweep(data: Any, base: Path, source: str = "<sweep>") -> Sweep:
    """Validate a parsed sweep file; relative config paths are resolved against ``base``."""
    if not isinstance(data, dict):
        raise _fail(source, f"expected a mapping with keys {', '.join(TOP_KEYS)}, got {data!r}")
    _check_keys(data, TOP_KEYS, source)
    for key in REQUIRED_KEYS:
        if key not in data:
            raise _fail(source, f"missing key {key!r}")
    name = data["name"]
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise _fail(f"{source}: name", f"expected letters, digits, _ . +, got {name!r}")
    seeds = data["seeds"]
    if not isinstance(seeds, list) or not seeds or not all(type(s) is int for s in seeds):
        raise _fail(f"{source}: seeds", f"expected a non-empty list of integers, got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        raise _fail(f"{source}: seeds", f"seeds repeat: {seeds!r}")
    grid: dict[str, list[Any]] = {}
    for key, values in _overrides(data.get("grid", {}), f"{source}: grid"):
        if not isinstance(values, list) or not values:
            raise _fail(f"{source}: grid.{key}", f"expected a non-empty list, got {values!r}")
        grid[key] = values
    out = data.get("out", f"runs/{name}")
    if not isinstance(out, str):
        raise _fail(f"{source}: out", f"expected a path, got {out!r}")
    sweep = Sweep(
        name=name,
        out=Path(out),
        configs=_resolve_configs(
            _string_list(data["configs"], f"{source}: configs"), base, f"{source}: configs"
        ),
        seeds=seeds,
        overrides=_overrides(data.get("set", {}), f"{source}: set"),
        grid=grid,
        variants=_variants(data.get("variants", []), f"{source}: variants"),
        source=source,
    )
    check_conflicts(sweep, [])
    return sweep


def load_sweep(path: Path) -> Sweep:
    """Read and validate a sweep file; a problem raises SweepError naming the file and the key."""
    try:
        data = load_yaml(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise SweepError(f"{path}: cannot read the sweep file: {err}") from err
    # Absolute paths: a SLURM job need not start in the directory the sweep was launched from.
    return parse_sweep(data, path.parent.absolute(), str(path))


def check_conflicts(sweep: Sweep, cli_overrides: list[tuple[str, Any]]) -> None:
    """A key set in two places would make a point's value depend on the order of its flags."""
    owners: dict[str, str] = {SEED_KEY: "seeds"}
    groups = [("set", [k for k, _ in sweep.overrides]), ("grid", list(sweep.grid))]
    groups.append(("--set", [k for k, _ in cli_overrides]))
    for where, keys in groups:
        for key in keys:
            if key in owners:
                raise SweepError(
                    f"{sweep.source}: {key!r} is given by both {owners[key]} and {where}"
                )
            owners[key] = where
    for variant in sweep.variants:
        for key, _ in variant.overrides:
            if key in owners:
                raise SweepError(
                    f"{sweep.source}: {key!r} is given by both {owners[key]} and variant "
                    f"{variant.name!r}"
                )


def _short_keys(keys: list[str]) -> dict[str, str]:
    """Each grid key's shortest dotted suffix no other grid key shares (lr, not training.lr)."""
    short: dict[str, str] = {}
    for key in keys:
        parts = key.split(".")
        for n in range(1, len(parts) + 1):
            suffix = ".".join(parts[-n:])
            if not any(o != key and (o == suffix or o.endswith("." + suffix)) for o in keys):
                break
        short[key] = suffix
    return short


def label_of(config: Path) -> str:
    """``task/model`` of a config at ``.../<task>/<model>.yaml``."""
    return f"{config.parent.name}/{config.stem}"


def expand(sweep: Sweep, out: Path, cli_overrides: list[tuple[str, Any]]) -> list[Point]:
    """All points, in the order configs × (no variant, variants…) × grid × seeds.

    Overrides are applied in the order: sweep ``set``, command-line ``--set``, variant, grid, seed.
    """
    check_conflicts(sweep, cli_overrides)
    keys = list(sweep.grid)
    short = _short_keys(keys)
    points: list[Point] = []
    for config in sweep.configs:
        label = label_of(config)
        variants = [None] + [v for v in sweep.variants if v.applies(label)]
        for variant in variants:
            head = label if variant is None else f"{label}-{variant.name}"
            extra = list(variant.overrides) if variant else []
            for values in itertools.product(*(sweep.grid[k] for k in keys)):
                grid = list(zip(keys, values, strict=True))
                grid_part = "".join(f"{short[k]}={slug(v)}-" for k, v in grid)
                for seed in sweep.seeds:
                    name = f"{head}/{grid_part}seed={seed}"
                    overrides = [*sweep.overrides, *cli_overrides, *extra, *grid]
                    overrides.append((SEED_KEY, seed))
                    points.append(Point(config, name, tuple(overrides), out / name))
    _check_unique(points)
    return points


def _check_unique(points: list[Point]) -> None:
    seen: dict[str, Path] = {}
    for point in points:
        if point.name in seen:
            raise SweepError(
                f"two points share the run directory {point.name!r} ({seen[point.name]} and "
                f"{point.config}); give configs distinct <task>/<model>.yaml paths"
            )
        seen[point.name] = point.config


def parse_set(items: list[str]) -> list[tuple[str, Any]]:
    """``key=value`` strings from the command line; the value is read as YAML (``1e-3`` a float)."""
    out: list[tuple[str, Any]] = []
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not _KEY_RE.match(key):
            raise SweepError(f"--set {item!r}: expected section.key=value, e.g. training.lr=1e-3")
        out.append((key, load_yaml(text)))
    return out
