"""amworker: Archivematica's client-script worker as a Celery-backed executor.

The Celery app lives in :mod:`worker.celery` (``celery -A worker …`` finds it
there); importing this package does nothing else, so client scripts can
import :mod:`worker.client.job` cheaply.
"""
