# PiDog sim-to-real images, installed by the same install.sh as CI. Targets:
#   runtime (the default: last stage)  training, evaluation, TensorBoard; no test or lint tools
#   dev     (--target dev)             runtime's stack + requirements-dev.txt, Xvfb and the tests
# CPU torch by default; `--build-arg TORCH_VARIANT=cu126` (or another variant PyTorch publishes for
# torch 2.13.0) for CUDA torch.
FROM python:3.11-slim-bookworm AS base

ARG TORCH_VARIANT=cpu
# HOME is writable by every uid: compose runs the container as the caller (HOST_UID:HOST_GID), a
# uid that usually has no entry in /etc/passwd (matplotlib, fontconfig and pip write under HOME).
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MUJOCO_GL=egl \
    VENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    HOME=/home/pidog \
    PIDOG_BENCH_RESULTS=/app/outputs/bench

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# Offscreen rendering (EGL and OSMesa through Mesa's llvmpipe) and X11/GLFW for live windows.
# Versions are deliberately not pinned (hadolint DL3008): Debian's mirrors keep only the newest
# version of each package in a suite, so exact pins break the build at the next point or security
# release. The suite (bookworm, from the base image's tag) fixes the major versions.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        libegl1 libgl1 libgles2 libglvnd0 \
        libegl-mesa0 libgl1-mesa-dri libglx-mesa0 libosmesa6 \
        libglfw3 libx11-6 libxext6 libxrender1 libxrandr2 libxinerama1 libxcursor1 libxi6 \
        libglib2.0-0 \
    && apt-get clean && rm -rf /var/lib/apt/lists/*

# uid 1000 is the default user (plain `docker run`); its home is shared by every uid (mode 1777).
RUN useradd --create-home --uid 1000 pidog && chmod 1777 /home/pidog
WORKDIR /app

# Dependencies first: editing the code does not reinstall them. No test or lint tools and no Ray
# here; torch's C++ unit-test executables (torch/test, torch/bin/*Test*, about 120 MB) go in the same
# layer: nothing runs them.
COPY install.sh requirements.txt requirements-nodeps.txt ./
RUN TORCH_VARIANT=${TORCH_VARIANT} WITH_DEV=0 PYTHON=python3.11 ./install.sh --deps-only \
    && torch_dir=$VENV/lib/python3.11/site-packages/torch \
    && rm -rf "$torch_dir/test" "$torch_dir"/bin/test_* "$torch_dir"/bin/*StoreTest

# The project without its tests and CI files (the dev stage copies everything).
FROM base AS source
COPY . /src
RUN rm -rf /src/tests /src/.ci /src/.gitignore

# dev: the test suite and the lint tools, with Xvfb and xwd for the live-window test.
#   docker compose run --rm pidog_dev        (runs `python -m pytest`)
FROM base AS dev
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends xvfb x11-apps \
    && apt-get clean && rm -rf /var/lib/apt/lists/*
COPY requirements-dev.txt ./
RUN PYTHON=python3.11 ./install.sh --dev-only
COPY . .
# The code is read-only for the user; outputs/ (a mount point) is writable by any uid.
RUN PYTHON=python3.11 ./install.sh --project-only && install -d -m 1777 /app/outputs
ENV PYTEST_ADDOPTS="-p no:cacheprovider"
USER 1000:1000
VOLUME ["/app/outputs"]
CMD ["python", "-m", "pytest"]

# runtime (default target): training, evaluation, export and TensorBoard.
#   --build-arg WITH_RAY=1: plus Ray Tune (requirements-sweep.txt), for sweeps on a Ray cluster (the
#   compose service ray_head, profile "ray", image pidog-sim2real:ray); the default image has no Ray.
FROM base AS runtime
ARG WITH_RAY=0
COPY requirements-sweep.txt ./
RUN if [ "$WITH_RAY" = 1 ]; then PYTHON=python3.11 ./install.sh --ray-only; fi
COPY --from=source /src ./
RUN PYTHON=python3.11 ./install.sh --project-only && install -d -m 1777 /app/outputs
USER 1000:1000
VOLUME ["/app/outputs"]
CMD ["python", "train_pretrain_finetune.py", "--help"]
