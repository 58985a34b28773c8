#!/usr/bin/env bash
# Create .venv and install cratedigger with everything it needs, offline-capable at run time.
# Idempotent: skips the install when pyproject.toml and this script have not changed.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
if ! "$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)'; then
  echo "cratedigger needs Python 3.11 (torch 2.13.0 CPU and tensorflow-cpu 2.21 wheels);" \
       "set PYTHON=/path/to/python3.11" >&2
  exit 2
fi
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv

# tests/test_data_docs.py opens the Data Docs in Debian's headless Chromium (it skips without it).
if [ ! -x /usr/bin/chromium ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing chromium (Debian package) for the Data Docs browser test..."
  log="${TMPDIR:-/tmp}/cratedigger-apt-chromium.log"
  if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } \
      >"$log" 2>&1; then
    echo "warning: chromium did not install (see $log): the browser test will skip" >&2
  fi
fi

stamp=".venv/.cratedigger-installed"
want="$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi

echo "setting up .venv (first time takes a few minutes)..."
.venv/bin/python -m pip install --quiet --upgrade pip
# torch first, pinned: 2.13.0 is a CPU wheel on this machine; an unpinned torch pulls CUDA (GBs).
.venv/bin/python -m pip install --quiet "torch==2.13.0"
.venv/bin/python -m pip install --quiet -e ".[tests,production,spark]"
# musicnn 0.1.0 ships its pretrained weights in the wheel; its numpy pin is stale, so no deps.
.venv/bin/python -m pip install --quiet --no-deps "musicnn==0.1.0"
echo "$want" > "$stamp"
echo "setup done: .venv"
