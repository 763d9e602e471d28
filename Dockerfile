# kdinterp: GPU runtime image for the DVC pipeline (Han et al., ICML 2023 reproduction).
#
# Build (from the repository root):
#   docker build -t kdinterp .
# Run the study on a mounted checkout (the image is the environment; the checkout holds the
# pipeline, data/ and outputs/, and DVC uses the checkout's .git):
#   docker run --rm --gpus all --user "$(id -u):$(id -g)" -v "$PWD":/work/kdinterp kdinterp
# On a fresh clone, put the dataset in place first (what `make data` does on the host):
#   docker run --rm --user "$(id -u):$(id -g)" -v "$PWD":/work/kdinterp kdinterp \
#     kdinterp world generate --params params.yaml --out data/concept_world
# Then e.g. `... kdinterp dvc metrics show`. `--user` keeps files written into the checkout
# owned by you; without it the container runs as the image's user, UID 1000.
#
# Base image: CUDA 13.0 because torch 2.14.1's default Linux wheel (pinned in requirements.lock)
# is the cu130 build. Those wheels also bring the CUDA/cuDNN libraries as nvidia-* pip packages
# (in the lock), so the host needs only the NVIDIA driver + container toolkit;
# `--build-arg CUDA_IMAGE=nvidia/cuda:13.0.1-base-ubuntu24.04` gives a smaller image that works
# the same. Pin the base by digest (nvidia/cuda:...@sha256:...) once a machine can pull it.
#
# Python: Ubuntu 24.04's python3 is 3.12, while requirements.lock was frozen on CPython 3.11.
# Checked against PyPI: every pin has a cp312 (or py3) manylinux x86_64 wheel, except
# antlr4-python3-runtime==4.9.3, which is sdist-only for every Python (pure Python; built the
# same way on 3.11), and no pin's dependencies or Requires-Python differ between 3.11 and 3.12.
# So the same lock installs unchanged here.
ARG CUDA_IMAGE=nvidia/cuda:13.0.1-cudnn-runtime-ubuntu24.04
FROM ${CUDA_IMAGE}

ARG CUDA_IMAGE
LABEL org.opencontainers.image.title="kdinterp" \
      org.opencontainers.image.description="Reproduction of Han et al., 'On the Impact of Knowledge Distillation for Model Interpretability' (ICML 2023) as a DVC pipeline" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.base.name="${CUDA_IMAGE}"

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# Versions of Ubuntu packages are not pinned (DL3008): they are whatever the base image's
# noble archive serves; pinning needs a lookup against that archive, which we cannot do offline,
# and the Python environment itself is pinned by requirements.lock.
# The ubuntu:24.04 base ships a user 'ubuntu' with UID 1000; it is replaced by 'kdinterp'.
# /etc/gitconfig marks the mount point safe, so DVC's libgit2 (pygit2) opens a mounted checkout
# owned by another UID instead of failing with "repository path ... is not owned by current user".
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/* \
    && if id -u ubuntu >/dev/null 2>&1; then userdel --remove ubuntu || true; fi \
    && groupadd --gid 1000 kdinterp \
    && useradd --no-log-init --uid 1000 --gid 1000 --create-home --shell /bin/bash kdinterp \
    && install -d -o 1000 -g 1000 /work/kdinterp \
    && printf '[safe]\n\tdirectory = /work/kdinterp\n' > /etc/gitconfig

# Telemetry off (DVC, iterative-telemetry, Great Expectations). Stage commands call `kdinterp`
# from the venv. PYTHONPATH puts the (mounted) checkout's src/ first, so DVC runs the code of the
# checkout whose files it hashes, not the snapshot installed below.
ENV DVC_NO_ANALYTICS=1 \
    ITERATIVE_DO_NOT_TRACK=1 \
    GX_ANALYTICS_ENABLED=false \
    PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/work/kdinterp/src \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MPLCONFIGDIR=/tmp/matplotlib

# The exact lock the Makefile installs; copied alone so this (large) layer stays cached.
COPY requirements.lock /tmp/requirements.lock
RUN python3 -m venv /opt/venv \
    && pip install --no-cache-dir -r /tmp/requirements.lock \
    && rm /tmp/requirements.lock

WORKDIR /work/kdinterp

# The package itself (console script `kdinterp`), built with the locked setuptools.
COPY pyproject.toml README.md ./
COPY src/ src/
RUN pip install --no-cache-dir --no-deps --no-build-isolation . \
    && rm -rf build src/*.egg-info

# The rest of the project (dvc.yaml, params.yaml, data.dvc, .dvc/, paper_figures/, tests/...;
# see .dockerignore) as a snapshot, e.g. for `docker run kdinterp python -m pytest`. A mounted
# checkout replaces it.
COPY --chown=1000:1000 . .

USER 1000:1000

# A batch job, not a service.
HEALTHCHECK NONE

CMD ["dvc", "repro"]
