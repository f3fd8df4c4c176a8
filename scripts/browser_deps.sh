#!/usr/bin/env bash
# Install what tests/test_browser.py needs when it is missing: Debian's chromium (apt, as root).
# Tolerant of failure by design: without root, apt or a reachable mirror it prints why and exits 0,
# and the browser test is then skipped with that reason.  Playwright itself (the Python driver) is
# in the `test` extra of pyproject.toml; `playwright install` is never run (it downloads browsers).
# SEQGAP_NO_BROWSER=1 skips this script.
set -u
[ "${SEQGAP_NO_BROWSER:-0}" = "1" ] && exit 0
if command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ] || [ -n "${SEQGAP_CHROMIUM:-}" ]; then
  exit 0
fi
note() { echo "seqgap setup: $* -- tests/test_browser.py will be skipped" >&2; }
if ! command -v apt-get >/dev/null 2>&1; then
  note "no chromium and no apt-get to install it (install a Chromium and set SEQGAP_CHROMIUM=/path/to/it)"
  exit 0
fi
SUDO=""
if [ "$(id -u)" != "0" ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO="sudo -n"
  else
    note "no chromium, and not root (run: sudo apt-get install -y chromium)"
    exit 0
  fi
fi
echo "seqgap setup: installing Debian's chromium for the browser test (apt-get, first time only)" >&2
export DEBIAN_FRONTEND=noninteractive
if ! $SUDO apt-get install -y -q chromium >/dev/null 2>&1; then
  $SUDO apt-get update -q >/dev/null 2>&1 || true
  if ! $SUDO apt-get install -y -q chromium >/dev/null 2>&1; then
    note "apt-get install chromium failed"
    exit 0
  fi
fi
exit 0
