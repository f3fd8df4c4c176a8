"""Tasks: each file registers one family (see ``base.py`` for the interface)."""
from seqgap.tasks.base import TASKS, Batch, Example, Task, Vocab, collate, make_task, register_task

# Importing the families registers them.
from seqgap.tasks import istree, retrieval, state_tracking  # noqa: F401,E402

__all__ = ["TASKS", "Batch", "Example", "Task", "Vocab", "collate", "make_task", "register_task"]
