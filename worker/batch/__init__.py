"""The shim process: a batch from gearmand to its answer.

intake (decode, check, plan) → dispatch (one Celery chord) → watcher
(pub/sub wake-ups) → settling (what became of each slice) → answers (the
WORK_COMPLETE). The Gearman side is :mod:`worker.batch.gearman_loop`;
:mod:`worker.batch.service` puts the process together. Nothing here imports
:mod:`worker.pool`: the two sides meet only through :mod:`worker.contract`.
"""
