#!/usr/bin/env bash
# Create .venv and install prefalign with its development tools, at the versions
# in constraints.txt (those the test suite last passed on).
#
# torch is installed first, on its own, so that pip never resolves a plain
# `torch` requirement to a multi-GB CUDA build on a CPU-only machine; the rest is
# then installed with torch held at the version just installed:
#   TORCH_SPEC        which torch to install (default: torch==2.13.0)
#   TORCH_INDEX_URL   where from, e.g. https://download.pytorch.org/whl/cu124 for a
#                     CUDA build, or https://download.pytorch.org/whl/cpu for CPU
#   EXTRAS            extras of prefalign to install (default: dev); `dev,judge` adds
#                     llama-cpp-python[server], built from source (several minutes) for
#                     any x86-64 CPU: CMAKE_ARGS defaults to -DGGML_NATIVE=OFF
#   CONSTRAINTS       constraints file (default: constraints.txt); `none` installs the
#                     newest versions pyproject.toml allows (scripts/update_constraints.sh)
#   VENV, PYTHON      the environment folder and the interpreter that makes it
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
EXTRAS=${EXTRAS:-dev}
CONSTRAINTS=${CONSTRAINTS:-constraints.txt}
export CMAKE_ARGS=${CMAKE_ARGS:--DGGML_NATIVE=OFF}

"$PYTHON" -m venv "$VENV"
. "$VENV/bin/activate"
python -m pip install --quiet --upgrade pip
if [ -n "${TORCH_INDEX_URL:-}" ]; then
  python -m pip install --quiet "$TORCH_SPEC" --index-url "$TORCH_INDEX_URL"
else
  python -m pip install --quiet "$TORCH_SPEC"
fi

# The constraints in force: the file's pins less its torch line, plus the torch just
# installed, so that no dependency can swap it (for a CUDA build, say).
pins=$(mktemp)
trap 'rm -f "$pins"' EXIT
if [ "$CONSTRAINTS" != none ]; then
  grep -v -i '^torch==' "$CONSTRAINTS" >"$pins"
fi
python -c "from importlib.metadata import version; print('torch==' + version('torch'))" >>"$pins"
python -m pip install --quiet -c "$pins" -e ".[${EXTRAS}]"
python -c "import torch, prefalign; print(f'prefalign {prefalign.__version__} ready (torch {torch.__version__}, cuda={torch.cuda.is_available()})')"
