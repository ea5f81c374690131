"""``statetrack tasks``: list the tasks, or show rendered examples of one.

```
statetrack tasks list
statetrack tasks show mod_arith -n 5 --min-len 3 --max-len 40 --seed 0 --option modulus=7
```
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import numpy as np

from statetrack.tasks.registry import TASKS, get_task, task_options


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="tasks_command", metavar="{list,show}")
    sub.add_parser("list", help="task names, options with defaults, number of answer classes")
    show = sub.add_parser("show", help="print rendered examples with their answers and lengths")
    show.add_argument("name", help=f"one of {', '.join(TASKS)}")
    show.add_argument("-n", type=int, default=5, help="number of examples (default 5)")
    show.add_argument("--min-len", type=int, default=3, help="smallest task length (default 3)")
    show.add_argument("--max-len", type=int, default=40, help="largest task length (default 40)")
    show.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    show.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                      help="a task option, e.g. modulus=7 or mult=true (repeatable)")


def run(args: argparse.Namespace) -> int:
    if args.tasks_command == "show":
        return _show(args)
    if args.tasks_command in (None, "list"):
        return _list()
    raise ValueError(f"tasks: expected list or show, got {args.tasks_command!r}")


def _list() -> int:
    print(f"{'task':<20} {'classes':>7}  options (defaults)")
    for name in TASKS:
        defaults = task_options(name)
        opts = ", ".join(f"{k}={v!r}" for k, v in defaults.items()) or "-"
        print(f"{name:<20} {get_task(name).num_classes:>7}  {opts}")
    return 0


def _show(args: argparse.Namespace) -> int:
    try:
        options = parse_options(args.name, args.option)
        task = get_task(args.name, **options)
        batch = task.sample(n=args.n, min_len=args.min_len, max_len=args.max_len,
                            rng=np.random.default_rng(args.seed))
    except ValueError as err:
        print(f"statetrack tasks show: {err}", file=sys.stderr)
        return 2
    print(f"{task!r}  vocab: {' '.join(task.vocab)}")
    for row, answer, length in zip(batch.inputs, batch.answers, batch.lengths, strict=True):
        print(f"s={int(length):<4} {task.render(row)}  ->  {task.vocab[int(answer)]}")
    return 0


def parse_options(name: str, pairs: list[str]) -> dict[str, Any]:
    """``["modulus=7", "mult=true"]`` → ``{"modulus": 7, "mult": True}``, each value parsed as
    the type of the option's default; an unknown key is left for ``get_task`` to report."""
    defaults = task_options(name)
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--option: expected KEY=VALUE, got {pair!r}")
        options[key] = _parse_value(key, text, defaults.get(key))
    return options


def _parse_value(key: str, text: str, default: Any) -> Any:
    if isinstance(default, bool):
        if text.lower() not in ("true", "false", "1", "0"):
            raise ValueError(f"--option {key}: expected true or false, got {text!r}")
        return text.lower() in ("true", "1")
    if isinstance(default, int):
        try:
            return int(text)
        except ValueError:
            raise ValueError(f"--option {key}: expected an integer, got {text!r}") from None
    return text
