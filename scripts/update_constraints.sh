#!/usr/bin/env bash
# Install the newest versions that pyproject.toml allows into a fresh environment,
# run the test suite there, and, if it passes, rewrite constraints.txt with them.
#
#   bash scripts/update_constraints.sh           upgrade constraints.txt (review, commit)
#   bash scripts/update_constraints.sh --check   the same, but only print the drift
#                                                (what .ci/run-latest runs)
# torch stays at TORCH_SPEC (default torch==2.13.0): set TORCH_SPEC and
# TORCH_INDEX_URL to move it. EXTRAS (default dev) and PYTHON as in scripts/setup.sh;
# KEEP_VENV=1 keeps the environment (its path is printed).
set -euo pipefail
cd "$(dirname "$0")/.."
check=false
[ "${1:-}" = --check ] && check=true
work=$(mktemp -d)
VENV=$work/venv
if [ "${KEEP_VENV:-0}" = 1 ]; then
  echo "environment: $VENV"
else
  trap 'rm -rf "$work"' EXIT
fi

CONSTRAINTS=none VENV="$VENV" bash scripts/setup.sh
"$VENV/bin/python" -m pytest -q

{
  echo "# The versions the test suite last passed on; scripts/setup.sh installs them."
  echo "# Written by scripts/update_constraints.sh (pip freeze of a fresh environment,"
  echo "# Python $("$VENV/bin/python" -c 'import platform; print(platform.python_version())'),"\
       "$(uname -s -m)); torch without its build suffix (+cpu, +cu124)."
  "$VENV/bin/python" -m pip freeze --exclude-editable | sed -E 's/^(torch==[^+]*)\+.*$/\1/'
} >"$work/constraints.txt"
echo "newest versions against constraints.txt:"
diff -u constraints.txt "$work/constraints.txt" | grep -E '^[-+][^-+#]' || echo "  no drift"
if [ "$check" = false ]; then
  cp "$work/constraints.txt" constraints.txt
  echo "constraints.txt rewritten; review and commit it"
fi
