"""The Celery pool processes: run one slice of a batch and write its rows.

runtime (per-process state and the slice's life) → executor (``call(jobs)``
with its guards) → bookkeeping (the ``Tasks`` rows); stray output, job
metrics and the advertisement of what this worker serves. Nothing here
imports :mod:`worker.batch`.
"""
