"""Tasks: each file registers one family (see ``base.py`` for the interface)."""
from seqgap.tasks.base import TASKS, Batch, Example, Task, Vocab, collate, make_task, register_task

# Importing the families registers them.
from seqgap.tasks import state_tracking  # noqa: F401,E402

try:  # families added by later issues
    from seqgap.tasks import retrieval  # noqa: F401
    from seqgap.tasks import istree  # noqa: F401
except ImportError:  # pragma: no cover
    pass

__all__ = ["TASKS", "Batch", "Example", "Task", "Vocab", "collate", "make_task", "register_task"]
