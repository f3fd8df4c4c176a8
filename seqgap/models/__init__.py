"""Models: one file each, registered by name (see ``registry.py``)."""
from seqgap.models.base import SequenceModel, StateSize
from seqgap.models.registry import MODELS, build_model, get_spec, load_plugin, make_config, register_model

# Importing the model files registers them.
from seqgap.models import transformer, lstm, dense_ssm, mamba, hybrid  # noqa: F401,E402

__all__ = ["MODELS", "SequenceModel", "StateSize", "build_model", "get_spec", "load_plugin", "make_config", "register_model"]
