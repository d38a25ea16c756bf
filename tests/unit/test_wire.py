"""Unit tests of the wire codec and the restricted unpickler."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
from datetime import UTC, date, datetime, time, timedelta, timezone
from pathlib import Path

import pytest

from worker.codec import safe_pickle
from worker.codec.records import (
    Batch,
    Encoding,
    TaskResult,
    TaskSpec,
    sanitize_text,
)
from worker.codec.wire import (
    decode_request,
    decode_result,
    detect_encoding,
    encode_request,
    encode_result,
)
from worker.errors import DecodeError

UUID_A = "0d6e1c44-7d3b-4a3e-9a4c-62a1c0b3f2a1"
UUID_B = "a1c5b1f2-8a3e-4c1b-b7d5-3e0f9b7d2c11"
CREATED = datetime(2024, 8, 4, 21, 34, 35, 241750, tzinfo=UTC)
FINISHED = datetime(2024, 8, 4, 21, 44, 55, 661575, tzinfo=UTC)
BOTH = pytest.mark.parametrize("encoding", list(Encoding))


def task(uuid: str = UUID_A, **fields: object) -> dict[str, object]:
    """A task as the 1.17 controller writes it, with ``fields`` overriding."""
    base: dict[str, object] = {
        "uuid": uuid,
        "createdDate": CREATED.isoformat(),
        "arguments": '"%SIPUUID%" "Standard"',
        "wants_output": True,
    }
    base.update(fields)
    return base


def json_payload(document: object) -> bytes:
    return json.dumps(document).encode("utf-8")


# --- detection ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b'{"tasks": {}}', Encoding.JSON),
        (b' \t\r\n{"tasks": {}}', Encoding.JSON),
        (b"(dp0\n.", Encoding.PICKLE),
        (b"}.", Encoding.PICKLE),
        (b"\x80\x04}.", Encoding.PICKLE),
    ],
)
def test_detect_encoding(data: bytes, expected: Encoding) -> None:
    assert detect_encoding(data) is expected


@pytest.mark.parametrize(
    "data", [b"", b"   \n", b"[1, 2]", b"hello", b"\x00\x01", b"\xef\xbb\xbf{}"]
)
def test_detect_encoding_refuses_anything_else(data: bytes) -> None:
    with pytest.raises(DecodeError, match="payload"):
        detect_encoding(data)


# --- request round trips ------------------------------------------------------------------


@BOTH
def test_request_round_trip(encoding: Encoding) -> None:
    tasks = {
        UUID_A: task(UUID_A, wants_output=False),
        UUID_B: task(UUID_B, arguments="--flag 'x y'"),
    }

    batch = decode_request(encode_request(tasks, encoding))

    assert batch == Batch(
        tasks=(
            TaskSpec(UUID_A, '"%SIPUUID%" "Standard"', "2024-08-04 21:34:35.241750+00:00", False),
            TaskSpec(UUID_B, "--flag 'x y'", "2024-08-04 21:34:35.241750+00:00", True),
        ),
        encoding=encoding,
    )


def test_protocol0_request_looks_like_the_controllers() -> None:
    payload = encode_request({UUID_A: task(createdDate=CREATED)}, Encoding.PICKLE)
    assert payload.startswith(b"(dp0")
    assert b"c_codecs\nencode" in payload  # the aware datetime's byte state
    assert decode_request(payload).tasks[0].created_date == "2024-08-04 21:34:35.241750+00:00"


def test_json_created_date_gets_a_space_separator() -> None:
    spec = decode_request(json_payload({"tasks": {UUID_A: task()}})).tasks[0]
    assert spec.created_date == "2024-08-04 21:34:35.241750+00:00"


@pytest.mark.parametrize(
    ("sent", "expected"),
    [
        ("2024-08-04 21:34:35.241750+00:00", "2024-08-04 21:34:35.241750+00:00"),
        ("2024-08-04T21:34:35Z", "2024-08-04 21:34:35+00:00"),
        ("2024-08-04T21:34:35", "2024-08-04 21:34:35"),
    ],
)
def test_created_date_forms(sent: str, expected: str) -> None:
    spec = decode_request(json_payload({"tasks": {UUID_A: task(createdDate=sent)}})).tasks[0]
    assert (spec.created_date, spec.problem) == (expected, None)


def test_each_task_keeps_its_own_created_date_when_some_share_one() -> None:
    # Dates read once per batch (worker.codec.wire keeps those it has read):
    # a repeated date must not leak into a task that sent another, nor a bad
    # date be taken for a good one it follows.
    later = "2024-08-04T21:40:00Z"
    uuid_c, uuid_d = "c" * 36, "d" * 36
    tasks = {UUID_A: task(createdDate=later), UUID_B: task(UUID_B, createdDate="not a date"),
             uuid_c: task(uuid_c), uuid_d: task(uuid_d, createdDate=later)}

    specs = decode_request(json_payload({"tasks": tasks})).tasks

    assert [s.created_date for s in specs] == [
        "2024-08-04 21:40:00+00:00", "", "2024-08-04 21:34:35.241750+00:00",
        "2024-08-04 21:40:00+00:00"]
    assert [s.problem is None for s in specs] == [True, False, True, True]


def test_pickled_datetime_created_date_is_space_separated() -> None:
    payload = pickle.dumps({"tasks": {UUID_A: task(createdDate=CREATED)}}, protocol=0)
    assert decode_request(payload).tasks[0].created_date == "2024-08-04 21:34:35.241750+00:00"


@BOTH
def test_wants_output_defaults_to_true(encoding: Encoding) -> None:
    without = task()
    del without["wants_output"]
    spec = decode_request(encode_request({UUID_A: without}, encoding)).tasks[0]
    assert spec.wants_output is True
    assert spec.problem is None


def test_the_key_is_trusted_not_the_inner_uuid() -> None:
    spec = decode_request(json_payload({"tasks": {UUID_A: task(uuid=UUID_B)}})).tasks[0]
    assert spec.uuid == UUID_A


def test_task_order_is_kept() -> None:
    uuids = [f"{i:08d}-0000-0000-0000-000000000000" for i in (5, 1, 9, 3, 7)]
    payload = json_payload({"tasks": {u: task(u) for u in uuids}})
    assert [spec.uuid for spec in decode_request(payload).tasks] == uuids


def test_unknown_keys_are_ignored() -> None:
    document = {"tasks": {UUID_A: task(extra=[1, 2], nested={"x": None})}, "version": 3}
    batch = decode_request(json_payload(document))
    assert batch.tasks[0].problem is None
    assert batch.tasks[0].arguments == '"%SIPUUID%" "Standard"'


@BOTH
def test_an_empty_batch_is_valid(encoding: Encoding) -> None:
    assert decode_request(encode_request({}, encoding)) == Batch(tasks=(), encoding=encoding)


# --- per-task problems -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ([1, 2], "the task is a list, not a mapping"),
        ("text", "the task is a str, not a mapping"),
        (None, "the task is a NoneType, not a mapping"),
        (task(arguments=None), "'arguments' is a NoneType, not a string"),
        (task(arguments=["a", "b"]), "'arguments' is a list, not a string"),
        ({"createdDate": CREATED.isoformat()}, "'arguments' is missing"),
        ({"arguments": "x"}, "'createdDate' is missing"),
        (task(createdDate="yesterday"), "'createdDate' is not an ISO 8601 date: 'yesterday'"),
        (task(createdDate=1722807275), "'createdDate' is a int, not an ISO 8601 string"),
        (task(wants_output="yes"), "'wants_output' is a str, not a boolean"),
        (task(wants_output=1), "'wants_output' is a int, not a boolean"),
        (
            {"wants_output": None},
            "'arguments' is missing; 'createdDate' is missing;"
            " 'wants_output' is a NoneType, not a boolean",
        ),
    ],
)
def test_a_bad_task_gets_a_problem_and_the_batch_survives(value: object, problem: str) -> None:
    document = {"tasks": {UUID_A: value, UUID_B: task(UUID_B)}}

    batch = decode_request(json_payload(document))

    bad, good = batch.tasks
    assert (bad.uuid, bad.problem) == (UUID_A, problem)
    assert bad.wants_output is True  # so the controller records why it failed
    assert (good.uuid, good.problem) == (UUID_B, None)


def test_a_pickled_date_is_not_a_created_date() -> None:
    payload = pickle.dumps({"tasks": {UUID_A: task(createdDate=date(2024, 8, 4))}}, protocol=0)
    assert decode_request(payload).tasks[0].problem == (
        "'createdDate' is a date, not an ISO 8601 string"
    )


# --- envelope errors ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b'{"tasks": {', "malformed JSON"),
        (b'{"tasks": {"a": {"arguments": "x"}}', "malformed JSON"),
        (b'{"tasks": {"\xff": {}}}', "not valid UTF-8"),
        (b"{}", "no 'tasks' key"),
        (b'{"tasks": null}', "'tasks' is a NoneType, not a mapping"),
        (b'{"tasks": []}', "'tasks' is a list, not a mapping"),
        (b'{"tasks": "x"}', "'tasks' is a str, not a mapping"),
        (b"{" + b"[" * 100_000, "malformed JSON"),
        (b'{"tasks": {}, "deep": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "malformed JSON"),
        (b'{"n": 1' + b"0" * 5000 + b', "tasks": {}}', "malformed JSON"),
        (b"(lp0\n.", "payload is a list, not a mapping"),
        (b"(dp0\nVtasks\np1\n(lp2\ns.", "'tasks' is a list, not a mapping"),
        (b"(dp0\nVtasks\np1\n(dp2\nI1\n(dp3\nss.", "has a int key, not a string"),
        (b"(dp0\nVtasks\np1\n(dp2\n", "cannot unpickle"),
        (b"\x80\x05\x95\x00", "cannot unpickle"),
        (b"(\x00\x00", "cannot unpickle"),
    ],
)
def test_unreadable_payloads_raise_decode_error(data: bytes, message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        decode_request(data)


def test_size_limit() -> None:
    payload = json_payload({"tasks": {UUID_A: task()}})
    assert len(decode_request(payload, max_bytes=len(payload)).tasks) == 1
    expected = f"payload of {len(payload)} bytes exceeds the limit of {len(payload) - 1} bytes"
    with pytest.raises(DecodeError) as info:
        decode_request(payload, max_bytes=len(payload) - 1)
    assert str(info.value) == expected


# --- results ----------------------------------------------------------------------------------


def results() -> list[TaskResult]:
    return [
        TaskResult(UUID_A, 0, FINISHED, stdout="done\n", stderr="warn\n", wants_output=True),
        TaskResult(UUID_B, 2, FINISHED, stdout="ignored", stderr="ignored", wants_output=False),
    ]


def test_json_result_shape() -> None:
    payload = encode_result(results(), Encoding.JSON)

    assert json.loads(payload.decode("utf-8")) == {
        "task_results": {
            UUID_A: {
                "exitCode": 0,
                "finishedTimestamp": "2024-08-04T21:44:55.661575+00:00",
                "stdout": "done\n",
                "stderror": "warn\n",
                "stderr": "warn\n",
            },
            UUID_B: {"exitCode": 2, "finishedTimestamp": "2024-08-04T21:44:55.661575+00:00"},
        }
    }


def test_pickle_result_shape() -> None:
    payload = encode_result(results(), Encoding.PICKLE)

    assert payload.startswith(b"(dp0")
    # The controller uses the stock unpickler; so does this assertion.
    assert pickle.loads(payload) == {
        "task_results": {
            UUID_A: {
                "exitCode": 0,
                "finishedTimestamp": FINISHED,
                "stdout": "done\n",
                "stderror": "warn\n",
                "stderr": "warn\n",
            },
            UUID_B: {"exitCode": 2, "finishedTimestamp": FINISHED},
        }
    }
    stamp = pickle.loads(payload)["task_results"][UUID_A]["finishedTimestamp"]
    assert isinstance(stamp, datetime)
    assert stamp.utcoffset() == timedelta(0)


@BOTH
def test_result_round_trip(encoding: Encoding) -> None:
    decoded = decode_result(encode_result(results(), encoding))
    assert list(decoded) == [UUID_A, UUID_B]
    assert decoded[UUID_A]["stderr"] == decoded[UUID_A]["stderror"] == "warn\n"
    assert "stdout" not in decoded[UUID_B]
    expected = FINISHED if encoding is Encoding.PICKLE else FINISHED.isoformat()
    assert decoded[UUID_B]["finishedTimestamp"] == expected


@BOTH
def test_empty_result(encoding: Encoding) -> None:
    assert decode_result(encode_result([], encoding)) == {}


@pytest.mark.parametrize(
    "data",
    [b'{"tasks": {}}', b'{"task_results": []}', b'{"task_results": {"a": 1}}', b"garbage"],
)
def test_decode_result_refuses_bad_payloads(data: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_result(data)


def test_finished_at_is_normalised_to_utc() -> None:
    plus_two = datetime(2024, 8, 4, 23, 44, 55, tzinfo=timezone(timedelta(hours=2)))
    assert TaskResult(UUID_A, 0, plus_two).finished_at == datetime(
        2024, 8, 4, 21, 44, 55, tzinfo=UTC
    )
    assert TaskResult(UUID_A, 0, plus_two).finished_at.tzinfo is UTC
    naive = TaskResult(UUID_A, 0, datetime(2024, 8, 4, 21, 44, 55)).finished_at
    assert naive == datetime(2024, 8, 4, 21, 44, 55, tzinfo=UTC)


def test_task_result_json_round_trip() -> None:
    original = TaskResult(UUID_A, 3, FINISHED, stdout="out", stderr="err", wants_output=False)
    as_json = original.to_json()
    assert json.loads(json.dumps(as_json)) == as_json
    assert as_json["finished_at"] == "2024-08-04T21:44:55.661575+00:00"
    assert TaskResult.from_json(as_json) == original


def test_task_result_to_json_sanitises_text() -> None:
    as_json = TaskResult(UUID_A, 1, FINISHED, stdout="a\udcff", stderr="\ud800").to_json()
    assert json.dumps(as_json, ensure_ascii=False).encode("utf-8")
    assert (as_json["stdout"], as_json["stderr"]) == ("a\ufffd", "\ufffd")


@pytest.mark.parametrize(
    "change",
    [
        {"uuid": 1},
        {"exit_code": "0"},
        {"exit_code": True},
        {"finished_at": 12},
        {"finished_at": "not a date"},
        {"stdout": None},
        {"wants_output": "no"},
    ],
)
def test_task_result_from_json_refuses_bad_fields(change: dict[str, object]) -> None:
    data = TaskResult(UUID_A, 0, FINISHED).to_json() | change
    with pytest.raises(DecodeError):
        TaskResult.from_json(data)


# --- sanitize_text -----------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("plain ascii\n", "plain ascii\n"),
        ("déjà vu ✓ 😀", "déjà vu ✓ 😀"),
        (b"ok \xff\xfe bytes", "ok \ufffd\ufffd bytes"),
        (b"caf\xc3\xa9", "café"),
        (b"cut \xe2\x82", "cut \ufffd"),
        ("lone \udcff surrogate", "lone \ufffd surrogate"),
        ("\ud800", "\ufffd"),
        ("pair \ud83d\ude00 joined", "pair 😀 joined"),
        ("reversed \ude00\ud83d", "reversed \ufffd\ufffd"),
    ],
)
def test_sanitize_text(text: str | bytes, expected: str) -> None:
    cleaned = sanitize_text(text)
    assert cleaned == expected
    assert cleaned.encode("utf-8").decode("utf-8") == cleaned


def test_sanitize_text_returns_clean_text_itself() -> None:
    text = "x" * 1000 + "é"
    assert sanitize_text(text) is text


@BOTH
def test_encode_result_never_raises_on_text(encoding: Encoding) -> None:
    messy = "ok \udcff\udcfe then \ud800 and \x00 nul"
    result = TaskResult(UUID_A, 1, FINISHED, stdout=messy, stderr=messy)

    decoded = decode_result(encode_result([result], encoding))

    assert decoded[UUID_A]["stdout"] == "ok \ufffd\ufffd then \ufffd and \x00 nul"
    assert decoded[UUID_A]["stderr"] == decoded[UUID_A]["stdout"]


def test_json_result_keeps_a_surrogate_uuid_exactly() -> None:
    odd = "task-\udcff"  # what the controller sends as "task-\\udcff"
    payload = encode_result([TaskResult(odd, 0, FINISHED)], Encoding.JSON)
    assert payload.isascii()
    assert list(decode_result(payload)) == [odd]


# --- the restricted unpickler ------------------------------------------------------------------


def test_safe_pickle_loads_a_real_protocol0_aware_datetime() -> None:
    payload = pickle.dumps(CREATED, protocol=0)
    assert b"_codecs" in payload and b"timezone" in payload
    loaded = safe_pickle.loads(payload)
    assert loaded == CREATED
    assert isinstance(loaded, datetime) and loaded.tzinfo == UTC


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_safe_pickle_loads_plain_data_in_every_protocol(protocol: int) -> None:
    data = {
        "s": "text é",
        "b": b"\x00\xff",
        "n": [1, -(2**70), 1.5, None, True, False],
        "t": (1, "two"),
        "when": [CREATED, date(2024, 8, 4), time(1, 2, 3)],
        "plus_two": datetime(2024, 1, 1, tzinfo=timezone(timedelta(hours=2), "CEST")),
    }
    assert safe_pickle.loads(pickle.dumps(data, protocol=protocol)) == data


def test_safe_pickle_handles_self_reference() -> None:
    loaded = safe_pickle.loads(b"(lp0\ng0\na.")
    assert isinstance(loaded, list) and loaded[0] is loaded


def test_safe_pickle_handles_deep_nesting() -> None:
    depth = 100_000
    loaded = safe_pickle.loads(b"(l" * depth + b"a" * (depth - 1) + b".")
    for _ in range(depth - 1):
        assert isinstance(loaded, list)
        loaded = loaded[0]
    assert loaded == []


@pytest.mark.parametrize(
    ("value", "name"),
    [
        (timedelta(days=1), "timedelta"),
        (UTC, "timezone"),
        ({"tasks": {}, "x": [timedelta(1)]}, "timedelta"),
    ],
)
def test_safe_pickle_refuses_allowed_globals_outside_a_datetime(value: object, name: str) -> None:
    with pytest.raises(DecodeError, match=f"refused a {name} object"):
        safe_pickle.loads(pickle.dumps(value, protocol=0))


@pytest.mark.parametrize("value", [{1, 2}, frozenset({1})])
def test_safe_pickle_refuses_sets_built_without_globals(value: object) -> None:
    # Protocol 4 has opcodes for sets: no global, so the type walk refuses them.
    with pytest.raises(DecodeError, match=f"refused a {type(value).__name__} object"):
        safe_pickle.loads(pickle.dumps(value, protocol=4))


@pytest.mark.parametrize(
    ("value", "refused"),
    [
        ({1, 2}, "__builtin__.set"),
        (frozenset({1}), "__builtin__.frozenset"),
        (bytearray(b"x"), "__builtin__.bytearray"),
        (Path("/tmp"), "pathlib"),
        (complex(1, 2), "__builtin__.complex"),
    ],
)
def test_safe_pickle_refuses_other_types(value: object, refused: str) -> None:
    with pytest.raises(DecodeError, match=f"refused pickle global {refused}"):
        safe_pickle.loads(pickle.dumps(value, protocol=2))


class _Exploit:
    """Pickles as a call to ``func(*args)``, as an attacker's payload would."""

    def __init__(self, func: object, *args: object) -> None:
        self.func, self.args = func, args

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return self.func, self.args


def _envelope(body: bytes) -> bytes:
    """Wrap a protocol-0 fragment as ``{"tasks": <fragment>}``, so it passes detection."""
    return b"(dp0\nVtasks\np1\n" + body + b"s."


def _touch_payloads(target: Path) -> dict[str, bytes]:
    """Hostile pickles, each of which creates ``target`` when run by pickle.loads."""
    path = str(target).encode()
    py = f"__import__('pathlib').Path({str(target)!r}).touch()".encode()
    return {
        "os.system REDUCE": _envelope(b"cos\nsystem\n(Vtouch " + path + b"\ntR"),
        "builtins.eval REDUCE": _envelope(b"cbuiltins\neval\n(V" + py + b"\ntR"),
        "__builtin__.eval REDUCE": _envelope(b"c__builtin__\neval\n(V" + py + b"\ntR"),
        "subprocess.call REDUCE": _envelope(b"csubprocess\ncall\n((lVtouch\naV" + path + b"\natR"),
        "INST os.system": _envelope(b"(Vtouch " + path + b"\nios\nsystem\n"),
        "OBJ os.system": _envelope(b"(cos\nsystem\nVtouch " + path + b"\no"),
        "bare GLOBAL+REDUCE": b"cos\nsystem\n(Vtouch " + path + b"\ntR.",
        "os.system, protocol 4": pickle.dumps(_Exploit(os.system, f"touch {target}"), 4),
        "subprocess.call, protocol 2": pickle.dumps(
            _Exploit(subprocess.call, ["touch", str(target)]), 2
        ),
        "inside a task": pickle.dumps(
            {"tasks": {UUID_A: {"arguments": _Exploit(os.system, f"touch {target}")}}}, 0
        ),
    }


HOSTILE = [
    "os.system REDUCE",
    "builtins.eval REDUCE",
    "__builtin__.eval REDUCE",
    "subprocess.call REDUCE",
    "INST os.system",
    "OBJ os.system",
    "bare GLOBAL+REDUCE",
    "os.system, protocol 4",
    "subprocess.call, protocol 2",
    "inside a task",
]
# "commands" is how protocol 2 spells subprocess for Python 2 readers.
REFUSED_GLOBAL = r"^refused pickle global (os|posix|builtins|__builtin__|subprocess|commands)\."


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_pickles_are_refused_and_nothing_runs(tmp_path: Path, name: str) -> None:
    target = tmp_path / "pwned"
    payload = _touch_payloads(target)[name]

    with pytest.raises(DecodeError, match=REFUSED_GLOBAL):
        safe_pickle.loads(payload)
    with pytest.raises(DecodeError):
        decode_request(payload)
    assert not target.exists()

    # Control: the stock unpickler does run the payload, so the check above means something.
    pickle.loads(payload)
    assert target.exists()


def test_hostile_envelope_reaches_the_unpickler_through_decode_request(tmp_path: Path) -> None:
    payload = _touch_payloads(tmp_path / "pwned")["os.system REDUCE"]
    assert detect_encoding(payload) is Encoding.PICKLE
    with pytest.raises(DecodeError, match="refused pickle global os.system"):
        decode_request(payload)


@pytest.mark.parametrize(
    ("payload", "refused"),
    [
        (b"cos\nsystem\n.", "os.system"),
        (b"cbuiltins\ngetattr\n.", "builtins.getattr"),
        (b"ccopyreg\n_reconstructor\n(cbuiltins\nobject\nNtR.", "copyreg._reconstructor"),
        (b"ccopy_reg\n_reconstructor\n.", "copy_reg._reconstructor"),
        (b"cdatetime\ndatetime.fromtimestamp\n.", "datetime.datetime.fromtimestamp"),
        (b"cdatetime\nsys\n.", "datetime.sys"),
        (b"c_codecs\ndecode\n.", "_codecs.decode"),
        (b"cpickle\nloads\n.", "pickle.loads"),
        (b"\x80\x04\x8c\x02os\x8c\x06system\x93.", "os.system"),
    ],
)
def test_globals_off_the_list_are_refused_even_uncalled(payload: bytes, refused: str) -> None:
    with pytest.raises(DecodeError) as info:
        safe_pickle.loads(payload)
    assert str(info.value) == f"refused pickle global {refused}"


@pytest.mark.parametrize(
    ("codec", "message"),
    [
        ("rot13", "refused _codecs.encode with the codec 'rot13'"),
        ("zlib", "refused _codecs.encode with the codec 'zlib'"),
        ("utf-8", "refused _codecs.encode with the codec 'utf-8'"),
        ("hex", "refused _codecs.encode with the codec 'hex'"),
    ],
)
def test_codecs_encode_only_allows_latin1(codec: str, message: str) -> None:
    payload = b"c_codecs\nencode\n(Vabc\nV" + codec.encode() + b"\ntR."
    with pytest.raises(DecodeError, match=message):
        safe_pickle.loads(payload)


@pytest.mark.parametrize("codec", ["latin1", "latin-1", "LATIN1"])
def test_codecs_encode_with_latin1_makes_bytes(codec: str) -> None:
    payload = b"c_codecs\nencode\n(Vab\\u00ff\nV" + codec.encode() + b"\ntR."
    assert safe_pickle.loads(payload) == b"ab\xff"


@pytest.mark.parametrize("value", [
    datetime(2024, 8, 4, 21, 34, 35, 241750, tzinfo=timezone(timedelta(hours=-5), "EST")),
    datetime(2024, 8, 4, 1, 30, fold=1), date(2024, 8, 4), time(23, 59, 59, 999999, tzinfo=UTC),
])
def test_every_protocol0_date_and_time_state_fits_the_encode_cap(value: object) -> None:
    # The cap on _codecs.encode's text is the longest state the datetime
    # module writes (a datetime's, 10 bytes), with or without a tzinfo.
    assert safe_pickle.loads(pickle.dumps({"when": value}, protocol=0)) == {"when": value}


def test_codecs_encode_refuses_text_longer_than_a_state() -> None:
    assert safe_pickle.loads(b"c_codecs\nencode\n(V" + b"x" * 10 + b"\nVlatin1\ntR.") == b"x" * 10
    with pytest.raises(DecodeError, match="refused _codecs.encode of 11 characters"):
        safe_pickle.loads(b"c_codecs\nencode\n(V" + b"x" * 11 + b"\nVlatin1\ntR.")


@pytest.mark.parametrize(
    "payload",
    [
        b"c_codecs\nencode\n(I1\nVlatin1\ntR.",  # not a string
        b"c_codecs\nencode\n(Vabc\nVlatin1\nVstrict\ntR.",  # a third argument
        b"c_codecs\nencode\n(V\\u0100\nVlatin1\ntR.",  # not latin-1 encodable
    ],
)
def test_codecs_encode_misuse_is_refused(payload: bytes) -> None:
    with pytest.raises(DecodeError):
        safe_pickle.loads(payload)


@pytest.mark.parametrize(
    "payload",
    [
        b"Pfoo\n.",  # persistent id
        b"(Vx\nQ.",  # binary persistent id
        b"\x80\x02\x82\x01.",  # copyreg extension code
        b"cdatetime\ntimedelta\n(I999999999999\ntR.",  # OverflowError
        b"cdatetime\ndatetime\n(Vx\ntR.",  # TypeError/ValueError
        b"(dp0\n(dp1\nVk\nI1\nsb.",  # BUILD on a dict
        b"g7\n.",  # memo miss
        b"I" + b"9" * 10_000 + b"\n.",  # int over the digit limit
    ],
)
def test_every_unpickling_error_is_a_decode_error(payload: bytes) -> None:
    with pytest.raises(DecodeError):
        safe_pickle.loads(payload)
