"""``copyrecursive_v0.0``: ``cp -R SOURCE DEST`` (GNU coreutils 9.1).

If DEST is an existing directory, SOURCE is copied into it under its own name
(merging with a directory already there); otherwise DEST is created as the
copy. Symlinks are copied as symlinks, fifos as fifos; new directories and
files get the source's permission bits less the umask, as ``cp -R`` without
``-p`` does. A missing SOURCE is ``cp: cannot stat 'X': No such file or
directory``, exit 1; an entry that fails is reported and the copy goes on.

The options, and what is deliberately not supported, are those of
``copy_file`` (``copy_v0.0``), whose implementation this reuses.
"""

from __future__ import annotations

from collections.abc import Iterable

from worker.clientScripts._common import Report, ScriptJob, run_jobs
from worker.clientScripts.copy_file import PROG, copy_command


def call(jobs: Iterable[ScriptJob]) -> None:
    """Run ``cp -R`` with each job's arguments."""
    run_jobs(jobs, PROG, _copy_recursive)


def _copy_recursive(args: list[str], report: Report) -> None:
    copy_command(args, report, recursive=True)
