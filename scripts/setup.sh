#!/usr/bin/env bash
# Create .venv and install seqgap into it (idempotent; re-runs only when pyproject.toml changes).
# torch is installed first, pinned to the CPU build, so that pip never pulls a multi-GB CUDA
# build to satisfy "torch>=2.1". Override with SEQGAP_TORCH="torch==X.Y.Z" (and PIP_INDEX_URL /
# PIP_EXTRA_INDEX_URL pointing at a CPU or CUDA wheel index) on other machines.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${SEQGAP_VENV:-.venv}
TORCH_SPEC=${SEQGAP_TORCH:-torch==2.13.0}
# the browser test's Chromium (apt as root; never fails the set-up: without it that test is skipped)
bash scripts/browser_deps.sh || true
STAMP="$VENV/.seqgap-installed"
WANT="$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ]; then
  exit 0
fi
if [ ! -x "$VENV/bin/python" ]; then
  echo "seqgap setup: creating $VENV" >&2
  "$PY" -m venv "$VENV"
fi
echo "seqgap setup: installing $TORCH_SPEC and seqgap[test] into $VENV (first time only)" >&2
"$VENV/bin/python" -m pip install -q --disable-pip-version-check "$TORCH_SPEC" numpy 2>&1 | grep -v "^WARNING: Location" >&2 || true
"$VENV/bin/python" -c "import torch" || { echo "seqgap setup: torch failed to install" >&2; exit 1; }
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -e ".[test]" 2>&1 | grep -v "^WARNING: Location" >&2 || true
"$VENV/bin/python" -c "import seqgap, pytest, networkx" || { echo "seqgap setup: install failed" >&2; exit 1; }
"$VENV/bin/python" -c "import playwright" 2>/dev/null || echo "seqgap setup: playwright missing -- tests/test_browser.py will be skipped" >&2
echo "$WANT" > "$STAMP"
