"""Acting as the controller in integration tests: build batches, submit, decode.

Batches go through :class:`worker.cli.gearman_client.GearmanClient` (a raw
protocol client that shares no code with the shim), encoded with
:func:`worker.codec.wire.encode_request` exactly as the controller would.
"""

from __future__ import annotations

import configparser
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from harness.services import ROOT, Stack
from worker.cli.gearman_client import GearmanClient, Outcome, Submission
from worker.codec.records import Encoding
from worker.codec.wire import decode_result, encode_request

#: Both encodings seen in the field; most tests run once with each.
ENCODINGS = [Encoding.JSON, Encoding.PICKLE]

#: A fixed createdDate: JSON senders write it with "T", pickle senders with " ".
CREATED = datetime(2024, 8, 4, 21, 34, 35, 241750, tzinfo=UTC)
CREATED_WITH_SPACE = "2024-08-04 21:34:35.241750+00:00"

#: Result keys: always, and only when the task wants output.
BASE_KEYS = {"exitCode", "finishedTimestamp"}
OUTPUT_KEYS = {"stdout", "stderror", "stderr"}

MODULES_FILE = ROOT / "tests/fixture_scripts/modules.ini"


def function_count() -> int:
    """How many functions the test modules file declares (the shim registers all)."""
    parser = configparser.ConfigParser(inline_comment_prefixes=("#",))
    parser.read(MODULES_FILE)
    return len(parser["supportedBatchCommands"])


def created_for(encoding: Encoding) -> str:
    """createdDate as each generation of controller writes it."""
    return CREATED.isoformat() if encoding is Encoding.JSON else CREATED_WITH_SPACE


@dataclass
class Batch:
    """One batch as the controller builds it: ordered task UUIDs and their fields."""

    function: str
    encoding: Encoding
    tasks: dict[str, dict[str, object]] = field(default_factory=dict)
    unique: str = field(default_factory=lambda: str(uuid.uuid4()))

    def add(self, arguments: str, *, wants_output: bool | None = True,
            **extra: object) -> str:
        """Add a task; ``wants_output=None`` leaves the key out. Returns its UUID."""
        task_id = str(uuid.uuid4())
        task: dict[str, object] = {
            "uuid": task_id,
            "createdDate": created_for(self.encoding),
            "arguments": arguments,
        }
        if wants_output is not None:
            task["wants_output"] = wants_output
        task.update(extra)
        self.tasks[task_id] = task
        return task_id

    def payload(self) -> bytes:
        return encode_request(self.tasks, self.encoding)

    def submission(self) -> Submission:
        return Submission(self.function, self.payload(), self.unique)


def batch(function: str, encoding: Encoding, arguments: Sequence[str],
          *, wants_output: bool | None = True) -> Batch:
    """A batch with one task per arguments string."""
    built = Batch(function, encoding)
    for args in arguments:
        built.add(args, wants_output=wants_output)
    return built


def submit_raw(stack: Stack, function: str, payload: bytes, *, unique: str = "",
               timeout: float = 60) -> Outcome:
    """Submit raw bytes as one Gearman job and wait for its end."""
    with GearmanClient(stack.server) as client:
        return client.submit(function, payload, unique=unique or str(uuid.uuid4()),
                             timeout=timeout)


def results(outcome: Outcome) -> dict[str, dict[str, object]]:
    """The decoded ``task_results`` of a WORK_COMPLETE (fails the test otherwise)."""
    assert outcome.complete, f"expected WORK_COMPLETE, got {outcome!r}"
    return decode_result(outcome.data)


def run(stack: Stack, built: Batch, *, timeout: float = 60) -> dict[str, dict[str, object]]:
    """Submit a batch, require WORK_COMPLETE in its encoding and every task answered."""
    outcome = submit_raw(stack, built.function, built.payload(), unique=built.unique,
                         timeout=timeout)
    answered = results(outcome)
    assert_same_encoding(outcome.data, built.encoding)
    assert set(answered) == set(built.tasks), "every task UUID answered, and no other"
    return answered


def assert_same_encoding(data: bytes, encoding: Encoding) -> None:
    """The answer uses the request's encoding (pickle protocol 0 starts with '(')."""
    if encoding is Encoding.JSON:
        assert data.lstrip()[:1] == b"{", data[:40]
    else:
        assert data[:1] == b"(", data[:40]


def exit_codes(answered: Mapping[str, Mapping[str, object]]) -> dict[str, object]:
    return {task_id: entry["exitCode"] for task_id, entry in answered.items()}


def finished_at(entry: Mapping[str, object], encoding: Encoding) -> datetime:
    """finishedTimestamp as a datetime, checking its wire type for ``encoding``."""
    value = entry["finishedTimestamp"]
    if encoding is Encoding.PICKLE:
        assert isinstance(value, datetime), f"pickle answers carry a datetime, got {value!r}"
        moment = value
    else:
        assert isinstance(value, str), f"JSON answers carry an ISO string, got {value!r}"
        moment = datetime.fromisoformat(value)
    assert moment.utcoffset() is not None, f"finishedTimestamp must be aware: {value!r}"
    return moment
