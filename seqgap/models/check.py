"""``seqgap check-model``: test a model against the contract (docs/models.md) before any training.

:func:`check_model` builds the model on random tokens and runs, in order:

* ``shape``     -- ``forward(tokens (B, T))`` returns logits ``(B, T, V)`` (hidden states
  ``(B, T, D)`` or one row per sequence ``(B, V)`` are named as such);
* ``finite``    -- no NaN or inf in the logits;
* ``causal``    -- changing the tokens after position t never changes the outputs at 0..t;
* ``step``      -- ``init_state`` + ``step`` token by token agree with ``forward`` (skipped,
  with a note, for a model without ``step`` when generation is not needed; failed otherwise);
* ``gradients`` -- a backward pass reaches every trainable parameter;
* ``state_size`` -- ``state_size()`` reports a positive number of floats.

Each check is one :class:`CheckResult` (one line); :func:`require_model_ok` turns the failures
into one :class:`SeqgapError` line (what ``seqgap train`` runs first).  The global torch RNG is
left as it was.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import torch
import torch.nn.functional as F

from seqgap.errors import SeqgapError
from seqgap.models.base import ModelSpec, StateSize
from seqgap.models.registry import build_model, get_spec, make_config

CHECKS = ("shape", "finite", "causal", "step", "gradients", "state_size")


@dataclass
class CheckResult:
    name: str
    ok: bool
    message: str
    skipped: bool = False

    @property
    def status(self) -> str:
        return "SKIP" if self.skipped else "PASS" if self.ok else "FAIL"

    def line(self) -> str:
        return f"{self.status}  {self.name:10s}  {self.message}"


def _build(name_or_spec: str | ModelSpec, vocab_size: int, max_len: int, size: str | None,
           options: Mapping[str, Any]):
    if isinstance(name_or_spec, str):
        return get_spec(name_or_spec), build_model(name_or_spec, vocab_size=vocab_size, max_len=max_len, size=size,
                                                   **options)
    spec = name_or_spec
    if spec.name in _registered_names() and get_spec(spec.name) is spec:
        config = make_config(spec.name, size, **options)
    else:  # a spec that is not registered: its config from its sizes and the options
        values = {**(spec.sizes.get(size, {}) if size else {}), **options}
        config = spec.config(**values)
    return spec, (spec.build or spec.cls)(config, vocab_size, max_len)


def _registered_names() -> set[str]:
    from seqgap.models.registry import MODELS

    return set(MODELS)


def _err(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}".rstrip(": ")


def _shape_problem(out: Any, B: int, T: int, V: int) -> str | None:
    if isinstance(out, (tuple, list)):
        return (f"forward returned a {type(out).__name__}; it must return the logits tensor (B, T, V) "
                f"= ({B}, {T}, {V}) alone")
    if not isinstance(out, torch.Tensor):
        return f"forward returned {type(out).__name__}; it must return a logits tensor (B, T, V) = ({B}, {T}, {V})"
    shape = tuple(out.shape)
    if shape == (B, T, V):
        return None
    if len(shape) == 3 and shape[:2] == (B, T):
        return (f"forward returned (B, T, {shape[2]}) = {shape} but the vocabulary has V={V} tokens: that looks "
                f"like hidden states; apply an output head (e.g. self.emb.logits(h)) to get logits (B, T, V)")
    if len(shape) == 2 and shape == (B, V):
        return (f"forward returned (B, V) = {shape}: one prediction per sequence; seqgap scores every position "
                f"and needs logits (B, T, V) = ({B}, {T}, {V})")
    if len(shape) == 3 and shape == (T, B, V):
        return f"forward returned (T, B, V) = {shape}: time-major; return batch-first logits (B, T, V)"
    return f"forward returned shape {shape}; expected logits (B, T, V) = ({B}, {T}, {V})"


def _close(a: torch.Tensor, b: torch.Tensor) -> tuple[bool, float]:
    """Equal up to float32 rounding (NaN equals NaN here: the finite check reports those)."""
    a, b = torch.nan_to_num(a.double(), 0.0, 1e30, -1e30), torch.nan_to_num(b.double(), 0.0, 1e30, -1e30)
    diff = (a - b).abs().max().item() if a.numel() else 0.0
    scale = max(1.0, b.double().abs().max().item() if b.numel() else 1.0)
    return diff <= 1e-4 * scale, diff


def check_model(name_or_spec: str | ModelSpec, vocab_size: int = 11, size: str | None = None,
                options: Mapping[str, Any] | None = None, needs_generation: bool = False, *,
                seq_len: int = 12, batch_size: int = 3, max_len: int | None = None, seed: int = 0) -> list[CheckResult]:
    """Check a registered model (by name) or a spec against the model contract; one result per check.

    ``needs_generation``: whether the model will have to generate (CoT/RAG formats, ``gen_eval``,
    generated answers at extra lengths); without it a model that has no ``step`` passes with a
    note.  The model is built with ``max_len = max(seq_len, max_len)``."""
    B, T, V = batch_size, seq_len, vocab_size
    options = dict(options or {})
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return _run_checks(name_or_spec, B, T, V, size, options, needs_generation, max(T, max_len or 0))


def _run_checks(name_or_spec, B: int, T: int, V: int, size, options, needs_generation: bool,
                max_len: int) -> list[CheckResult]:
    results: list[CheckResult] = []

    def add(name: str, ok: bool, message: str, skipped: bool = False) -> CheckResult:
        r = CheckResult(name, ok, message, skipped)
        results.append(r)
        return r

    def skip_rest(why: str) -> list[CheckResult]:
        for name in CHECKS:
            if name not in {r.name for r in results}:
                add(name, False, f"not run: {why}", skipped=True)
        return results

    try:
        spec, model = _build(name_or_spec, V, max_len, size, options)
    except SeqgapError:
        raise
    except Exception as e:
        add("build", False, f"the model could not be built: {_err(e)}")
        return skip_rest("the model could not be built")
    model.eval()
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, V, (B, T), generator=g)
    dev = _device(model)
    x = x.to(dev)

    # shape
    try:
        with torch.no_grad():
            out = model(x)
    except Exception as e:
        add("shape", False, f"forward(tokens (B, T) = ({B}, {T})) raised {_err(e)}")
        return skip_rest("forward failed")
    problem = _shape_problem(out, B, T, V)
    if problem:
        add("shape", False, problem)
        return skip_rest("the output shape is wrong")
    add("shape", True, f"forward: tokens ({B}, {T}) -> logits ({B}, {T}, {V})")

    # finite
    bad = (~torch.isfinite(out)).sum().item()
    if bad:
        add("finite", False, f"{bad} of {out.numel()} logits are NaN or inf on random tokens")
    else:
        add("finite", True, "all logits finite")

    # causality: change every token after t; outputs at 0..t must not move
    leak = None
    try:
        with torch.no_grad():
            for t in range(T - 1):
                x2 = x.clone()
                x2[:, t + 1:] = (x[:, t + 1:] + 1 + torch.randint(0, V - 1, (B, T - t - 1), generator=g).to(dev)) % V
                ok, diff = _close(model(x2)[:, : t + 1], out[:, : t + 1])
                if not ok:
                    leak = (t, diff)
                    break
    except Exception as e:
        add("causal", False, f"forward raised {_err(e)} on changed tokens")
    else:
        if leak:
            t, diff = leak
            add("causal", False, f"changing the tokens after position {t} changed the logits at positions <= {t} "
                                 f"(max diff {diff:.3g}): forward looks at future tokens (a missing causal mask, "
                                 f"a bidirectional layer, a non-causal convolution or normalisation over time?)")
        else:
            add("causal", True, f"outputs at 0..t independent of tokens after t (t = 0..{T - 2})")

    # step == forward
    can_generate = model.can_generate() if hasattr(model, "can_generate") else (
        hasattr(model, "step") and hasattr(model, "init_state"))
    if not can_generate:
        if needs_generation:
            add("step", False, "the model has no init_state/step, but generation is needed (CoT/RAG formats, "
                               "gen_eval): implement init_state(batch_size, device=None) and step(tokens (B,), state) "
                               "-> (logits (B, V), state) (docs/models.md)")
        else:
            add("step", True, "skipped: no init_state/step (fine for teacher-forced formats: outcome, ACoT, vanilla; "
                              "generative formats and gen_eval need it)", skipped=True)
    else:
        try:
            with torch.no_grad():
                state = model.init_state(B)
                rows = []
                for t in range(T):
                    logits, state = model.step(x[:, t], state)
                    if not isinstance(logits, torch.Tensor) or tuple(logits.shape) != (B, V):
                        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
                        raise _StepShape(f"step returned logits of shape {shape}; expected (B, V) = ({B}, {V})")
                    rows.append(logits)
            ok, diff = _close(torch.stack(rows, 1), out)
        except _StepShape as e:
            add("step", False, str(e))
        except Exception as e:
            add("step", False, f"init_state/step raised {_err(e)}")
        else:
            if ok:
                add("step", True, f"init_state + step over {T} tokens == forward (max diff {diff:.2g})")
            else:
                first = next(t for t in range(T) if not _close(rows[t], out[:, t])[0])
                add("step", False, f"step disagrees with forward from position {first} on (max diff {diff:.3g}): "
                                   f"generation would not be the model that was trained")

    # gradients
    named = {n: p for n, p in model.named_parameters() if p.requires_grad}
    if not named:
        add("gradients", False, "the model has no trainable parameters")
    else:
        model.train()
        try:
            model.zero_grad(set_to_none=True)
            logits = model(x)
            loss = F.cross_entropy(logits.reshape(-1, V).float(), torch.randint(0, V, (B * T,), generator=g).to(dev))
            loss.backward()
        except Exception as e:
            add("gradients", False, f"backward raised {_err(e)}")
        else:
            dead = [n for n, p in named.items() if p.grad is None or not bool((p.grad != 0).any())]
            nonfinite = [n for n, p in named.items() if p.grad is not None and not bool(torch.isfinite(p.grad).all())]
            if dead:
                more = f" and {len(dead) - 5} more" if len(dead) > 5 else ""
                add("gradients", False, f"no gradient reaches {len(dead)} of {len(named)} trainable parameters: "
                                        f"{', '.join(dead[:5])}{more} (unused, detached, or freeze them with "
                                        f"requires_grad=False)")
            elif nonfinite:
                add("gradients", False, f"non-finite gradients in {', '.join(nonfinite[:5])}")
            else:
                add("gradients", True, f"gradients reach all {len(named)} trainable parameters")
        finally:
            model.zero_grad(set_to_none=True)
            model.eval()

    # state size
    try:
        size_ = model.state_size()
    except Exception as e:
        add("state_size", False, f"state_size() raised {_err(e)}")
    else:
        floats = getattr(size_, "floats", None)
        if not isinstance(size_, StateSize) or isinstance(floats, bool) or not isinstance(floats, int):
            add("state_size", False, f"state_size() returned {size_!r}; return a seqgap.models.StateSize(floats)")
        elif floats <= 0:
            add("state_size", False, "state_size() reports no state (0 floats): define state_size() -> "
                                     "StateSize(floats) (the default counts the floats of init_state(1))")
        else:
            add("state_size", True, f"{size_}")
    return results


class _StepShape(Exception):
    pass


def _device(model) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


def failures(results: list[CheckResult]) -> list[CheckResult]:
    return [r for r in results if not r.ok and not r.skipped]


def require_model_ok(name: str, vocab_size: int, size: str | None = None, options: Mapping[str, Any] | None = None,
                     needs_generation: bool = False, max_len: int | None = None) -> list[CheckResult]:
    """:func:`check_model`, raising one SeqgapError line naming every failed check."""
    results = check_model(name, vocab_size, size, options, needs_generation, max_len=max_len)
    bad = failures(results)
    if bad:
        what = "; ".join(f"{r.name}: {r.message}" for r in bad)
        raise SeqgapError(f"model {name} fails check-model: {what}")
    return results


__all__ = ["CHECKS", "CheckResult", "check_model", "failures", "require_model_ok"]
