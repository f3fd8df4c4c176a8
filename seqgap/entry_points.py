"""Third-party models and tasks from installed packages' entry points (groups ``seqgap.models``,
``seqgap.tasks``): each group is imported once; a broken plugin is a warning, never a failure."""
from __future__ import annotations

import sys

_LOADED: set[str] = set()


def load_group(group: str) -> None:
    """Import every entry point of ``group`` once (importing one registers its models or tasks)."""
    if group in _LOADED:
        return
    _LOADED.add(group)
    from importlib.metadata import entry_points

    for ep in entry_points(group=group):
        try:
            ep.load()
        except Exception as e:  # a broken plugin must not break the tool
            print(f"seqgap: warning: could not load plugin {ep.name!r} ({group}): {e}", file=sys.stderr)
