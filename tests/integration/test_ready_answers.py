"""A JSON batch is answered from its slices' answer-ready results, byte for byte as before.

For a JSON request the shim asks the workers (a message header) to store
each slice's results as its part of the answer, and joins the parts; for a
pickled one it does not ask, and encodes result by result. Either way the
answer must be exactly what encoding the stored results one by one gives.
This runs real slices through gearmand, the shim and a Celery worker, then
reads what the workers stored (kept after the answer for re-deliveries).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from harness.services import Stack, free_port, stack
from tests.integration.controller import ENCODINGS, batch, submit_raw
from tests.integration.ops import scrape, value, write_modules
from worker.codec.records import Encoding
from worker.codec.wire import decode_result, encode_result
from worker.contract import keys
from worker.contract.slices import READY_MARK, decode_outcome

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, int]]:
    tmp = tmp_path_factory.mktemp("ready")
    modules = write_modules(tmp / "modules.ini", {"sliced_v0.0": "sliced", "badtext_v0.0": "bad_text",
                                                   "echo_v0.0": "echo_args"})
    metrics_port = free_port()
    with stack(tmp, modules_file=modules) as running:
        running.celery_worker("ready-it", concurrency=2)
        running.shim(functions=3, extra={"AMWORKER_METRICS_PORT": str(metrics_port)})
        yield running, metrics_port


def stored_values(deployed: Stack, function: str, unique: str) -> list[bytes]:
    """The first stored value of each slice of the batch, in slice order."""
    prefix = keys.outcome_key(f"{function}:{unique}:")
    names = sorted(k for k in deployed.redis.scan_iter(match=prefix + "*", count=1000)
                   if not k.endswith(b":more"))
    values = [deployed.redis.get(name) for name in names]
    assert all(isinstance(v, bytes) for v in values)
    return [v for v in values if isinstance(v, bytes)]


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize(("function", "slices", "arguments"), [
    ("sliced_v0.0", 4, ["x"] * 10),
    ("badtext_v0.0", 1, ["y"] * 3),  # invalid UTF-8 and lone surrogates in the output
    ("echo_v0.0", 1, ["'tâche' \"quoted \\\" arg\" ✓ \U0001f600", ""]),
])
def test_the_answer_is_the_stored_results_encoded_byte_for_byte(
        deployed: tuple[Stack, int], encoding: Encoding, function: str, slices: int,
        arguments: list[str]) -> None:
    running, metrics_port = deployed
    built = batch(function, encoding, arguments)
    # One task that wants no output: its part carries none.
    built.add("quiet", wants_output=False)
    before = value(scrape(metrics_port), "amworker_answers_joined_total", function=function)
    outcome = submit_raw(running, function, built.payload(), unique=built.unique)
    assert outcome.complete, outcome
    joined = value(scrape(metrics_port), "amworker_answers_joined_total", function=function) - before
    # Joined from the parts for a JSON request, encoded result by result for a pickled one.
    assert joined == (1 if encoding is Encoding.JSON else 0)
    stored = stored_values(running, function, built.unique)
    assert len(stored) == slices
    # Asked for (and stored) answer-ready only for a JSON request.
    assert [v.startswith(READY_MARK) for v in stored] == [encoding is Encoding.JSON] * slices
    found = {r.uuid: r for value in stored for r in decode_outcome(value)[0]}
    assert list(found) == list(built.tasks)
    expected = encode_result([found[uuid] for uuid in built.tasks], encoding)
    if encoding is Encoding.JSON:
        assert outcome.data == expected
    else:
        # Pickle's memo follows the objects' identities; what it unpickles to may not differ.
        assert decode_result(outcome.data) == decode_result(expected)
