# PiDog sim-to-real training image. CPU by default; `--build-arg TORCH_VARIANT=cu126` for CUDA torch.
# Dependencies are installed by install.sh, the same script .ci/run and the README use.
FROM python:3.11-slim-bookworm

ARG TORCH_VARIANT=cpu
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MUJOCO_GL=egl \
    VENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# Offscreen rendering (EGL and OSMesa through Mesa's llvmpipe) and X11/GLFW for live windows.
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        libegl1=1.6.0-1 \
        libgl1=1.6.0-1 \
        libgles2=1.6.0-1 \
        libglvnd0=1.6.0-1 \
        libegl-mesa0=22.3.6-1+deb12u2 \
        libgl1-mesa-dri=22.3.6-1+deb12u2 \
        libglx-mesa0=22.3.6-1+deb12u2 \
        libosmesa6=22.3.6-1+deb12u2 \
        libglfw3=3.3.8-1 \
        libx11-6=2:1.8.4-2+deb12u2 \
        libxext6=2:1.3.4-1+b1 \
        libxrender1=1:0.9.10-1.1 \
        libxrandr2=2:1.5.2-2+b1 \
        libxinerama1=2:1.1.4-3 \
        libxcursor1=1:1.2.1-1 \
        libxi6=2:1.8-1+b1 \
        libglib2.0-0=2.74.6-2+deb12u9 \
    && rm -rf /var/lib/apt/lists/*

RUN useradd --create-home --uid 1000 pidog
WORKDIR /app

# Dependencies first: editing the code does not reinstall them.
COPY install.sh requirements.txt requirements-dev.txt requirements-nodeps.txt ./
RUN TORCH_VARIANT=${TORCH_VARIANT} PYTHON=python3.11 ./install.sh --deps-only

COPY --chown=pidog:pidog . .
RUN PYTHON=python3.11 ./install.sh --project-only \
    && mkdir -p /app/outputs \
    && chown -R pidog:pidog /app/outputs
USER 1000:1000

VOLUME ["/app/outputs"]
CMD ["python", "train_pretrain_finetune.py", "--help"]
