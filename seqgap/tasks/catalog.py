"""The tasks by name: one explicit table of the built-in families, plus user plugins.

``make_task(name, **params)`` builds a task from its name (what configs and the
CLI hold); the table is written out here, not filled by import side effects,
and no task file imports this module (tasks -> catalog, never back).  Plugins
add a name with ``register_task``; a plugin may not take a built-in name.

Every task has a version that is part of its runs' identity (:func:`task_version`): a
built-in class's ``VERSION`` attribute (1 when it declares none; bump it when a change to
that task changes results, and only its runs are retrained), a plugin's
``register_task(..., version=...)``, or else the sha256 of the plugin's source file.
"""
from __future__ import annotations

import hashlib
import inspect
from pathlib import Path
from typing import Any

from seqgap.entry_points import load_group
from seqgap.errors import SeqgapError
from seqgap.tasks.base import Task
from seqgap.tasks.istree import IsTree
from seqgap.tasks.mqar_zoology import ZoologyMQAR
from seqgap.tasks.retrieval import AssociativeRecall, CGram, Counting, Index, MultiQueryAR
from seqgap.tasks.state_tracking import ModAdd, Parity, Permutation

BUILTIN: dict[str, type[Task]] = {cls.name: cls for cls in (
    ModAdd, Parity, Permutation,  # study E
    Index, AssociativeRecall, MultiQueryAR, ZoologyMQAR, CGram, Counting, IsTree,  # study W
)}


class _TaskTable(dict):
    """The task table: built-ins, plugins registered so far, and (loaded on first look-up) the
    tasks of installed packages exposing an entry point in the ``seqgap.tasks`` group."""

    def _ready(self) -> None:
        load_task_entry_points()

    def __contains__(self, name: object) -> bool:
        self._ready()
        return super().__contains__(name)

    def __getitem__(self, name: str) -> type[Task]:
        self._ready()
        return super().__getitem__(name)

    def __iter__(self):
        self._ready()
        return super().__iter__()

    def __len__(self) -> int:
        self._ready()
        return super().__len__()

    def get(self, name, default=None):
        self._ready()
        return super().get(name, default)

    def keys(self):
        self._ready()
        return super().keys()

    def items(self):
        self._ready()
        return super().items()

    def values(self):
        self._ready()
        return super().values()


TASKS: dict[str, type[Task]] = _TaskTable(BUILTIN)
TASK_HELP: dict[str, str] = {name: cls.help for name, cls in BUILTIN.items()}

def load_task_entry_points() -> None:
    """Import every ``seqgap.tasks`` entry point once (each registers its tasks with :func:`register_task`)."""
    load_group("seqgap.tasks")


_PLUGIN_VERSIONS: dict[str, str] = {}


def register_task(name: str, help: str = "", version: str | int | None = None):
    """Class decorator for a plugin task: make it constructible by name (``make_task``).

    ``version`` (optional) is part of every run's identity; without it, the sha256 of the
    file that defines the class (editing the file retrains its runs)."""
    if name in BUILTIN:
        raise SeqgapError(f"register_task: {name!r} is a built-in task; give the plugin another name")

    def deco(cls):
        cls.name = name  # its error messages and describe() use the registered name
        dict.__setitem__(TASKS, name, cls)
        TASK_HELP[name] = help or cls.help or ((cls.__doc__ or "").strip().splitlines() or [""])[0]
        _PLUGIN_VERSIONS[name] = str(version) if version is not None else _source_version(cls)
        return cls

    return deco


def task_version(name: str) -> str:
    """The version of task ``name`` recorded in its runs' identity (see the module docstring)."""
    if name not in TASKS:
        raise SeqgapError(f"unknown task {name!r}; known tasks: {', '.join(sorted(TASKS))}")
    if name in BUILTIN:
        return str(getattr(BUILTIN[name], "VERSION", 1))
    return _PLUGIN_VERSIONS.get(name) or _source_version(TASKS[name])


def _source_version(cls: type) -> str:
    try:
        path = inspect.getsourcefile(cls)
        if path and Path(path).is_file():
            return "sha256:" + hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]
        return "sha256:" + hashlib.sha256(inspect.getsource(cls).encode()).hexdigest()[:16]
    except (OSError, TypeError):
        return "unversioned"


def make_task(name: str, **params: Any) -> Task:
    """Build a task by name; unknown names and bad parameters are one-line SeqgapErrors.

    ``None`` values mean "the task's default".  Every built-in task also takes
    ``min_length`` (the shortest length a length distribution draws)."""
    if name not in TASKS:
        raise SeqgapError(f"unknown task {name!r}; known tasks: {', '.join(sorted(TASKS))}")
    params = {k: v for k, v in params.items() if v is not None}
    import inspect

    cls = TASKS[name]
    accepted = inspect.signature(cls.__init__).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in accepted.values()):
        unknown = [k for k in params if k not in accepted or k == "self"]
        if unknown:  # named by repr: a hostile key cannot break the message over lines
            options = ", ".join(k for k in accepted if k != "self")
            raise SeqgapError(f"task {name}: unknown option(s) {', '.join(map(repr, unknown))}; options: {options}")
    try:
        return cls(**params)
    except TypeError as e:
        raise SeqgapError(f"task {name}: {' '.join(str(e).split())}") from None
