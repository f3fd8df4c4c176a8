"""Model registry: a CLI name -> (config dataclass, builder, named sizes).

Register a model with::

    @register_model("lstm", config=LSTMConfig, sizes={"tiny": dict(d_model=64), ...})
    class LSTMModel(SequenceModel):
        def __init__(self, config: LSTMConfig, vocab_size: int, max_len: int): ...

and build it with ``build_model("lstm", vocab_size=..., max_len=..., size="tiny", d_model=128)``:
named size first, explicit numbers override it.  Every model constructor takes
``(config, vocab_size, max_len)``; ``max_len`` is the longest sequence the model
will ever see (models with learned absolute positions allocate that many).

User models plug in the same way, from a module path or file
(``load_plugin("mypkg.mymodel")`` / ``load_plugin("path/to/model.py")``) or from
the ``seqgap.models`` entry-point group.
"""
from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from seqgap.errors import SeqgapError


@dataclass
class ModelSpec:
    name: str
    cls: Callable[..., Any]
    config: type
    sizes: dict[str, dict[str, Any]] = field(default_factory=dict)
    help: str = ""
    recurrent: bool = True  # fixed-size state (an "RNN" in W's sense)


MODELS: dict[str, ModelSpec] = {}


def register_model(name: str, config: type, sizes: dict[str, dict[str, Any]] | None = None,
                   help: str = "", recurrent: bool = True):
    def deco(cls):
        MODELS[name] = ModelSpec(name, cls, config, dict(sizes or {}), help or (cls.__doc__ or "").strip().split("\n")[0], recurrent)
        return cls

    return deco


def _populate() -> None:
    import seqgap.models  # noqa: F401  (imports every built-in model file)

    _load_entry_points()


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
    _populate()
    if name not in MODELS:
        raise SeqgapError(f"unknown model {name!r}; known models: {', '.join(sorted(MODELS))}")
    return MODELS[name]


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
        model = spec.cls(config, vocab_size, max_len)
    except SeqgapError:
        raise
    except (ValueError, AssertionError) as e:
        raise SeqgapError(f"model {name}: {e}") from None
    model.model_name = name
    return model


def config_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)
