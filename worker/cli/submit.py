"""``amworker submit``: act as the controller for a smoke test."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from worker.cli.gearman_client import GearmanClient
from worker.codec.records import Encoding
from worker.codec.wire import EXIT_CODE_KEY, decode_result, encode_request
from worker.errors import DecodeError


@dataclass(frozen=True)
class SmokeTask:
    """One task's answer as ``amworker submit`` prints it."""

    uuid: str
    exit_code: int
    stdout: str
    stderr: str


def build_tasks(arguments: str, count: int, wants_output: bool) -> dict[str, dict[str, object]]:
    """``count`` tasks sharing one arguments string, like a controller batch."""
    created = datetime.now(UTC).isoformat()
    tasks: dict[str, dict[str, object]] = {}
    for _ in range(count):
        task_id = str(uuid.uuid4())
        tasks[task_id] = {
            "uuid": task_id,
            "createdDate": created,
            "arguments": arguments,
            "wants_output": wants_output,
        }
    return tasks


def exit_code_of(task_id: str, answer: Mapping[str, object]) -> int:
    """A task's exit code: an integer on the wire in either encoding, else DecodeError."""
    code = answer.get(EXIT_CODE_KEY)
    if not isinstance(code, int):
        raise DecodeError(f"task {task_id}: {EXIT_CODE_KEY} is {code!r}, not an integer")
    return code


def submit(
    server: str,
    function: str,
    arguments: str,
    *,
    count: int = 1,
    encoding: Encoding = Encoding.JSON,
    wants_output: bool = True,
    timeout: float = 300.0,
) -> list[SmokeTask] | None:
    """Submit one batch; return each task's answer, or None on WORK_FAIL."""
    tasks = build_tasks(arguments, count, wants_output)
    with GearmanClient(server) as client:
        outcome = client.submit(function, encode_request(tasks, encoding),
                                unique=str(uuid.uuid4()), timeout=timeout)
    if not outcome.complete:
        return None
    answers = decode_result(outcome.data)
    return [
        SmokeTask(
            uuid=task_id,
            exit_code=exit_code_of(task_id, answers[task_id]),
            stdout=str(answers[task_id].get("stdout", "")),
            stderr=str(answers[task_id].get("stderror", "")),
        )
        for task_id in tasks
    ]


def render(results: Sequence[SmokeTask]) -> str:
    """Human-readable report of a smoke test."""
    lines = []
    for result in results:
        lines.append(f"task {result.uuid}: exit code {result.exit_code}")
        for name, text in (("stdout", result.stdout), ("stderr", result.stderr)):
            if text:
                lines.append(f"  {name}:")
                lines.extend(f"    {line}" for line in text.rstrip("\n").splitlines())
    return "\n".join(lines)
