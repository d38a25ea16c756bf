# amworker's image: the shim (`amworker shim`), Celery workers
# (`celery -A worker worker`) and Flower (`celery -A worker flower`) all run it.
# Built by compose.yaml (BuildKit, which Compose v2 uses).
#
# Behind an intercepting proxy or with a private mirror (docs/operations.md,
# "Building behind a proxy or a mirror"):
#   build secret `build-ca`    a complete CA bundle for pip (pip --cert); an
#                              empty file means pip's own trust store
#   build arg PIP_INDEX_URL    the package index; empty means PyPI. Build
#                              args are kept in the image's history: no
#                              credentials in it.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

ARG PIP_INDEX_URL=""

# The dependencies first, from pyproject.toml alone, so that a change to
# amworker's code rebuilds only the small layer below.
WORKDIR /src
COPY pyproject.toml README.md constraints.txt ./
RUN --mount=type=secret,id=build-ca \
    set -eu; \
    if [ -s /run/secrets/build-ca ]; then export PIP_CERT=/run/secrets/build-ca; fi; \
    if [ -n "$PIP_INDEX_URL" ]; then export PIP_INDEX_URL; else unset PIP_INDEX_URL; fi; \
    mkdir worker && touch worker/__init__.py; \
    pip install --constraint constraints.txt ".[mysql]"; \
    pip uninstall --yes amworker; \
    rm -rf worker build *.egg-info

COPY worker ./worker
RUN --mount=type=secret,id=build-ca \
    set -eu; \
    if [ -s /run/secrets/build-ca ]; then export PIP_CERT=/run/secrets/build-ca; fi; \
    if [ -n "$PIP_INDEX_URL" ]; then export PIP_INDEX_URL; else unset PIP_INDEX_URL; fi; \
    pip install --no-deps . \
    && rm -rf build *.egg-info \
    && useradd --system --uid 333 --home-dir /var/lib/amworker --create-home archivematica \
    && mkdir -p /var/archivematica/sharedDirectory /usr/lib/archivematica/MCPClient/assets \
    && chown archivematica /var/archivematica/sharedDirectory

# The Archivematica user's uid (333 in Archivematica's own images), so files
# written to the shared directory keep the owner the rest of the pipeline expects.
USER archivematica
WORKDIR /var/lib/amworker
CMD ["amworker", "shim"]
