"""Django application config for amworker's models."""

from __future__ import annotations

from django.apps import AppConfig


class AmworkerConfig(AppConfig):
    """The ``amworker`` Django app: holds the :class:`worker.models.Task` mapping.

    Its label is not ``main`` so that Archivematica's own ``main`` app (which
    maps the same ``Tasks`` table) can be loaded beside it.
    """

    name = "worker"
    label = "amworker"
    default_auto_field = "django.db.models.AutoField"
