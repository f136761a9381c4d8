#!/usr/bin/env bash
# Installs the pinned dependencies and this project. Used verbatim by the README, .ci/run and the
# Dockerfile, so there is one source of truth for the environment.
#
#   ./install.sh                   # fresh virtual environment in .venv (CPU build of torch) + project
#   TORCH_VARIANT=cu126 ./install.sh   # a CUDA build of torch instead of the CPU wheel
#   VENV=/opt/venv ./install.sh --deps-only      # Docker: dependencies (a cached layer) ...
#   VENV=/opt/venv ./install.sh --project-only   # ... then the project, after the code is copied
set -euo pipefail
cd "$(dirname "$0")"

VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3.11}
TORCH_VERSION=2.13.0
TORCH_VARIANT=${TORCH_VARIANT:-cpu}
stage=${1:-all}
case "$stage" in all|--deps-only|--project-only) ;; *) echo "usage: $0 [--deps-only|--project-only]" >&2; exit 2;; esac

if [ "$stage" != --project-only ]; then
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV"
fi
pip=("$VENV/bin/python" -m pip --no-input --quiet)

if [ "$stage" != --project-only ]; then
  # 1. torch first, pinned exactly: a loose `torch` pulls a multi-GB CUDA build. A local wheel cache
  #    or index is tried first; otherwise PyTorch's own index for the chosen variant.
  if ! "${pip[@]}" install "torch==${TORCH_VERSION}+${TORCH_VARIANT}" 2>/dev/null; then
    "${pip[@]}" install "torch==${TORCH_VERSION}+${TORCH_VARIANT}" \
      --extra-index-url "https://download.pytorch.org/whl/${TORCH_VARIANT}"
  fi
  # 2. The pinned stack, then `imitation` without its stale pins (pip refuses --no-deps in a file).
  "${pip[@]}" install -r requirements.txt -r requirements-dev.txt
  "${pip[@]}" install --no-deps -r requirements-nodeps.txt
fi
if [ "$stage" != --deps-only ]; then
  # 3. This project (editable, so scripts in training/, bench/ and deploy/ import it from anywhere).
  "${pip[@]}" install --no-deps --no-build-isolation -e .
fi
echo "install.sh ${stage}: done (${VENV})"
