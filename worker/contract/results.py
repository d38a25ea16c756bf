"""Results made by amworker rather than by a script, the same on both sides.

The shim fails tasks it could not dispatch or whose slice was lost; a pool
process fails tasks whose script could not be imported or whose database
rows could not be read. Both give the controller the same shape of answer:
exit code 1, the reason as stderr, and the time it was decided.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from worker.codec.records import TaskResult

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    """The current time, timezone-aware (UTC)."""
    return datetime.now(UTC)


def failed_results(
    uuids: Sequence[str],
    reason: str,
    *,
    wants_output: Callable[[str], bool] = lambda _uuid: True,
    clock: Clock = utcnow,
) -> list[TaskResult]:
    """Exit code 1 and ``reason`` in stderr for tasks that could not run."""
    now = clock()
    text = reason if reason.endswith("\n") else reason + "\n"
    return [
        TaskResult(uuid=u, exit_code=1, finished_at=now, stderr=text, wants_output=wants_output(u))
        for u in uuids
    ]
