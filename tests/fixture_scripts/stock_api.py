"""Uses the job API the way Archivematica's scripts do (issue 9's Found items).

The first argument picks what a job does:

* ``streams``: logs through its script logger inside ``JobContext(logger=…)``
  and pyprints to ``sys.stdout`` and ``sys.stderr``;
* ``raise``: raises inside ``JobContext``;
* ``env``: prints, as JSON, what the stock worker sets up before scripts run
  and which modules the 1.x import names gave it.
"""

from __future__ import annotations

import json
import os
import sys

import custom_handlers
from client.job import Job
from custom_handlers import get_script_logger

logger = get_script_logger("archivematica.mcp.client.stockApi")


def call(jobs: list[Job]) -> None:
    for job in jobs:
        with job.JobContext(logger=logger):
            mode = job.args[1]
            if mode == "streams":
                logger.info("Stored modification dates of %d files.", 2)
                job.pyprint("pyprinted to stdout", file=sys.stdout)
                job.pyprint("pyprinted to stderr", file=sys.stderr)
            elif mode == "raise":
                raise ValueError("the script's own message")
            elif mode == "env":
                from django.apps import apps

                job.pyprint(json.dumps({
                    "XML_CATALOG_FILES": os.environ.get("XML_CATALOG_FILES"),
                    "PROMETHEUS_MULTIPROC_DIR": os.environ.get("PROMETHEUS_MULTIPROC_DIR"),
                    "multiproc_dir_exists": os.path.isdir(
                        os.environ.get("PROMETHEUS_MULTIPROC_DIR", "/nonexistent")),
                    "django_ready": apps.ready,
                    "job_class": f"{Job.__module__}.{Job.__qualname__}",
                    "job_is_runtime_class": type(job) is Job,
                    "custom_handlers": custom_handlers.__name__,
                }))
            job.set_status(0)
