"""What every study does with its models before training: read ``--model`` lists with per-model
sizes (``llama:tiny,mine:small``) and run ``check-model`` once per distinct model of its cells.

* :func:`parse_models` -- ``"llama:tiny,mine:small,lstm"`` -> ``[("llama", "tiny"), ("mine", "small"),
  ("lstm", None)]`` (a bare name: the size ``--size`` or the preset gives it);
* :func:`check_run_models` -- :func:`seqgap.models.check.require_model_ok` once per distinct
  (model, size, options) of a list of run configs, before any of them trains: a failed check is
  one :class:`SeqgapError` line.  A model is checked with generation (``init_state``/``step``)
  when any of its runs generates (free generation from a prompt: ``gen_eval`` or extra lengths
  on a generative format such as CoT or RAG).  Checks already passed in this process are not
  repeated.
"""
from __future__ import annotations

import json
from typing import Any, Sequence

from seqgap.errors import SeqgapError

_PASSED: set[str] = set()  # checks that passed in this process (key: model, size, options, vocab, generation)


def parse_models(text: str | None, flag: str = "--model") -> list[tuple[str, str | None]] | None:
    """A ``--model`` list with optional per-model sizes (``name:size``); None when not given.
    One line for an empty entry, a model given twice with the same size, or ``name:`` without a size."""
    if text is None:
        return None
    out: list[tuple[str, str | None]] = []
    for item in str(text).split(","):
        item = item.strip()
        if not item:
            continue
        name, sep, size = item.partition(":")
        name, size = name.strip(), size.strip()
        if not name:
            raise SeqgapError(f"{flag}: empty model name in {item!r} (use NAME or NAME:SIZE)")
        if sep and not size:
            raise SeqgapError(f"{flag}: {item!r} has no size after ':' (use NAME or NAME:SIZE)")
        entry = (name, size or None)
        if entry in out:
            raise SeqgapError(f"{flag}: {item} is given twice")
        out.append(entry)
    if not out:
        raise SeqgapError(f"{flag} is empty")
    return out


def resolve_sizes(models: Sequence[tuple[str, str | None]], size: str | None,
                  preset_sizes: dict[str, Any]) -> list[tuple[str, str | None]]:
    """Each model's size: its own (``name:size``), else ``--size``, else the preset's for that name."""
    return [(m, s if s is not None else (size if size is not None else preset_sizes.get(m))) for m, s in models]


def _needs_generation(config, task) -> bool:
    if not (config.gen_eval or config.eval_lengths):
        return False
    import numpy as np

    example = task.encode(task.sample_problem(np.random.default_rng(0), config.max_length))
    return example.prompt_len is not None


def check_run_models(configs: Sequence[Any], log=None) -> None:
    """``seqgap check-model`` once per distinct model (name, size, options) of ``configs``
    (RunConfig), before any training; one SeqgapError line on a failure."""
    from seqgap.models.check import require_model_ok
    from seqgap.training.trainer import build_task

    groups: dict[str, dict[str, Any]] = {}
    for cfg in configs:
        key = json.dumps([cfg.model, cfg.model_size, cfg.model_options], sort_keys=True, default=str)
        task = build_task(cfg)
        g = groups.setdefault(key, {"config": cfg, "vocab": len(task.vocab), "generation": False})
        g["vocab"] = max(g["vocab"], len(task.vocab))
        g["generation"] = g["generation"] or _needs_generation(cfg, task)
    for key, g in groups.items():
        cfg = g["config"]
        done = json.dumps([key, g["vocab"], g["generation"]])
        if done in _PASSED or json.dumps([key, g["vocab"], True]) in _PASSED:
            continue
        require_model_ok(cfg.model, g["vocab"], cfg.model_size, cfg.model_options, needs_generation=g["generation"])
        _PASSED.add(done)
        if log is not None:
            size = f":{cfg.model_size}" if cfg.model_size else ""
            log(f"check-model: {cfg.model}{size} passed" + (" (with generation)" if g["generation"] else ""))
