"""The tasks by name: one explicit table of the built-in families, plus user plugins.

``make_task(name, **params)`` builds a task from its name (what configs and the
CLI hold); the table is written out here, not filled by import side effects,
and no task file imports this module (tasks -> catalog, never back).  Plugins
add a name with ``register_task``; a plugin may not take a built-in name.
"""
from __future__ import annotations

from typing import Any

from seqgap.errors import SeqgapError
from seqgap.tasks.base import Task
from seqgap.tasks.istree import IsTree
from seqgap.tasks.retrieval import AssociativeRecall, CGram, Counting, Index, MultiQueryAR
from seqgap.tasks.state_tracking import ModAdd, Parity, Permutation

BUILTIN: dict[str, type[Task]] = {cls.name: cls for cls in (
    ModAdd, Parity, Permutation,  # study E
    Index, AssociativeRecall, MultiQueryAR, CGram, Counting, IsTree,  # study W
)}
TASKS: dict[str, type[Task]] = dict(BUILTIN)
TASK_HELP: dict[str, str] = {name: cls.help for name, cls in BUILTIN.items()}


def register_task(name: str, help: str = ""):
    """Class decorator for a plugin task: make it constructible by name (``make_task``)."""
    if name in BUILTIN:
        raise SeqgapError(f"register_task: {name!r} is a built-in task; give the plugin another name")

    def deco(cls):
        cls.name = name  # its error messages and describe() use the registered name
        TASKS[name] = cls
        TASK_HELP[name] = help or cls.help or ((cls.__doc__ or "").strip().splitlines() or [""])[0]
        return cls

    return deco


def make_task(name: str, **params: Any) -> Task:
    """Build a task by name; unknown names and bad parameters are one-line SeqgapErrors.

    ``None`` values mean "the task's default".  Every built-in task also takes
    ``min_length`` (the shortest length a length distribution draws)."""
    if name not in TASKS:
        raise SeqgapError(f"unknown task {name!r}; known tasks: {', '.join(sorted(TASKS))}")
    params = {k: v for k, v in params.items() if v is not None}
    try:
        return TASKS[name](**params)
    except TypeError as e:
        raise SeqgapError(f"task {name}: {e}") from None
