"""The experiment config: a YAML file with sections ``task``, ``model``, ``training`` and
``evaluation`` plus a top-level ``name`` (the model's label, e.g. ``deltanet_neg``).

Validation is strict and happens before any work: an unknown or mistyped key, a wrong type or a
bad value is a :class:`ConfigError` whose message names the key, the allowed values and the file,
e.g. ``model.mixer_options.eig_range: expected [lo, hi] with -1 <= lo < hi <= 1, got [0, 2] in
configs/x.yaml``. The ``model`` keys are :class:`statetrack.models.config.ModelConfig`'s (less
``vocab_size``, which comes from the task); mixer and task options are checked against their
constructors, where their defaults live, and written out in full in the resolved config.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from statetrack.eig import EigRange
from statetrack.models.config import INIT_SCHEMES, MLP_KINDS, NORM_KINDS, ModelConfig


class ConfigError(ValueError):
    """A config that cannot run; the message names the key, the allowed values and the file."""


@dataclass
class TaskSection:
    name: str = "parity"
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainingSection:
    steps: int = 1000
    batch_size: int = 256
    min_len: int = 3  # training task lengths, PAPER.md's s
    max_len: int = 40
    lr: float = 1e-3
    final_lr_factor: float = 1e-3  # cosine decay ends at lr × final_lr_factor
    warmup_steps: int = 0
    weight_decay: float = 0.0
    # true: norm gains and biases decay too, only Mamba's A_log and D do not (the public
    # harness's grouping for DeltaNet and Mamba; SequenceModel.param_groups)
    decay_norms_and_biases: bool = False
    # false: the embedding is not decayed (xLSTM's weight_decay_on_embedding, false by default)
    decay_embedding: bool = True
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_eps: float = 1e-8
    grad_clip: float | None = None  # max global gradient norm; null: no clipping
    seed: int = 0  # initialisation
    data_seed: int | None = None  # training samples; null: the same as seed
    device: str = "auto"
    precision: str = "auto"  # bf16: bf16 autocast; auto: bf16 on CUDA, fp32 on the CPU; fp32
    log_every: int = 100
    val_every: int = 1000  # 0: no periodic validation
    checkpoint_every: int = 1000  # 0: only at the end
    cuda_graphs: bool = True  # on CUDA, replay each padded length's step as a CUDA graph
    compile: bool = False  # torch.compile the forward and loss (the ops stay outside the graphs)


@dataclass
class EvaluationSection:
    min_len: int = 40
    max_len: int = 256
    n: int = 8192
    batch_size: int = 1024
    seed: int = 1234  # one test set for every run, so runs compare on the same sequences
    val_n: int = 256  # the held-out set of periodic validation (evaluation lengths)


CHOICES: dict[str, tuple[str, ...]] = {
    "training.device": ("auto", "cpu", "cuda"),
    "training.precision": ("auto", "bf16", "fp32"),
    "model.mlp": MLP_KINDS,
    "model.init": INIT_SCHEMES,
    "model.norm": NORM_KINDS,
}
POSITIVE = {"training.steps", "training.batch_size", "training.lr", "training.log_every",
            "training.adam_eps", "training.grad_clip", "evaluation.n", "evaluation.batch_size",
            "evaluation.val_n", "model.d_model", "model.n_layers", "model.mlp_ratio",
            "model.norm_eps", "model.embedding_std"}
NON_NEGATIVE = {"training.warmup_steps", "training.weight_decay", "training.val_every",
                "training.checkpoint_every", "training.seed", "training.data_seed",
                "evaluation.seed"}
SECTIONS = ("task", "model", "training", "evaluation")
# YAML 1.1 (PyYAML) reads ``1e-3`` as a string; a float key accepts that spelling.
_EXPONENT_FLOAT = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+$")


@dataclass
class ExperimentConfig:
    name: str
    task: TaskSection
    model: dict[str, Any]  # ModelConfig's keys without vocab_size
    training: TrainingSection
    evaluation: EvaluationSection

    def model_config(self, vocab_size: int) -> ModelConfig:
        return ModelConfig(vocab_size=vocab_size, **self.model)

    @property
    def eig_range(self) -> EigRange | None:
        value = self.model.get("mixer_options", {}).get("eig_range")
        return None if value is None else EigRange.parse(value)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "task": dataclasses.asdict(self.task),
                "model": _plain(self.model), "training": dataclasses.asdict(self.training),
                "evaluation": dataclasses.asdict(self.evaluation)}

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None)


# ---------------------------------------------------------------------------- loading
def load_config(path: str | Path, overrides: list[str] | None = None) -> ExperimentConfig:
    """Read, override (``section.key=value``) and validate a config file."""
    path = Path(path)
    where = f" in {path}"
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping with keys name, {', '.join(SECTIONS)}")
    for item in overrides or []:
        apply_override(raw, item, where)
    return validate(raw, where)


def apply_override(raw: dict[str, Any], item: str, where: str = "") -> None:
    """Apply ``--set section.key=value`` to a raw config; the value is read as YAML."""
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected section.key=value, e.g. training.lr=3e-4")
    dotted, text = item.split("=", 1)
    keys = dotted.strip().split(".")
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"--set {dotted}: value {text!r} is not valid YAML: {err}") from None
    node = raw
    for depth, key in enumerate(keys[:-1]):
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise ConfigError(f"--set {dotted}: {'.'.join(keys[: depth + 1])} is not a section"
                              f"{where}")
        node = child
    node[keys[-1]] = value


def validate(raw: dict[str, Any], where: str = "") -> ExperimentConfig:
    """Check every key, type and value of a raw config and fill in all defaults."""
    _reject_unknown(raw, ("name", *SECTIONS), "", where)
    for section in SECTIONS:
        if not isinstance(raw.get(section, {}), dict):
            raise ConfigError(f"{section}: expected a mapping, got {raw[section]!r}{where}")
    task = _section(TaskSection, raw.get("task", {}), "task", where)
    task.options = _task_options(task, where)
    model = resolve_model(raw.get("model", {}), where)
    training = _section(TrainingSection, raw.get("training", {}), "training", where)
    evaluation = _section(EvaluationSection, raw.get("evaluation", {}), "evaluation", where)
    if training.data_seed is None:
        training.data_seed = training.seed
    name = raw.get("name", f"{model['mixer']}")
    _check_type(name, "str", "name", where)
    if not re.fullmatch(r"[A-Za-z0-9_.+-]+", name):
        raise ConfigError(f"name: expected letters, digits and _.+- only, got {name!r}{where}")
    config = ExperimentConfig(name, task, model, training, evaluation)
    _check_relations(config, where)
    return config


def _section(cls: type, raw: dict[str, Any], section: str, where: str) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    _reject_unknown(raw, tuple(fields), f"{section}.", where)
    values = {}
    for key, value in raw.items():
        values[key] = _check_type(value, str(fields[key].type), f"{section}.{key}", where)
    return cls(**values)


def resolve_model(raw: dict[str, Any], where: str = "") -> dict[str, Any]:
    """The model section with every key and mixer option filled in from the constructors."""
    fields = {f.name: f for f in dataclasses.fields(ModelConfig) if f.name != "vocab_size"}
    _reject_unknown(raw, tuple(fields), "model.", where)
    model: dict[str, Any] = {}
    for key, f in fields.items():
        if key in raw:
            model[key] = _check_type(raw[key], str(f.type), f"model.{key}", where)
        else:
            model[key] = f.default_factory() if f.default is dataclasses.MISSING else f.default
    model["mixer_options"] = _mixer_options(model["mixer"], model["mixer_options"], where)
    return model


def _mixer_options(mixer: str, options: dict[str, Any], where: str) -> dict[str, Any]:
    import statetrack.layers  # noqa: F401  (registers the mixers)
    from statetrack.layers.registry import MIXERS, mixer_options

    if mixer not in MIXERS:
        raise ConfigError(f"model.mixer: expected one of {', '.join(sorted(MIXERS))}, "
                          f"got {mixer!r}{where}")
    allowed = mixer_options(mixer)
    _reject_unknown(options, tuple(allowed), "model.mixer_options.", where)
    resolved = {}
    for key, default in allowed.items():
        value = options.get(key, default)
        if value is _EMPTY:
            raise ConfigError(f"model.mixer_options.{key}: required by mixer {mixer!r}{where}")
        if key == "eig_range" and value is not None:
            try:
                value = EigRange.parse(value, where=f"model.mixer_options.{key}").as_list()
            except ValueError as err:
                raise ConfigError(f"{err}{where}") from None
        elif key in options:
            value = _check_option(value, default, f"model.mixer_options.{key}", where)
        resolved[key] = _plain(value)
    return resolved


def _task_options(task: TaskSection, where: str) -> dict[str, Any]:
    from statetrack.tasks import TASKS, task_options

    if task.name not in TASKS:
        raise ConfigError(f"task.name: expected one of {', '.join(TASKS)}, got {task.name!r}"
                          f"{where}")
    allowed = task_options(task.name)
    _reject_unknown(task.options, tuple(allowed), "task.options.", where)
    resolved = {}
    for key, default in allowed.items():
        value = task.options.get(key, default)
        if key in task.options:
            value = _check_option(value, default, f"task.options.{key}", where)
        resolved[key] = _plain(value)
    return resolved


def _check_relations(config: ExperimentConfig, where: str) -> None:
    values = {f"{s}.{k}": v for s in ("training", "evaluation")
              for k, v in dataclasses.asdict(getattr(config, s)).items()}
    values.update({f"model.{k}": v for k, v in config.model.items()})
    for key, value in values.items():
        if key in CHOICES and value not in CHOICES[key]:
            raise ConfigError(f"{key}: expected one of {', '.join(CHOICES[key])}, "
                              f"got {value!r}{where}")
        if key in POSITIVE and value is not None and not value > 0:
            raise ConfigError(f"{key}: expected a number > 0, got {value!r}{where}")
        if key in NON_NEGATIVE and value is not None and value < 0:
            raise ConfigError(f"{key}: expected a number >= 0, got {value!r}{where}")
    t, e = config.training, config.evaluation
    if not 0.0 <= t.final_lr_factor <= 1.0:
        raise ConfigError(f"training.final_lr_factor: expected a number in [0, 1], "
                          f"got {t.final_lr_factor!r}{where}")
    if t.warmup_steps > t.steps:
        raise ConfigError(f"training.warmup_steps: expected <= training.steps = {t.steps}, "
                          f"got {t.warmup_steps}{where}")
    for name, lo, hi in (("training", t.min_len, t.max_len), ("evaluation", e.min_len, e.max_len)):
        if not 1 <= lo <= hi:
            raise ConfigError(f"{name}.min_len, {name}.max_len: expected 1 <= min_len <= max_len, "
                              f"got [{lo}, {hi}]{where}")


# ---------------------------------------------------------------------------- helpers
_EMPTY = inspect.Parameter.empty  # marks a required constructor option


def _reject_unknown(raw: dict[str, Any], allowed: tuple[str, ...], prefix: str,
                    where: str) -> None:
    for key in raw:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f" (did you mean {prefix}{close[0]}?)" if close else ""
            raise ConfigError(f"{prefix}{key}: unknown key{where}{hint}; allowed: "
                              f"{', '.join(allowed) if allowed else 'none'}")


def _check_option(value: Any, default: Any, key: str, where: str) -> Any:
    """A constructor option judged by its default where that is unambiguous (a flag must be a
    bool, a float accepts ints and ``1e-3``); anything else the constructor itself checks when
    the model is built, still before any work (an option such as dt_rank takes "auto" or an
    int)."""
    if isinstance(default, bool):
        return _check_type(value, "bool", key, where)
    if isinstance(default, float) and not isinstance(value, bool):
        return _check_type(value, "float", key, where)
    return value


def _check_type(value: Any, typename: str, key: str, where: str) -> Any:
    """Check ``value`` against an annotation such as ``int``, ``float | None``, ``dict[...]``."""
    kinds = [k.strip() for k in typename.split("|")]
    if value is None:
        if "None" in kinds:
            return None
        raise ConfigError(f"{key}: expected {typename}, got null{where}")
    kind = kinds[0]
    if kind == "bool" and isinstance(value, bool):
        return value
    if kind == "int" and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind == "float" and not isinstance(value, bool):
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str) and _EXPONENT_FLOAT.match(value.strip()):
            return float(value)
    if kind == "str" and isinstance(value, str):
        return value
    if kind.startswith("dict") and isinstance(value, dict):
        return dict(value)
    shown = kind.split("[")[0] + (" or null" if "None" in kinds else "")
    raise ConfigError(f"{key}: expected {shown}, got {value!r} ({type(value).__name__}){where}")


def _plain(value: Any) -> Any:
    """A YAML-safe copy: EigRange → [lo, hi], tuples → lists."""
    if isinstance(value, EigRange):
        return value.as_list()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value
