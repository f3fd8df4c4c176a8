"""seqgap: measure where recurrent models and Transformers part ways."""
import os as _os

# OpenMP threads that spin while waiting collapse training throughput when the few cores of a
# laptop are shared (measured: 2-thread Mamba training fell from ~5k to ~100-300 tokens/s under
# load). Passive waiting costs little on an idle machine. Must be set before torch loads.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
