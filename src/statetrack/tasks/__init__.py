"""Formal-language tasks: sampling, rendering and exact labels (PAPER.md, "The formal-language
tasks").

```python
task = get_task("mod_arith", modulus=5)
batch = task.sample(n=256, min_len=3, max_len=40, rng=np.random.default_rng(0))
batch.inputs, batch.labels, batch.lengths   # int64 [n, T], [n, T] (−1: no loss), [n]
task.render(batch.inputs[0])                # "3+4*2="
```
One supervised position per sequence, the answer, labelled at the last real input token; see
``statetrack.tasks.base`` for the layout and each task's module for its language.
"""

from __future__ import annotations

from statetrack.tasks.base import NO_LOSS, PAD, Task, TaskBatch
from statetrack.tasks.registry import TASKS, get_task, task_options

__all__ = ["NO_LOSS", "PAD", "TASKS", "Task", "TaskBatch", "get_task", "task_options"]
