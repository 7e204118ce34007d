#!/usr/bin/env bash
# Prepare a checkout: a virtualenv in .venv with Relay and its dependencies.
#   scripts/bootstrap.sh          what `make run` needs (Python packages only)
#   scripts/bootstrap.sh --test   also what the tests need: redis-server and chromium
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
want_test=0
[ "${1:-}" = "--test" ] && want_test=1

if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "Relay needs Python 3.11 or newer; found: $("$PYTHON" --version 2>&1). Set PYTHON=/path/to/python3.11." >&2
  exit 1
fi

stamp=.venv/.installed
if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv"
  "$PYTHON" -m venv .venv
fi
extras=""
[ $want_test = 1 ] && extras="[dev]"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || { [ $want_test = 1 ] && ! grep -q dev "$stamp"; }; then
  echo "==> installing Python packages into .venv (first time takes a minute)"
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e ".${extras}"
  echo "installed ${extras:-base}" > "$stamp"
fi

if [ $want_test = 1 ]; then
  missing=()
  command -v redis-server >/dev/null || missing+=(redis-server)
  command -v chromium >/dev/null || missing+=(chromium)
  if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      echo "==> installing ${missing[*]} with apt-get"
      export DEBIAN_FRONTEND=noninteractive
      apt-get update -q >/dev/null
      apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
    else
      echo "The tests need ${missing[*]}: install them (Debian/Ubuntu: sudo apt-get install ${missing[*]}) and run again." >&2
      exit 1
    fi
  fi
fi
