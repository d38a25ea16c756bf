"""Client scripts bundled with amworker.

Each module here is an Archivematica client script: it exposes ``call(jobs)``
and is named in ``archivematicaClientModules``. The scripts in this package
stand in for the Unix commands (``cp``, ``mv``, ``mkdir``, ``test``, ``chmod``,
``rm -rf``, ``tree``) that Archivematica's workflow once ran through a shell.
They never start a process or a shell: every argument is data.
"""
