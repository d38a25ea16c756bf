"""Acting as the controller: build task dicts, submit batches over Gearman, read answers.

Shared by the fault tests and the benchmarks (which must not import ``tests``).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from worker.cli.gearman_client import GearmanClient, Submission
from worker.codec.records import Encoding
from worker.codec.wire import decode_result, encode_request


def make_tasks(arguments: Sequence[str], *, wants_output: bool = True) -> dict[str, dict[str, object]]:
    """One task per arguments string, keyed by a fresh UUID."""
    created = datetime.now(UTC).isoformat()
    tasks: dict[str, dict[str, object]] = {}
    for args in arguments:
        task_id = str(uuid.uuid4())
        tasks[task_id] = {"uuid": task_id, "createdDate": created, "arguments": args,
                          "wants_output": wants_output}
    return tasks


@dataclass
class Answer:
    """What the controller got for one batch: per-task dicts, or None on WORK_FAIL."""

    tasks: dict[str, dict[str, object]]
    results: dict[str, dict[str, object]] | None = None
    error: BaseException | None = None

    def exit_code(self, task_id: str) -> int:
        assert self.results is not None
        code = self.results[task_id]["exitCode"]
        assert isinstance(code, int), f"exitCode of {task_id} is {code!r}"
        return code

    def stderr(self, task_id: str) -> str:
        assert self.results is not None
        return str(self.results[task_id].get("stderror", ""))

    def stdout(self, task_id: str) -> str:
        assert self.results is not None
        return str(self.results[task_id].get("stdout", ""))


def submit(server: str, function: str, tasks: dict[str, dict[str, object]], *,
           unique: str | None = None, timeout: float = 90,
           encoding: Encoding = Encoding.JSON) -> Answer:
    """Submit one batch like the controller does and wait for its answer."""
    with GearmanClient(server, connect_timeout=10) as client:
        outcome = client.submit(function, encode_request(tasks, encoding),
                                unique=unique or str(uuid.uuid4()), timeout=timeout)
    answer = Answer(tasks)
    if outcome.complete:
        answer.results = decode_result(outcome.data)
    return answer


@dataclass
class Background:
    """A batch submitted from a thread, so the test can inflict faults meanwhile."""

    answer: Answer
    thread: threading.Thread
    done: threading.Event = field(default_factory=threading.Event)

    def wait(self, timeout: float) -> Answer:
        assert self.done.wait(timeout), f"no answer within {timeout}s"
        if self.answer.error is not None:
            raise self.answer.error
        return self.answer


def submit_bg(server: str, function: str, tasks: dict[str, dict[str, object]], *,
              unique: str | None = None, timeout: float = 90,
              encoding: Encoding = Encoding.JSON) -> Background:
    """:func:`submit` in a daemon thread."""
    answer = Answer(tasks)
    done = threading.Event()

    def run() -> None:
        try:
            got = submit(server, function, tasks, unique=unique, timeout=timeout, encoding=encoding)
            answer.results = got.results
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            answer.error = exc
        finally:
            done.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return Background(answer, thread, done)


def submit_many(server: str, batches: Sequence[tuple[str, dict[str, dict[str, object]], str]], *,
                timeout: float) -> list[Answer]:
    """Submit (function, tasks, unique) batches on one connection, all in flight at once."""
    with GearmanClient(server, connect_timeout=10) as client:
        outcomes = client.submit_many(
            [Submission(fn, encode_request(tasks, Encoding.JSON), unique)
             for fn, tasks, unique in batches], timeout=timeout)
    answers = []
    for (_, tasks, _), outcome in zip(batches, outcomes, strict=True):
        answers.append(Answer(tasks, decode_result(outcome.data) if outcome.complete else None))
    return answers
