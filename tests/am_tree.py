"""A small Archivematica-like install, in either layout, for tests that cannot have the real one.

It has what amworker derives things from, and the traits that broke the
documented setup: a script importing a sibling by bare name (as
Archivematica's import ``change_names``), settings that import a module of
archivematicaCommon, run ``dictConfig`` on import and read an empty database
password as "unset" (falling back to ``demo``), and a dashboard package.
"""

from __future__ import annotations

from pathlib import Path

SETTINGS_COMMON = '''"""Stand-in for Archivematica's settings.common."""
import logging.config
import os

import common_helper  # from archivematicaCommon, as settings.common imports email_settings

# Archivematica's reading: an empty variable counts as unset.
_password = os.environ.get("ARCHIVEMATICA_MCPCLIENT_CLIENT_PASSWORD") or "demo"
DATABASES = {"default": {"ENGINE": "django.db.backends.mysql", "NAME": "MCP",
                         "USER": "archivematica", "PASSWORD": _password,
                         "HOST": "localhost", "PORT": "3306"}}
SECRET_KEY = "stand-in"
USE_TZ = True
TIME_ZONE = "UTC"
INSTALLED_APPS = ("django.contrib.contenttypes", "django.contrib.auth", "main")
SHARED_DIRECTORY = common_helper.SHARED
LOGGING_CONFIG = None
logging.config.dictConfig({
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"detailed": {"format": "STAND-IN %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "detailed"}},
    "loggers": {"archivematica": {"level": "DEBUG"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
})
'''

SCRIPT = '''"""Imports its sibling by bare name, as Archivematica's scripts do."""
import sibling_helper


def concurrent_instances():
    return 3


def call(jobs):
    for job in jobs:
        with job.JobContext():
            job.pyprint(sibling_helper.GREETING, f"jobs_in_slice={len(jobs)}", *job.args[1:])
'''

#: Needs Django set up to import, as Archivematica's scripts that import models.
USES_MODELS = '''"""Imports Django models at import time."""
from django.contrib.auth.models import Group


def call(jobs):
    for job in jobs:
        with job.JobContext():
            job.pyprint(Group.__name__)
'''

#: Sets Django up itself when imported, as Archivematica's scripts do (django.setup()
#: at the top). Django's auth models, defined during that setup, load the database
#: backend: the process importing it must have its settings and driver ready.
SETS_UP_DJANGO = '''"""Sets Django up itself at import time."""
import django

django.setup()

from django.contrib.auth.models import Group  # noqa: E402


def call(jobs):
    for job in jobs:
        with job.JobContext():
            job.pyprint(Group.__name__, "after its own django.setup()")
'''

BROKEN = '''"""A dependency is missing."""
import amworker_no_such_dependency  # noqa: F401


def call(jobs):
    pass
'''


def build(root: Path, layout: str) -> tuple[Path, Path]:
    """Build the tree under ``root``; return (the home to name, the MCPClient directory)."""
    if layout == "package":
        base = root / "usr/lib/archivematica"
        mcpclient, common = base / "MCPClient", base / "archivematicaCommon"
        dashboard = root / "usr/share/archivematica/dashboard"
        home = base
    elif layout == "source":
        src = root / "checkout/src"
        mcpclient, common = src / "MCPClient/lib", src / "archivematicaCommon/lib"
        dashboard = src / "dashboard/src"
        home = root / "checkout"
    else:
        raise ValueError(layout)
    for directory in (mcpclient / "clientScripts", mcpclient / "assets", mcpclient / "settings",
                      common, dashboard / "main"):
        directory.mkdir(parents=True, exist_ok=True)
    (mcpclient / "clientScripts/__init__.py").write_text("")
    (mcpclient / "clientScripts/sibling_helper.py").write_text('GREETING = "hello from a sibling"\n')
    (mcpclient / "clientScripts/greet.py").write_text(SCRIPT)
    (mcpclient / "clientScripts/uses_models.py").write_text(USES_MODELS)
    (mcpclient / "clientScripts/sets_up_django.py").write_text(SETS_UP_DJANGO)
    (mcpclient / "clientScripts/broken.py").write_text(BROKEN)
    (mcpclient / "archivematicaClientModules").write_text(
        # The script that sets Django up itself comes first: the probe imports in this
        # order, and after a script that only imports models Django would be ready.
        "[supportedBatchCommands]\nsetsup_v0.0 = sets_up_django\ngreet_v0.0 = greet\n"
        "models_v0.0 = uses_models\nbroken_v0.0 = broken\n")
    (mcpclient / "settings/__init__.py").write_text("")
    (mcpclient / "settings/common.py").write_text(SETTINGS_COMMON)
    (common / "common_helper.py").write_text('SHARED = "/var/archivematica/sharedDirectory/"\n')
    (dashboard / "main/__init__.py").write_text("")
    return home, mcpclient
