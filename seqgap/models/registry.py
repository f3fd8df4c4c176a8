"""Model registry: a CLI name -> :class:`ModelSpec` (class, config dataclass, named sizes).

The built-in models are one explicit table, :data:`BUILTIN_MODELS`, built here from
the model files (which know nothing of the registry: each defines its config
dataclass, its class, ``SIZES`` and ``HELP``).  Build a model with
``build_model("lstm", vocab_size=..., max_len=..., size="tiny", d_model=128)``: named
size first, explicit numbers override it.  Every model constructor takes
``(config, vocab_size, max_len)``; ``max_len`` is the longest sequence the model
will ever see (models with learned absolute positions allocate that many).

User models go into a separate plugin table, with::

    @register_model("mine", config=MyConfig, sizes={"tiny": dict(d_model=64), ...})
    class Mine(SequenceModel):
        def __init__(self, config: MyConfig, vocab_size: int, max_len: int): ...

from a module path or file (``load_plugin("mypkg.mymodel")`` /
``load_plugin("path/to/model.py")``) or from the ``seqgap.models`` entry-point
group (loaded on the first look-up).  A plugin cannot take a built-in name.
:data:`MODELS` is a read-only view of both tables.

Every model has a version that is part of its runs' identity (:func:`model_version`):
a built-in's ``version`` in the table below (bump it when a change to that model
changes results: only its runs are retrained), a plugin's ``register_model(...,
version="...")``, or else the sha256 of the plugin's source file (an edited plugin
is retrained).
"""
from __future__ import annotations

import dataclasses
import hashlib
import importlib
import importlib.util
import inspect
import math
import sys
import typing
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from seqgap.entry_points import load_group
from seqgap.errors import SeqgapError
from seqgap.models import dense_ssm, hybrid, lstm, mamba, transformer
from seqgap.models.base import ModelSpec


def _build_hybrid(config: hybrid.HybridConfig, vocab_size: int, max_len: int) -> hybrid.Hybrid:
    # the hybrid composes another registered model: it gets that model's spec and the builder
    return hybrid.Hybrid(config, vocab_size, max_len, rnn=get_spec(config.rnn), build=build_model)


BUILTIN_MODELS: Mapping[str, ModelSpec] = MappingProxyType({spec.name: spec for spec in (
    ModelSpec("transformer", transformer.Transformer, transformer.TransformerConfig, transformer.SIZES,
              transformer.HELP, recurrent=False),
    ModelSpec("llama", transformer.Transformer, transformer.LlamaConfig, transformer.LLAMA_SIZES,
              transformer.LLAMA_HELP, recurrent=False),
    ModelSpec("lstm", lstm.LSTMModel, lstm.LSTMConfig, lstm.SIZES, lstm.HELP, recurrent=True),
    ModelSpec("dense-ssm", dense_ssm.DenseSSM, dense_ssm.DenseSSMConfig, dense_ssm.SIZES, dense_ssm.HELP,
              recurrent=True),
    ModelSpec("mamba", mamba.Mamba, mamba.MambaConfig, mamba.SIZES, mamba.HELP, recurrent=True),
    ModelSpec("hybrid", hybrid.Hybrid, hybrid.HybridConfig, hybrid.SIZES, hybrid.HELP, recurrent=False,
              build=_build_hybrid, composes=("rnn",)),
)})
# Each built-in's version is its spec's ``version`` ("1" for all of them so far): bump one with
# ``dataclasses.replace(spec, version="2")`` above when a change to that model changes its results.

_PLUGINS: dict[str, ModelSpec] = {}  # filled by register_model (plugin files and entry points)


def register_model(name: str, config: type, sizes: dict[str, dict[str, Any]] | None = None,
                   help: str = "", recurrent: bool = True, version: str | int | None = None):
    """Class decorator: add a user model to the plugin table under ``name``.

    ``version`` (optional) is part of every run's identity: change it when the model changes.
    Without it the sha256 of the file that defines the class is used, so editing the file
    retrains its runs (a package whose model spans several files should declare a version)."""
    if name in BUILTIN_MODELS:
        raise SeqgapError(f"cannot register model {name!r}: that is a built-in model's name; choose another")

    def deco(cls):
        doc = help or (cls.__doc__ or "").strip().split("\n")[0]
        ver = str(version) if version is not None else source_version(cls)
        _PLUGINS[name] = ModelSpec(name, cls, config, dict(sizes or {}), doc, recurrent, version=ver)
        return cls

    return deco


def source_version(obj: Any) -> str:
    """``"sha256:<first 16 hex digits>"`` of the file that defines ``obj`` (a class), or of its
    source text when it has no file; ``"unversioned"`` when neither can be read."""
    try:
        path = inspect.getsourcefile(obj)
        if path and Path(path).is_file():
            return "sha256:" + hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]
        return "sha256:" + hashlib.sha256(inspect.getsource(obj).encode()).hexdigest()[:16]
    except (OSError, TypeError):
        return "unversioned"


def model_version(name: str, options: Mapping[str, Any] | None = None, size: str | None = None) -> str:
    """The version of model ``name`` that a run's identity records: its spec's ``version``,
    plus ``+field=name:version`` for each model it composes (the hybrid's ``rnn``)."""
    spec = get_spec(name)
    out = spec.version
    options = dict(options or {})
    defaults = {f.name: f.default for f in dataclasses.fields(spec.config)}
    for f in spec.composes:
        inner = options.get(f, spec.sizes.get(size or "", {}).get(f, defaults.get(f)))
        if isinstance(inner, str) and inner in MODELS and inner != name:
            out += f"+{f}={inner}:{model_version(inner)}"
    return out


class _ModelTable(Mapping):
    """Read-only view of the built-in models and the registered plugins (entry points loaded first)."""

    def _all(self) -> dict[str, ModelSpec]:
        _load_entry_points()
        return {**BUILTIN_MODELS, **_PLUGINS}

    def __getitem__(self, name: str) -> ModelSpec:
        return self._all()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())


MODELS: Mapping[str, ModelSpec] = _ModelTable()

def _load_entry_points() -> None:
    load_group("seqgap.models")


# plugins loaded in this process (files as absolute paths), in order: the local engine's worker
# processes load them too, so a study's cells can use plugin models and tasks on every core
LOADED_PLUGINS: list[str] = []


def load_plugin(target: str) -> None:
    """Import a module (dotted path) or a ``.py`` file that registers models (or tasks:
    ``seqgap.tasks.register_task``); loading it again re-imports it (an edited file)."""
    is_file = target.endswith(".py") or Path(target).exists()
    key = str(Path(target).resolve()) if is_file else target
    try:
        if is_file:
            path = Path(target)
            spec = importlib.util.spec_from_file_location(f"seqgap_plugin_{path.stem}", path)
            if spec is None or spec.loader is None:
                raise SeqgapError(f"cannot load model plugin file {target}")
            module = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = module
            spec.loader.exec_module(module)
        else:
            importlib.import_module(target)
        if key not in LOADED_PLUGINS:
            LOADED_PLUGINS.append(key)
    except SeqgapError:
        raise
    except Exception as e:
        raise SeqgapError(f"cannot load model plugin {target!r}: {type(e).__name__}: {e}") from None


def get_spec(name: str) -> ModelSpec:
    models = MODELS
    if name not in models:
        raise SeqgapError(f"unknown model {name!r}; known models: {', '.join(sorted(models))}")
    return models[name]


def make_config(name: str, size: str | None = None, **overrides: Any):
    """The config dataclass of model ``name``: named ``size`` (if any), then ``overrides``."""
    return model_config(name, size, overrides)


# Names that seqgap itself passes to a model (from the task, -L and --size): never model options.
RESERVED_OPTIONS = {"vocab_size": "set by the task's vocabulary", "max_len": "set from -L, --eval-lengths "
                    "and --max-positions", "size": "use --size", "config": "give the options themselves",
                    "name": "use --model"}
MAX_LAYERS = 1024  # n_layers above this is a typo (and would take minutes just to build)
_MAX_INT_OPTION = 2**31 - 1


def model_config(name: str, size: str | None, options: Mapping[str, Any] | None):
    """:func:`make_config` with the options as a mapping: every option checked (reserved names,
    unknown names, types by the config's field annotations, positive and finite numbers), one
    SeqgapError line naming the option for any failure."""
    from seqgap.values import parse_typed

    spec = get_spec(name)
    options = dict(options or {})
    for k in options:
        if k in RESERVED_OPTIONS:
            raise SeqgapError(f"model {name}: {k} is not a model option ({RESERVED_OPTIONS[k]})")
    values: dict[str, Any] = {}
    if size is not None:
        if not isinstance(size, str) or size not in spec.sizes:
            raise SeqgapError(f"model {name}: unknown size {size!r}; known sizes: {', '.join(spec.sizes) or 'none'}")
        values.update(spec.sizes[size])
    values.update({k: v for k, v in options.items() if v is not None})
    known = {f.name for f in dataclasses.fields(spec.config)}
    unknown = sorted(set(map(str, values)) - known)
    if unknown:
        raise SeqgapError(f"model {name}: unknown option(s) {', '.join(unknown)}; options: {', '.join(sorted(known))}")
    try:
        hints = typing.get_type_hints(spec.config)
    except Exception:  # a plugin config with unresolvable annotations: values are not typed
        hints = {}
    for k, v in list(values.items()):
        if k in hints:
            v = values[k] = parse_typed(v, hints[k], f"model {name}: option {k}")  # strings typed by the field
            _check_type(name, k, v, hints[k])
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            if not math.isfinite(v):
                raise SeqgapError(f"model {name}: {k} must be a finite number, got {v}")
            if v <= 0 and k not in _MAY_BE_ZERO:
                raise SeqgapError(f"model {name}: {k} must be positive, got {v}")
            if isinstance(v, int) and v > _MAX_INT_OPTION:
                raise SeqgapError(f"model {name}: {k} must be at most {_MAX_INT_OPTION:,}, got {v}")
    if isinstance(values.get("n_layers"), int) and values["n_layers"] > MAX_LAYERS:
        raise SeqgapError(f"model {name}: n_layers must be at most {MAX_LAYERS}, got {values['n_layers']}")
    try:
        return spec.config(**values)
    except (TypeError, ValueError) as e:
        raise SeqgapError(f"model {name}: {e}") from None


def _check_type(name: str, key: str, value: Any, annotation: Any) -> None:
    """One line when ``value`` does not have the field's declared type (int, float, bool, str or an
    optional/union of them; other annotations are not checked)."""
    from seqgap.values import _base_types

    kinds, optional = _base_types(annotation)
    if value is None:
        if optional:
            return
    checks = {int: lambda v: isinstance(v, int) and not isinstance(v, bool),
              float: lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
              bool: lambda v: isinstance(v, bool), str: lambda v: isinstance(v, str)}
    if not all(k in checks for k in kinds):
        return
    if not any(checks[k](value) for k in kinds):
        what = " or ".join({int: "an integer", float: "a number", bool: "yes/no", str: "a name"}[k] for k in kinds)
        raise SeqgapError(f"model {name}: option {key}: expected {what}, got {value!r}")


# config fields that may legitimately be zero (e.g. dropout, attention position)
_MAY_BE_ZERO = {"dropout", "attn_position", "weight_decay", "n_attn_layers", "short_conv"}


def build_model(name: str, vocab_size: int, max_len: int, size: str | None = None, config: Any = None, **overrides: Any):
    """Instantiate model ``name`` for a vocabulary and maximum sequence length."""
    spec = get_spec(name)
    if config is None:
        config = make_config(name, size, **overrides)
    elif isinstance(config, dict):
        config = make_config(name, None, **config)
    try:
        return (spec.build or spec.cls)(config, vocab_size, max_len)
    except SeqgapError:
        raise
    except (ValueError, AssertionError) as e:
        raise SeqgapError(f"model {name}: {e}") from None
