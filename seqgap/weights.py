"""A run's final weights next to the run store, and re-evaluation of a stored run without retraining.

``seqgap train --save-model`` keeps the trained model as ``<store stem>.models/<run_id>.safetensors``
(``runs.sqlite`` -> ``runs.models/``): safetensors only (tensors and a string metadata table, never a
pickle, so loading a file runs no code).  The metadata holds the run id and its config (JSON).

``seqgap eval RUN_ID --lengths 10,20`` rebuilds the run's task and model from its stored config
(``RunConfig.from_dict``, ``trainer.build_task``, ``trainer.build_model_for``), loads the weights and
calls ``trainer.eval_at_lengths``: the same numbers a run with ``--eval-lengths`` reports.  A model with
learned absolute positions evaluated beyond the positions it was built with gets the extra positions
at their initial values (never trained; said so in the output), as in a run with ``--eval-lengths``.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

from seqgap.errors import SeqgapError


def weights_dir(store_path: str | os.PathLike) -> Path:
    """``runs.sqlite`` -> ``runs.models/`` (next to the store, like its checkpoints)."""
    return Path(store_path).with_suffix(".models")


def weights_path(store_path: str | os.PathLike, run_id: str) -> Path:
    return weights_dir(store_path) / f"{run_id}.safetensors"


def save_weights(model, path: str | os.PathLike, run_id: str, config: dict[str, Any] | None = None) -> Path:
    """Write ``model``'s weights (state dict, tied tensors once) to ``path`` atomically."""
    from safetensors.torch import save_model

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    meta = {"format": "seqgap-weights/1", "run_id": run_id}
    if config is not None:
        meta["config"] = json.dumps(config, sort_keys=True, default=str)
    try:
        save_model(model, str(tmp), metadata=meta, force_contiguous=True)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def load_weights(model, path: str | os.PathLike) -> list[str]:
    """Load ``path`` into ``model`` (CPU tensors, moved by the caller).  Returns notes: position
    tables longer than the stored ones keep their extra rows at their initial values.  One
    SeqgapError line for a file that does not fit the model."""
    import torch
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        stored = load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as e:
        raise SeqgapError(f"cannot read weights {path}: {e}") from None
    own = model.state_dict()
    notes = []
    for k, v in list(stored.items()):
        if k in own and own[k].shape != v.shape:
            mine = own[k]
            if v.dim() >= 1 and v.shape[1:] == mine.shape[1:] and v.shape[0] < mine.shape[0]:
                grown = mine.detach().clone()
                grown[: v.shape[0]] = v.to(grown.dtype)
                stored[k] = grown
                notes.append(f"{k}: rows {v.shape[0]}..{mine.shape[0] - 1} untrained (positions beyond training)")
            else:
                raise SeqgapError(f"weights {path} do not fit the model: {k} is {tuple(v.shape)}, "
                                  f"the model has {tuple(mine.shape)}")
    with torch.no_grad():
        missing, unexpected = model.load_state_dict(stored, strict=False)
    if unexpected:
        raise SeqgapError(f"weights {path} do not fit the model: unexpected tensors {', '.join(sorted(unexpected)[:5])}")
    # a missing name is fine only when it shares its tensor with a loaded one (tied weights, saved once)
    ptr = {k: t.data_ptr() for k, t in model.state_dict().items()}
    loaded = {ptr[k] for k in stored if k in ptr}
    really = [k for k in missing if ptr.get(k) not in loaded]
    if really:
        raise SeqgapError(f"weights {path} do not fit the model: missing tensors {', '.join(sorted(really)[:5])}")
    return notes


def keep_weights(result, config, store, progress=None):
    """``seqgap train --save-model``: write the trained model of ``result`` next to ``store``.  A run
    answered from the store has no model; without a weights file it is trained again (the same run,
    bit-identical on CPU) to keep them.  Returns (result, path)."""
    from seqgap.training.trainer import run

    path = weights_path(store.path, result.id)
    if result.model is None:
        if path.exists():
            return result, path
        import sys

        print(f"seqgap train: run {result.id} is in the store without saved weights; training it again to "
              f"keep them", file=sys.stderr)
        result = run(config, store, progress=progress, force=True, keep_model=True)
    save_weights(result.model, path, result.id, result.config)
    return result, path


def find_run(store, run_id: str) -> dict[str, Any]:
    """The stored training run ``run_id`` (a unique prefix of it is enough)."""
    row = store.get(run_id)
    if row is None:
        matches = [r for r in store.all(kind="train") if r["id"].startswith(run_id)] if run_id else []
        if len(matches) > 1:
            raise SeqgapError(f"run id prefix {run_id!r} matches {len(matches)} runs in {store.path}; give more of it")
        if not matches:
            raise SeqgapError(f"no run {run_id!r} in {store.path} (see `seqgap runs`)")
        row = matches[0]
    if row.get("kind", "train") != "train":
        raise SeqgapError(f"{row['id']} is a {row['kind']} record, not a training run")
    return row


def eval_stored_run(store, run_id: str, lengths: Sequence[int], n_eval: int, device: str = "cpu",
                    seed: int | None = None) -> tuple[str, dict[str, dict[str, float]], list[str]]:
    """Re-evaluate stored run ``run_id`` at ``lengths`` from its saved weights: (run id, metrics per
    length as ``trainer.eval_at_lengths`` returns them, notes)."""
    from seqgap.config import RunConfig
    from seqgap.training.trainer import build_model_for, build_task, check_device, eval_at_lengths, torch_threads

    row = find_run(store, run_id)
    rid = row["id"]
    path = weights_path(store.path, rid)
    if not path.exists():
        raise SeqgapError(f"run {rid} has no saved weights ({path}); train it with `seqgap train ... --save-model`")
    config = RunConfig.from_dict(row["config"])
    if not lengths:
        raise SeqgapError("--lengths: give at least one length, e.g. 10,20")
    if n_eval < 1:
        raise SeqgapError(f"--n-eval must be >= 1, got {n_eval}")
    check_device(device)
    task = build_task(config)  # an unregistered plugin task or model: one line (load it with --plugin)
    for L in lengths:
        task.check_length(L)
    # positions for the longest requested length too (models with learned positions: see load_weights)
    longer = config.replace(eval_lengths=tuple(sorted({*config.eval_lengths, *lengths})), device="cpu")
    with torch_threads(config.train):
        model = build_model_for(task, longer)
        notes = load_weights(model, path)
        model.to(device)
        model.eval()
        metrics = eval_at_lengths(model, task, list(lengths), n_eval, config.data_seed if seed is None else seed,
                                  device)
    return rid, metrics, notes
