"""Fault 8: bad payloads, live. The codecs' property tests are in
tests/unit/test_wire_properties.py; here >= 2,000 random payloads go through a
running shim, which must not crash, must answer every decodable batch with all
its task UUIDs within a bounded time, and must never execute anything from a
pickle. Argument strings are Archivematica-like (quoted UUIDs, paths with
apostrophes, spaces and non-ASCII names, placeholders), some 10-60 KB long and
some with a stray quote, which once froze the splitter (issue 8).

Also here: the pickle memo attack (a 1 MB payload that decoded to gigabytes),
answered ``payload refused`` at once by a shim that stays small."""

from __future__ import annotations

import json
import os
import pickle
import random
import shlex
import time
import uuid
from collections.abc import Mapping
from pathlib import Path

import pytest

from harness.controller import make_tasks, submit
from harness.procstat import cpu_seconds, peak_rss_kib
from harness.services import Stack
from tests.faults.helpers import assert_all_answered
from worker.cli.gearman_client import GearmanClient, Submission
from worker.codec.records import Encoding
from worker.codec.wire import decode_request, decode_result, encode_request
from worker.errors import DecodeError

pytestmark = [pytest.mark.faults, pytest.mark.timeout(600)]

MAX_PAYLOAD = 256 * 1024
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


#: File names as transfers bring them: apostrophes, spaces, quotes, non-ASCII.
FILE_NAMES = ["O'Brien.txt", "photo 1.jpg", "Ünïcødé файл.tif", 'it\'s a "test".pdf',
              "report (final).docx", "naïve café.png", "a`b`.txt", "日本語 ファイル.pdf",
              "semi;colon & amp.xml", "tab\tname.csv", "back\\slash.txt", "$HOME.txt"]


def archivematica_arguments(rng: random.Random, size: int) -> str:
    """An arguments string like the controller's, about ``size`` characters long."""
    parts: list[str] = []
    length = 0
    while length < size:
        task_id = str(uuid.UUID(int=rng.getrandbits(128)))
        name = rng.choice(FILE_NAMES)
        kind = rng.randrange(6)
        if kind == 0:
            part = f'--uuid "{task_id}"'
        elif kind == 1:
            part = f'"%sharedPath%currentlyProcessing/transfer-{task_id}/objects/{name}"'
        elif kind == 2:
            part = shlex.quote(f"/var/archivematica/sharedDirectory/{task_id}/{name}")
        elif kind == 3:
            part = '--date "%date%" --task "%taskUUID%" --created "%jobCreatedDate%"'
        elif kind == 4:
            part = f"--file /var/archivematica/sharedDirectory/{name}"  # as a bad template would
        else:
            part = f"'%clientAssetsDirectory%{name.replace(chr(39), '')}'"
        parts.append(part)
        length += len(part) + 1
    return " ".join(parts)


def stray_quote(rng: random.Random, text: str) -> str:
    """``text`` with one quote inserted somewhere: the mutation that froze the old splitter."""
    at = rng.randrange(len(text) + 1)
    return text[:at] + rng.choice("'\"") + text[at:]


def realistic_arguments(rng: random.Random) -> str:
    """Mostly short, one in five 10-60 KB, one in three with a stray quote."""
    size = rng.randrange(10_000, 60_000) if rng.random() < 0.2 else rng.randrange(40, 400)
    text = archivematica_arguments(rng, size)
    return stray_quote(rng, text) if rng.random() < 0.33 else text


def valid_document(rng: random.Random) -> dict[str, dict[str, dict[str, object]]]:
    return {"tasks": make_tasks([realistic_arguments(rng) for _ in range(rng.randrange(0, 4))],
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


def mutate_document(rng: random.Random, document: Mapping[str, object]) -> object:
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
            # The timeout bounds the time: a payload that froze a lane would
            # leave its chunk unanswered.
            outcomes += client.submit_many(
                [Submission("echo_v0.0", p, str(uuid.uuid4())) for p in chunk], timeout=240)
            assert len(outcomes) == start + len(chunk), "a chunk was not answered in time"
            assert shim.alive(), "the shim crashed"

    long_ones = sum(1 for p in sent if len(p) > 10_000 and decodable(p))
    assert long_ones >= PAYLOADS // 40, "too few long, decodable payloads to mean anything"
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
          f"{long_ones} over 10 KB, 0 crashes, marker never created")


def memo_attack(copies: int, size: int = 1_000_000) -> tuple[bytes, list[str]]:
    """The issue's payload and its task UUIDs: one task with ``size`` bytes of arguments,
    and ``copies`` more task keys bound to that same dict through the pickle's memo."""
    shared = {"uuid": "x", "createdDate": "2024-08-04 21:34:35", "arguments": "a" * size,
              "wants_output": True}
    keys = [str(uuid.uuid4()) for _ in range(copies + 1)]
    return pickle.dumps({"tasks": dict.fromkeys(keys, shared)}, protocol=0), keys


@pytest.mark.timeout(120)
def test_the_memo_attack_is_refused_at_once_and_the_shim_stays_small(faststack: Stack) -> None:
    # 1.06 MB on the wire; the old shim grew to 1.6 GB on it (issue 8, item 2).
    faststack.celery_worker("w1", concurrency=1)
    shim = faststack.shim()
    payload, keys = memo_attack(300)
    assert len(payload) < 1_100_000
    with GearmanClient(faststack.server, connect_timeout=10) as client:
        started, cpu_before = time.monotonic(), cpu_seconds(shim.pid)
        outcome = client.submit("echo_v0.0", payload, unique=str(uuid.uuid4()), timeout=60)
        seconds, cpu = time.monotonic() - started, cpu_seconds(shim.pid) - cpu_before
    assert outcome.complete, "answered WORK_FAIL although every task UUID was readable"
    answered = decode_result(outcome.data)
    assert list(answered) == keys
    for entry in answered.values():
        assert entry["exitCode"] == 1
        assert str(entry["stderr"]).startswith("amworker: payload refused: ")
        assert "AMWORKER_MAX_BATCH_ARGUMENT_BYTES" in str(entry["stderr"])
    # The acceptance bound (1 s), on the shim's own work: the old
    # shim burned seconds of CPU on this payload, and on a loaded CI host the
    # wall clock also counts the time gearmand and the shim wait for a core.
    # The wall clock still catches a refusal that waits idle (a poll, a lease).
    assert cpu < 1.0, f"the shim spent {cpu:.2f} s of CPU on it"
    assert seconds < 3.0, f"answered in {seconds:.2f} s"
    peak = peak_rss_kib(shim.pid)
    assert peak < 100 * 1024, f"shim peak RSS {peak} KiB"
    # Nothing of it reached the workers, and the shim still serves.
    after = submit(faststack.server, "echo_v0.0", make_tasks(["after", "the attack"]), timeout=60)
    assert_all_answered(after)
    assert all(after.exit_code(t) == 0 for t in after.tasks)
    print(f"memo attack (N=300, {len(payload)} bytes): answered in {seconds:.3f} s "
          f"({cpu:.2f} s of the shim's CPU), shim peak RSS {peak / 1024:.1f} MiB")
