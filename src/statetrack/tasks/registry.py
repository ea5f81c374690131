"""The tasks by name; each constructor holds the only defaults of its options."""

from __future__ import annotations

from typing import Any

from statetrack.tasks.base import Task, option_defaults
from statetrack.tasks.cycle_nav import CycleNav
from statetrack.tasks.even_pairs import EvenPairs
from statetrack.tasks.mod_arith import ModArith
from statetrack.tasks.mod_arith_brackets import ModArithBrackets
from statetrack.tasks.parity import Parity

TASKS: dict[str, type[Task]] = {
    cls.name: cls for cls in (Parity, ModArith, ModArithBrackets, CycleNav, EvenPairs)
}


def task_options(name: str) -> dict[str, Any]:
    """The options of task ``name`` and their defaults."""
    return option_defaults(_task_class(name))


def get_task(name: str, **options: Any) -> Task:
    """Build task ``name``; an unknown name or option is a ``ValueError`` naming the allowed."""
    allowed = task_options(name)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(f"task {name!r}: unknown option(s) {', '.join(unknown)}; allowed: "
                         f"{', '.join(allowed) if allowed else 'none'}")
    return TASKS[name](**options)


def _task_class(name: str) -> type[Task]:
    if name not in TASKS:
        raise ValueError(f"task: expected one of {', '.join(TASKS)}, got {name!r}")
    return TASKS[name]
