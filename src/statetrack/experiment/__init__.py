"""The experiment harness: a YAML config → a trained model, accuracy by length, a run directory
and reports (markdown table, plot). See DESIGN.md "experiment: runs and results".

```python
from statetrack.experiment import load_config, train
config = load_config("configs/demo/parity_deltanet_neg.yaml", ["training.steps=100"])
summary = train(config, Path("runs/demo/try"))
```
"""

from __future__ import annotations

from typing import Any

from statetrack.experiment.config import ConfigError, ExperimentConfig, load_config
from statetrack.experiment.rundir import find_run_dirs

__all__ = ["ConfigError", "ExperimentConfig", "TrainingDiverged", "find_run_dirs",
           "load_config", "train"]


def __getattr__(name: str) -> Any:
    # The trainer imports torch; load it only when asked, so that `statetrack --help` is quick.
    if name in ("train", "TrainingDiverged"):
        from statetrack.experiment import trainer

        return getattr(trainer, name)
    raise AttributeError(f"module 'statetrack.experiment' has no attribute {name!r}")
