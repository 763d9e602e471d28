# kdinterp: the runtime image for the DVC pipeline (Han et al., ICML 2023 reproduction), GPU or CPU.
#
# Build (from the repository root):
#   docker build -t kdinterp .
# Run the study on a mounted checkout, as yourself (files in the checkout stay yours, and DVC can
# take its lock in .dvc/tmp; HOME is a scratch folder inside the container, not the checkout):
#   docker run --rm --gpus all --user "$(id -u):$(id -g)" -v "$PWD":/work/kdinterp kdinterp
# The default command (`make container`) pulls the published study when the DVC remote's URL is set
# (.dvc/config.local, mounted with the checkout; credentials as AWS_* variables with `-e`), generates
# the concept world when data/ is missing, then runs `dvc repro` and prints the results table.
# Any other command runs instead, e.g. `... kdinterp dvc metrics show`.
#
# Base: Debian 12 (bookworm), whose python3 is 3.11, the Python requirements.lock was resolved with.
# No CUDA base image: the torch wheels in the lock (cu130 builds) carry the CUDA and cuDNN runtime
# libraries as nvidia-* packages, and the NVIDIA container toolkit injects the driver at `--gpus`.
# Pin the base by digest (debian:bookworm-slim@sha256:...) once a machine can pull it.
#
# Behind a TLS-intercepting proxy, give pip the proxy's CA bundle as a build secret (off by default):
#   docker build --secret id=pip_ca,src=/path/to/ca-bundle.crt -t kdinterp .
# `make container-check` builds and tries this image with podman (scripts/container-check).
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}

ARG BASE_IMAGE
LABEL org.opencontainers.image.title="kdinterp" \
      org.opencontainers.image.description="Reproduction of Han et al., 'On the Impact of Knowledge Distillation for Model Interpretability' (ICML 2023) as a DVC pipeline" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.base.name="${BASE_IMAGE}"

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# Versions of Debian packages are not pinned (DL3008): they are whatever bookworm serves; the
# Python environment itself is pinned by requirements.lock. make runs the default command; git is
# there for the Makefile and for users (DVC itself reads the repository with pygit2).
# /etc/gitconfig marks the mount point safe, so DVC's libgit2 (pygit2) opens a mounted checkout
# owned by another UID instead of failing with "repository path ... is not owned by current user".
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates make git \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 1000 kdinterp \
    && useradd --no-log-init --uid 1000 --gid 1000 --create-home --shell /bin/bash kdinterp \
    && install -d -o 1000 -g 1000 /work/kdinterp \
    && printf '[safe]\n\tdirectory = /work/kdinterp\n' > /etc/gitconfig

# Telemetry off (DVC, iterative-telemetry, Great Expectations). Stage commands call `kdinterp`
# from the venv. PYTHONPATH puts the (mounted) checkout's src/ first, so DVC runs the code of the
# checkout whose files it hashes, not the snapshot installed below. HOME is world-writable scratch:
# `--user` may name any UID, and the checkout is not the place for caches.
ENV DVC_NO_ANALYTICS=1 \
    ITERATIVE_DO_NOT_TRACK=1 \
    GX_ANALYTICS_ENABLED=false \
    PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/work/kdinterp/src \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HOME=/tmp \
    MPLCONFIGDIR=/tmp/matplotlib

# The exact lock the Makefile installs; copied alone so this (large) layer stays cached.
COPY requirements.lock /tmp/requirements.lock
RUN --mount=type=secret,id=pip_ca,required=false \
    if [ -s /run/secrets/pip_ca ]; then export PIP_CERT=/run/secrets/pip_ca; fi \
    && python3 -m venv /opt/venv \
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

CMD ["make", "container"]
