"""What the shim and the Celery pool agree on, and nothing else.

Key names in Redis, the records written by one side and read by the other
(the slice message, the plan, the outcome), the lifetimes derived from the
settings, and the results amworker makes when a script could not run.
:mod:`worker.batch` and :mod:`worker.pool` never import each other; both
import this.
"""
