"""Fault 8: bad payloads, live. The codecs' property tests are in
tests/unit/test_wire_properties.py; here >= 2,000 random payloads go through a
running shim, which must not crash, must answer every decodable batch with all
its task UUIDs, and must never execute anything from a pickle."""

from __future__ import annotations

import json
import os
import pickle
import random
import uuid
from pathlib import Path

import pytest

from tests.faults.helpers import assert_all_answered, make_tasks, submit
from tests.services import Stack
from worker.errors import DecodeError
from worker.gearman_client import GearmanClient, Submission
from worker.wire import Encoding, decode_request, decode_result, encode_request

pytestmark = [pytest.mark.faults, pytest.mark.timeout(600)]

MAX_PAYLOAD = 64 * 1024
PAYLOADS = int(os.environ.get("AMWORKER_FUZZ_PAYLOADS", "2000"))
ODD_VALUES = [None, 0, -1, 1.5, True, "", "x", "\"unbalanced", "'also", "\\", [], {}, [1, "a"],
              {"a": 1}, "%sharedPath%%taskUUID%", "2024-99-99", "\ud800", "\x00", "é" * 50]


class Evil:
    """Pickles to a call of ``function(argument)`` (what an attacker would send)."""

    def __init__(self, function: object, argument: str) -> None:
        self.function, self.argument = function, argument

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return self.function, (self.argument,)


def evil_pickles(marker: Path) -> list[bytes]:
    """Pickles that create ``marker`` if anything unpickles them with the stock loader."""
    touch = f"touch {marker}"
    code = f"open({str(marker)!r}, 'w').close()"
    raw = [
        f"cos\nsystem\n(S'{touch}'\ntR.".encode(),
        f"(dp0\nS'tasks'\np1\ncos\nsystem\n(S'{touch}'\ntRp2\ns.".encode(),
        f"cbuiltins\nexec\n(S\"{code}\"\ntR.".encode(),
        f"c__builtin__\neval\n(S\"{code}\"\ntR.".encode(),
        f"cposix\nsystem\n(S'{touch}'\ntR.".encode(),
        f"csubprocess\ncall\n((S'touch'\nS'{marker}'\nltR.".encode(),
        f"(dp0\nS'tasks'\np1\n(dp2\nS'u'\ncos\nsystem\n(S'{touch}'\ntRss.".encode(),
        f"cdatetime\ndatetime\n(cos\nsystem\n(S'{touch}'\ntRtR.".encode(),
        f"c_codecs\nencode\n(cos\nsystem\n(S'{touch}'\ntRS'latin1'\ntR.".encode(),
        b"cdatetime\n__builtins__\n.",
    ]
    import builtins
    import subprocess
    for protocol in (0, 2, 4, 5):
        raw.append(pickle.dumps(Evil(os.system, touch), protocol=protocol))
        raw.append(pickle.dumps({"tasks": {"u": Evil(builtins.exec, code)}}, protocol=protocol))
        raw.append(pickle.dumps({"tasks": Evil(subprocess.getoutput, touch)}, protocol=protocol))
    return raw


def valid_document(rng: random.Random) -> dict[str, object]:
    return {"tasks": make_tasks([f"arg{rng.randrange(100)} 'quoted arg'"
                                 for _ in range(rng.randrange(0, 4))],
                                wants_output=rng.random() < 0.5)}


def mutate_bytes(rng: random.Random, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randrange(1, 4)):
        op = rng.randrange(5)
        at = rng.randrange(len(buf) + 1)
        if op == 0 and buf:
            buf[min(at, len(buf) - 1)] = rng.randrange(256)
        elif op == 1:
            del buf[at:at + rng.randrange(1, 20)]
        elif op == 2:
            buf[at:at] = rng.randbytes(rng.randrange(1, 10))
        elif op == 3:
            buf[at:at] = buf[at:at + rng.randrange(1, 30)]
        else:
            del buf[at:]
    return bytes(buf)


def mutate_document(rng: random.Random, document: dict[str, object]) -> object:
    """Replace one node anywhere in the document with an odd value, or drop a key."""
    def walk(node: object, depth: int) -> object:
        if isinstance(node, dict) and node and rng.random() < 0.75:
            key = rng.choice(list(node))
            if rng.random() < 0.25:
                return {k: v for k, v in node.items() if k != key}
            return {**node, key: walk(node[key], depth + 1)}
        return rng.choice(ODD_VALUES)
    return walk(document, 0)


def payloads(rng: random.Random, marker: Path) -> list[bytes]:
    evil = evil_pickles(marker)
    out: list[bytes] = list(evil)
    while len(out) < PAYLOADS:
        kind = rng.randrange(6)
        doc = valid_document(rng)
        if kind == 0:
            out.append(rng.randbytes(rng.randrange(0, 300)))
        elif kind == 1:
            out.append(mutate_bytes(rng, json.dumps(doc).encode()))
        elif kind == 2:
            out.append(mutate_bytes(rng, encode_request(doc["tasks"], Encoding.PICKLE)))
        elif kind == 3:
            mutated = mutate_document(rng, doc)
            out.append(json.dumps(mutated).encode() if rng.random() < 0.5
                       else pickle.dumps(mutated, protocol=0))
        elif kind == 4:
            # A valid pickle with an evil one spliced in somewhere.
            valid = encode_request(doc["tasks"], Encoding.PICKLE)
            at = rng.randrange(len(valid))
            out.append(valid[:at] + rng.choice(evil)[:-1] + valid[at:])
        else:
            out.append(encode_request(doc["tasks"], rng.choice(list(Encoding))))
    return out


def decodable(payload: bytes) -> set[str] | None:
    try:
        return {t.uuid for t in decode_request(payload, max_bytes=MAX_PAYLOAD).tasks}
    except DecodeError:
        return None


def test_random_payloads_against_a_live_shim(faststack: Stack, tmp_path: Path) -> None:
    faststack.env["AMWORKER_MAX_PAYLOAD_BYTES"] = str(MAX_PAYLOAD)
    faststack.celery_worker("w1", concurrency=2)
    shim = faststack.shim()
    marker = tmp_path / "PWNED"
    rng = random.Random(20261129)
    sent = payloads(rng, marker)
    oversized = [encode_request(make_tasks(["x" * MAX_PAYLOAD]), Encoding.JSON)] * 3
    sent += oversized
    expected = [decodable(p) for p in sent]

    outcomes = []
    with GearmanClient(faststack.server, connect_timeout=10) as client:
        for start in range(0, len(sent), 100):
            chunk = sent[start:start + 100]
            outcomes += client.submit_many(
                [Submission("echo_v0.0", p, str(uuid.uuid4())) for p in chunk], timeout=240)
            assert shim.alive(), "the shim crashed"

    answered = refused = 0
    for payload, want, outcome in zip(sent, expected, outcomes, strict=True):
        if want is None:
            assert not outcome.complete, payload[:200]
            refused += 1
        else:
            assert outcome.complete, payload[:200]
            assert set(decode_result(outcome.data)) == want, payload[:200]
            answered += 1
    assert not marker.exists(), "something was executed from a pickle"
    assert shim.alive()
    log = shim.output()
    assert log.count(f"exceeds the limit of {MAX_PAYLOAD} bytes") >= len(oversized)
    assert "payload refused, answering WORK_FAIL" in log
    # Still serving a valid batch.
    after = submit(faststack.server, "echo_v0.0", make_tasks(["after", "fuzz"]), timeout=60)
    assert_all_answered(after)
    assert all(after.exit_code(t) == 0 for t in after.tasks)
    print(f"{len(sent)} payloads: {answered} answered (all UUIDs), {refused} refused, "
          f"0 crashes, marker never created")
