"""Django models mapped onto Archivematica's tables.

``managed = False``: against a real Archivematica database amworker only
updates rows of ``Tasks`` and never creates or alters the table. For its own
embedded database :func:`worker.database.ensure_schema` creates the table from
this model when it is missing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeAlias

from django.db import models

if TYPE_CHECKING:
    from datetime import datetime

    # Each field's (set, get) types: django-stubs infers them only through its
    # mypy plugin, which amworker does not run (see pyproject's [tool.mypy]).
    Key: TypeAlias = models.CharField[str, str]
    Chars: TypeAlias = models.CharField[str | None, str | None]
    Text: TypeAlias = models.TextField[str | None, str | None]
    Time: TypeAlias = models.DateTimeField[datetime | None, datetime | None]
    BigInt: TypeAlias = models.BigIntegerField[int | None, int | None]


class Task(models.Model):
    """One row per task, inserted by the controller before it submits a batch.

    Column names are Archivematica's, byte for byte (see the CCP contract).
    ``jobuuid`` is a foreign key to ``Jobs`` in Archivematica; amworker never
    writes it, so it is mapped as a plain column.
    """

    taskuuid: Key = models.CharField(max_length=36, primary_key=True, db_column="taskUUID")
    jobuuid: Chars = models.CharField(max_length=36, null=True, blank=True, db_column="jobuuid")
    createdtime: Time = models.DateTimeField(null=True, db_column="createdTime")
    fileuuid: Chars = models.CharField(max_length=36, null=True, blank=True, db_column="fileUUID")
    filename: Text = models.TextField(null=True, blank=True, db_column="fileName")
    execution: Chars = models.CharField(max_length=250, null=True, blank=True, db_column="exec")
    arguments: Text = models.TextField(null=True, blank=True, db_column="arguments")
    starttime: Time = models.DateTimeField(null=True, db_column="startTime")
    endtime: Time = models.DateTimeField(null=True, db_column="endTime")
    client: Chars = models.CharField(max_length=128, null=True, blank=True, db_column="client")
    stdout: Text = models.TextField(null=True, blank=True, db_column="stdOut")
    stderror: Text = models.TextField(null=True, blank=True, db_column="stdError")
    exitcode: BigInt = models.BigIntegerField(null=True, db_column="exitCode")

    class Meta:
        db_table = "Tasks"
        managed = False

    def __str__(self) -> str:
        return f"Task {self.taskuuid} ({self.execution}) exit={self.exitcode}"
