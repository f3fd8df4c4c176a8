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
"""
from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

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
              build=_build_hybrid),
)})

_PLUGINS: dict[str, ModelSpec] = {}  # filled by register_model (plugin files and entry points)


def register_model(name: str, config: type, sizes: dict[str, dict[str, Any]] | None = None,
                   help: str = "", recurrent: bool = True):
    """Class decorator: add a user model to the plugin table under ``name``."""
    if name in BUILTIN_MODELS:
        raise SeqgapError(f"cannot register model {name!r}: that is a built-in model's name; choose another")

    def deco(cls):
        doc = help or (cls.__doc__ or "").strip().split("\n")[0]
        _PLUGINS[name] = ModelSpec(name, cls, config, dict(sizes or {}), doc, recurrent)
        return cls

    return deco


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

_ENTRY_POINTS_LOADED = False


def _load_entry_points() -> None:
    global _ENTRY_POINTS_LOADED
    if _ENTRY_POINTS_LOADED:
        return
    _ENTRY_POINTS_LOADED = True
    from importlib.metadata import entry_points

    for ep in entry_points(group="seqgap.models"):
        try:
            ep.load()
        except Exception as e:  # a broken plugin must not break the tool
            print(f"seqgap: warning: could not load model plugin {ep.name!r}: {e}", file=sys.stderr)


def load_plugin(target: str) -> None:
    """Import a module (dotted path) or a ``.py`` file that registers models."""
    try:
        if target.endswith(".py") or Path(target).exists():
            path = Path(target)
            spec = importlib.util.spec_from_file_location(f"seqgap_plugin_{path.stem}", path)
            if spec is None or spec.loader is None:
                raise SeqgapError(f"cannot load model plugin file {target}")
            module = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = module
            spec.loader.exec_module(module)
        else:
            importlib.import_module(target)
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
    spec = get_spec(name)
    values: dict[str, Any] = {}
    if size is not None:
        if size not in spec.sizes:
            raise SeqgapError(f"model {name}: unknown size {size!r}; known sizes: {', '.join(spec.sizes) or 'none'}")
        values.update(spec.sizes[size])
    values.update({k: v for k, v in overrides.items() if v is not None})
    known = {f.name for f in dataclasses.fields(spec.config)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise SeqgapError(f"model {name}: unknown option(s) {', '.join(unknown)}; options: {', '.join(sorted(known))}")
    for k, v in values.items():
        if isinstance(v, (int, float)) and not isinstance(v, bool) and v <= 0 and k not in _MAY_BE_ZERO:
            raise SeqgapError(f"model {name}: {k} must be positive, got {v}")
    try:
        return spec.config(**values)
    except (TypeError, ValueError) as e:
        raise SeqgapError(f"model {name}: {e}") from None


# config fields that may legitimately be zero (e.g. dropout, attention position)
_MAY_BE_ZERO = {"dropout", "attn_position", "weight_decay", "n_attn_layers"}


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
