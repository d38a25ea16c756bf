"""Django models mapped onto Archivematica's tables.

``managed = False``: against a real Archivematica database amworker only
updates rows of ``Tasks`` and never creates or alters the table. For its own
embedded database :func:`worker.database.ensure_schema` creates the table from
this model when it is missing.
"""

from __future__ import annotations

from django.db import models


class Task(models.Model):
    """One row per task, inserted by the controller before it submits a batch.

    Column names are Archivematica's, byte for byte (see the CCP contract).
    ``jobuuid`` is a foreign key to ``Jobs`` in Archivematica; amworker never
    writes it, so it is mapped as a plain column.
    """

    taskuuid = models.CharField(max_length=36, primary_key=True, db_column="taskUUID")
    jobuuid = models.CharField(max_length=36, null=True, blank=True, db_column="jobuuid")
    createdtime = models.DateTimeField(null=True, db_column="createdTime")
    fileuuid = models.CharField(max_length=36, null=True, blank=True, db_column="fileUUID")
    filename = models.TextField(null=True, blank=True, db_column="fileName")
    execution = models.CharField(max_length=250, null=True, blank=True, db_column="exec")
    arguments = models.TextField(null=True, blank=True, db_column="arguments")
    starttime = models.DateTimeField(null=True, db_column="startTime")
    endtime = models.DateTimeField(null=True, db_column="endTime")
    client = models.CharField(max_length=128, null=True, blank=True, db_column="client")
    stdout = models.TextField(null=True, blank=True, db_column="stdOut")
    stderror = models.TextField(null=True, blank=True, db_column="stdError")
    exitcode = models.BigIntegerField(null=True, db_column="exitCode")

    class Meta:
        db_table = "Tasks"
        managed = False

    def __str__(self) -> str:
        return f"Task {self.taskuuid} ({self.execution}) exit={self.exitcode}"
