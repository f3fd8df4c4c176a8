#!/usr/bin/env bash
# The benchmark suite in one command:  bash benchmarks/run.sh [bench.py options, e.g. --quick --only ensemble]
#
# Sets up .venv (scripts/setup.sh), installs the optional reference packages the comparisons
# measure against, then runs benchmarks/bench.py.  torch is already in the venv (the CPU build
# pinned by setup.sh): mambapy is installed with --no-deps (it declares only torch) so pip can
# never replace it with a CUDA build (bench.py imports only mambapy.mamba, which needs nothing else);
# transformers does not require torch, so its own dependencies (hub client, tokenizers,
# safetensors, ...) install normally.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
PY=.venv/bin/python
PIP=("$PY" -m pip install -q --disable-pip-version-check)
if ! "$PY" -c "import mambapy.mamba" 2>/dev/null; then
  echo "benchmarks: installing mambapy==1.2.0 (no deps: keeps the CPU torch)" >&2
  "${PIP[@]}" --no-deps "mambapy==1.2.0"
fi
if ! "$PY" -c "import transformers" 2>/dev/null; then
  echo "benchmarks: installing transformers==5.23.0 (does not pull torch)" >&2
  "${PIP[@]}" "transformers==5.23.0"
fi
"$PY" -c "import torch; assert '+cpu' in torch.__version__ or not torch.cuda.is_available(), torch.__version__" \
  || { echo "benchmarks: torch was replaced, re-run scripts/setup.sh" >&2; exit 1; }
exec "$PY" benchmarks/bench.py "$@"
