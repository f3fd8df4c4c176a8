"""Models: one file each; the registry (``registry.py``) names them."""
from seqgap.models.base import ModelSpec, SequenceModel, StateSize
from seqgap.models.registry import (BUILTIN_MODELS, MODELS, build_model, get_spec, load_plugin, make_config,
                                    register_model)

__all__ = ["BUILTIN_MODELS", "MODELS", "ModelSpec", "SequenceModel", "StateSize", "build_model", "get_spec",
           "load_plugin", "make_config", "register_model"]
