# amworker's image: the shim (`amworker shim`), Celery workers
# (`celery -A worker worker`) and Flower (`celery -A worker flower`) all run it.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY worker ./worker
RUN pip install ".[mysql]" \
    && useradd --system --uid 333 --home-dir /var/lib/amworker --create-home archivematica \
    && mkdir -p /var/archivematica/sharedDirectory /usr/lib/archivematica/MCPClient/assets \
    && chown archivematica /var/archivematica/sharedDirectory

# The Archivematica user's uid (333 in Archivematica's own images), so files
# written to the shared directory keep the owner the rest of the pipeline expects.
USER archivematica
WORKDIR /var/lib/amworker
CMD ["amworker", "shim"]
