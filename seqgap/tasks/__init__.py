"""Tasks: one file per family (``base.py`` holds the interface, ``catalog.py`` the names)."""
from seqgap.tasks.base import Batch, Example, Task, Vocab, collate
from seqgap.tasks.catalog import TASK_HELP, TASKS, make_task, register_task

__all__ = ["TASKS", "TASK_HELP", "Batch", "Example", "Task", "Vocab", "collate", "make_task", "register_task"]
