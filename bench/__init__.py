"""amworker's benchmark harness: ``python -m bench`` (``make bench``).

It starts everything it measures itself (a private gearmand and Redis,
Celery workers, the shim, and two baseline Gearman workers), submits the
same batches to each through :class:`worker.cli.gearman_client.GearmanClient`,
and writes ``bench/results/latest.md`` with a chart. See issue 5.
"""
