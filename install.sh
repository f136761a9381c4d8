#!/usr/bin/env bash
# Installs the pinned dependencies and this project. Used verbatim by the README, .ci/run and the
# Dockerfile, so there is one source of truth for the environment.
#
#   ./install.sh                   # fresh virtual environment in .venv (CPU build of torch) + project
#   ./install.sh --with-ray        # the same plus Ray Tune (requirements-sweep.txt), for sweeps on a cluster
#   TORCH_VARIANT=cu126 ./install.sh   # a CUDA build of torch instead of the CPU wheel
#   VENV=/opt/venv ./install.sh --deps-only      # Docker: dependencies (a cached layer) ...
#   VENV=/opt/venv ./install.sh --project-only   # ... then the project, after the code is copied
#   WITH_DEV=0 ./install.sh --deps-only          # Docker runtime image: without requirements-dev.txt
#   VENV=/opt/venv ./install.sh --dev-only       # Docker dev image: add requirements-dev.txt later
#   VENV=/opt/venv ./install.sh --ray-only       # add Ray Tune to an installed environment
set -euo pipefail
cd "$(dirname "$0")"

VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3.11}
TORCH_VERSION=2.13.0
TORCH_VARIANT=${TORCH_VARIANT:-cpu}
WITH_DEV=${WITH_DEV:-1}            # 0: leave out the test and lint tools (requirements-dev.txt)
WITH_RAY=${WITH_RAY:-0}            # 1 (or --with-ray): add Ray Tune (requirements-sweep.txt) to a full or --deps-only install
usage="usage: $0 [--with-ray] [--deps-only|--dev-only|--ray-only|--project-only]"
stage=all
with_ray_flag=0
for arg in "$@"; do
  case "$arg" in
    --with-ray) WITH_RAY=1; with_ray_flag=1;;
    --deps-only|--dev-only|--ray-only|--project-only)
      [ "$stage" = all ] || { echo "$usage" >&2; exit 2; }
      stage=$arg;;
    *) echo "$usage" >&2; exit 2;;
  esac
done
case "$WITH_DEV" in 0|1) ;; *) echo "WITH_DEV must be 0 or 1" >&2; exit 2;; esac
case "$WITH_RAY" in 0|1) ;; *) echo "WITH_RAY must be 0 or 1" >&2; exit 2;; esac
if [ "$with_ray_flag" = 1 ] && [ "$stage" != all ] && [ "$stage" != --deps-only ]; then
  echo "--with-ray goes with a full install or --deps-only (--ray-only adds Ray to an installed one)" >&2; exit 2
fi

if [ "$stage" = all ] || [ "$stage" = --deps-only ]; then
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV"
fi
pip=("$VENV/bin/python" -m pip --no-input --quiet)
requirements=(-r requirements.txt)
if [ "$WITH_DEV" = 1 ]; then requirements+=(-r requirements-dev.txt); fi
if [ "$WITH_RAY" = 1 ]; then requirements+=(-r requirements-sweep.txt); fi

if [ "$stage" = all ] || [ "$stage" = --deps-only ]; then
  # 1. torch first, pinned exactly: a loose `torch` pulls a multi-GB CUDA build. A local wheel cache
  #    or index is tried first; otherwise PyTorch's own index for the chosen variant.
  if ! "${pip[@]}" install "torch==${TORCH_VERSION}+${TORCH_VARIANT}" 2>/dev/null; then
    "${pip[@]}" install "torch==${TORCH_VERSION}+${TORCH_VARIANT}" \
      --extra-index-url "https://download.pytorch.org/whl/${TORCH_VARIANT}"
  fi
  # 2. The pinned stack, then `imitation` without its stale pins (pip refuses --no-deps in a file).
  "${pip[@]}" install "${requirements[@]}"
  "${pip[@]}" install --no-deps -r requirements-nodeps.txt
fi
if [ "$stage" = --dev-only ]; then
  # Resolved together with requirements.txt, as in a full install (already installed pins stay).
  "${pip[@]}" install -r requirements.txt -r requirements-dev.txt
fi
if [ "$stage" = --ray-only ]; then
  # As --dev-only: resolved together with requirements.txt, so the installed pins stay.
  "${pip[@]}" install -r requirements.txt -r requirements-sweep.txt
fi
if [ "$stage" = all ] || [ "$stage" = --project-only ]; then
  # 3. This project (editable, so scripts in training/, bench/ and deploy/ import it from anywhere).
  "${pip[@]}" install --no-deps --no-build-isolation -e .
fi
echo "install.sh ${stage}: done (${VENV})"
