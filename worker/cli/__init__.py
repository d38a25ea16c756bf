"""The ``amworker`` command: run, shim, check, submit, scripts, init-db, flower."""
