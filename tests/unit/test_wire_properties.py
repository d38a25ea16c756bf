"""Property tests: whatever arrives, the codec answers with a Batch or a DecodeError."""

from __future__ import annotations

import json
import pickle
from datetime import UTC, date, datetime, time, timedelta, timezone

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from worker.codec import safe_pickle
from worker.codec.records import (
    Batch,
    Encoding,
    TaskResult,
    sanitize_text,
)
from worker.codec.wire import (
    decode_request,
    decode_result,
    encode_request,
    encode_result,
)
from worker.errors import DecodeError

FAST = settings(max_examples=300, deadline=None)
SLOW = settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# Any code point, surrogates included (st.text() may leave them out).
ANY_CHAR = st.characters(codec=None, exclude_categories=())
ANY_TEXT = st.text(ANY_CHAR, max_size=40)

JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | ANY_TEXT
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(ANY_TEXT, inner, max_size=4),
    max_leaves=12,
)

# Values a task field may hold: the right kind of value, or anything at all.
ARGUMENTS = st.one_of(ANY_TEXT, JSON_VALUES)
CREATED_DATES = st.one_of(
    st.datetimes(timezones=st.just(UTC)).map(lambda d: d.isoformat()),
    st.datetimes(timezones=st.just(UTC)).map(lambda d: d.isoformat(" ")),
    JSON_VALUES,
)
WANTS_OUTPUT = st.one_of(st.booleans(), JSON_VALUES)
TASKS = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "uuid": ANY_TEXT,
            "arguments": ARGUMENTS,
            "createdDate": CREATED_DATES,
            "wants_output": WANTS_OUTPUT,
            "extra": JSON_VALUES,
        },
    ),
    JSON_VALUES,
)
# Bad values at every level: the document, the tasks mapping, one task, a field.
DOCUMENTS = st.one_of(
    JSON_VALUES,
    st.fixed_dictionaries({"tasks": JSON_VALUES}),
    st.fixed_dictionaries({"tasks": st.dictionaries(ANY_TEXT, TASKS, max_size=5)}),
)


def assert_sound(batch: Batch, document: object) -> None:
    """A returned batch has one well-typed TaskSpec per task, in payload order."""
    assert isinstance(document, dict) and isinstance(document["tasks"], dict)
    assert [spec.uuid for spec in batch.tasks] == list(document["tasks"])
    for spec in batch.tasks:
        assert isinstance(spec.arguments, str)
        assert isinstance(spec.created_date, str)
        assert isinstance(spec.wants_output, bool)
        assert spec.problem is None or isinstance(spec.problem, str)
        if spec.problem is None:
            task = document["tasks"][spec.uuid]
            assert spec.arguments == task["arguments"]
            assert " " in spec.created_date and "T" not in spec.created_date[:11]


def decode(data: bytes) -> Batch | None:
    """decode_request, with DecodeError as None; anything else fails the test."""
    try:
        return decode_request(data)
    except DecodeError:
        return None


@FAST
@given(
    prefix=st.sampled_from([b"", b"{", b"(dp0\n", b"}", b"\x80\x02", b"\x80\x04\x95", b" {"]),
    data=st.binary(max_size=512),
)
def test_arbitrary_bytes_raise_only_decode_error(prefix: bytes, data: bytes) -> None:
    result = decode(prefix + data)
    assert result is None or isinstance(result, Batch)


@FAST
@given(document=DOCUMENTS, ascii_only=st.booleans())
def test_arbitrary_json_structures(document: object, ascii_only: bool) -> None:
    text = json.dumps(document, ensure_ascii=ascii_only)
    # A surrogate in non-ASCII mode gives invalid UTF-8: must be a DecodeError too.
    batch = decode(text.encode("utf-8", "surrogatepass"))
    if batch is not None:
        assert batch.encoding is Encoding.JSON
        assert_sound(batch, document)
    elif ascii_only and isinstance(document, dict) and isinstance(document.get("tasks"), dict):
        pytest.fail("a JSON object with a 'tasks' object must decode")


@FAST
@given(document=DOCUMENTS, protocol=st.integers(0, pickle.HIGHEST_PROTOCOL))
def test_arbitrary_pickled_structures(document: object, protocol: int) -> None:
    payload = pickle.dumps(document, protocol=protocol)
    batch = decode(payload)
    if batch is not None:
        assert batch.encoding is Encoding.PICKLE
        assert_sound(batch, document)
    elif isinstance(document, dict) and isinstance(document.get("tasks"), dict):
        pytest.fail("a pickled dict with a 'tasks' dict must decode")


VALID_TASKS = st.dictionaries(
    st.uuids().map(str),
    st.fixed_dictionaries(
        {
            "uuid": st.uuids().map(str),
            "createdDate": st.datetimes(timezones=st.just(UTC)),
            "arguments": ANY_TEXT,
            "wants_output": st.booleans(),
        }
    ),
    max_size=4,
)


@FAST
@given(tasks=VALID_TASKS, encoding=st.sampled_from(Encoding), data=st.data())
def test_truncated_payloads_raise_decode_error(
    tasks: dict[str, dict[str, object]], encoding: Encoding, data: st.DataObject
) -> None:
    payload = encode_request(tasks, encoding)
    assert len(decode_request(payload).tasks) == len(tasks)
    cut = data.draw(st.integers(0, len(payload) - 1), label="cut")
    with pytest.raises(DecodeError):
        decode_request(payload[:cut])


# --- random pickles --------------------------------------------------------------

TRIPWIRE_CALLS: list[tuple[object, ...]] = []


def _tripwire(*args: object) -> None:
    """A global that a hostile pickle could name; it must never be called."""
    TRIPWIRE_CALLS.append(args)


_TRIPWIRE = f"c{__name__}\n_tripwire\n".encode()

# Protocol-0 fragments (and a few binary ones), allowed and refused globals alike.
FRAGMENTS = [
    b"(", b"d", b"l", b"t", b"s", b"a", b"e", b"u", b"R", b"b", b"o", b"0", b"1", b"2",
    b"p0\n", b"g0\n", b"p1\n", b"g1\n", b"N", b"I1\n", b"I01\n", b"L5L\n", b"F1.5\n",
    b"Vtasks\n", b"Varguments\n", b"VcreatedDate\n", b"Vlatin1\n", b"Vx\n", b"S'x'\n",
    b"}", b"]", b")", b"\x88", b"\x89", b"\x85", b"\x86", b"K\x01", b"U\x01x", b"\x93",
    b"\x8c\x02os", b"\x8c\x06system",
    b"cdatetime\ndatetime\n", b"cdatetime\ndate\n", b"cdatetime\ntime\n",
    b"cdatetime\ntimedelta\n", b"cdatetime\ntimezone\n", b"c_codecs\nencode\n",
    b"cos\nsystem\n", b"cbuiltins\neval\n", b"ccopyreg\n_reconstructor\n",
    b"cbuiltins\nobject\n", b"isubprocess\ncall\n", _TRIPWIRE, b"i" + _TRIPWIRE[1:],
    b"Pid\n", b"\x80\x02", b"\x82\x01",
    # Whole calls (REDUCE, INST, OBJ) of the tripwire, so the search reaches them.
    _TRIPWIRE + b")R", _TRIPWIRE + b"(Vx\ntR", b"(i" + _TRIPWIRE[1:], b"(" + _TRIPWIRE + b"o",
    b")R", b"(tR", b"(Vx\ntR",
]  # fmt: skip

PLAIN = (dict, list, tuple, str, bytes, bool, int, float, type(None), datetime, date, time)


def _only_plain(obj: object, seen: set[int]) -> bool:
    if type(obj) not in PLAIN:
        return False
    if id(obj) in seen or not isinstance(obj, dict | list | tuple):
        return True
    seen.add(id(obj))
    items = [*obj.keys(), *obj.values()] if isinstance(obj, dict) else list(obj)
    return all(_only_plain(item, seen) for item in items)


@FAST
@given(st.lists(st.sampled_from(FRAGMENTS), max_size=30))
def test_random_pickles_never_run_code(fragments: list[bytes]) -> None:
    payload = b"".join(fragments) + b"."
    TRIPWIRE_CALLS.clear()
    try:
        loaded = safe_pickle.loads(payload)
    except DecodeError:
        pass
    else:
        assert _only_plain(loaded, set())
    result = decode(payload)
    assert result is None or isinstance(result, Batch)
    assert TRIPWIRE_CALLS == []


def test_the_tripwire_fires_under_the_stock_unpickler() -> None:
    # Control for the property above: the tripwire global is reachable and works.
    TRIPWIRE_CALLS.clear()
    pickle.loads(_TRIPWIRE + b"(Vboom\ntR.")
    assert TRIPWIRE_CALLS == [("boom",)]
    with pytest.raises(DecodeError, match="refused pickle global"):
        safe_pickle.loads(_TRIPWIRE + b"(Vboom\ntR.")
    assert TRIPWIRE_CALLS == [("boom",)]


PICKLABLE_PLAIN = st.recursive(
    JSON_SCALARS
    # Not b"": protocols < 3 write it as a call to builtins.bytes, which is refused.
    | st.binary(min_size=1, max_size=8)
    | st.datetimes(timezones=st.none() | st.just(UTC))
    | st.dates()
    | st.times(),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.tuples(inner, inner)
        | st.dictionaries(ANY_TEXT, inner, max_size=3)
    ),
    max_leaves=10,
)


@FAST
@given(value=PICKLABLE_PLAIN, protocol=st.integers(0, pickle.HIGHEST_PROTOCOL))
def test_plain_data_survives_the_restricted_unpickler(value: object, protocol: int) -> None:
    payload = pickle.dumps(value, protocol=protocol)
    loaded = safe_pickle.loads(payload)
    # Compared with the stock unpickler's result, not ``value``: protocols < 4
    # drop ``fold``, and that is pickle's business, not ours.
    assert pickle.dumps(loaded, protocol=4) == pickle.dumps(pickle.loads(payload), protocol=4)


@FAST
@given(
    value=st.one_of(
        st.timedeltas(),
        st.just(UTC),
        st.builds(
            timezone, st.timedeltas(min_value=timedelta(hours=-23), max_value=timedelta(hours=23))
        ),
        st.sets(st.integers(), max_size=3),
        st.complex_numbers(),
    ),
    protocol=st.integers(0, pickle.HIGHEST_PROTOCOL),
)
def test_non_plain_data_is_refused(value: object, protocol: int) -> None:
    with pytest.raises(DecodeError):
        safe_pickle.loads(pickle.dumps({"tasks": {}, "x": [value]}, protocol=protocol))


# --- big and odd text ----------------------------------------------------------------


@SLOW
@given(chunk=st.text(ANY_CHAR, min_size=1, max_size=16), encoding=st.sampled_from(Encoding))
def test_one_megabyte_arguments(chunk: str, encoding: Encoding) -> None:
    arguments = (chunk * (1_000_000 // len(chunk) + 1))[:1_000_000]
    tasks = {"u": {"createdDate": "2024-08-04T21:34:35+00:00", "arguments": arguments}}

    spec = decode_request(encode_request(tasks, encoding)).tasks[0]

    assert spec.problem is None
    assert spec.arguments == arguments


@FAST
@given(
    uuid=ANY_TEXT,
    stdout=st.text(ANY_CHAR),
    stderr=st.text(ANY_CHAR),
    encoding=st.sampled_from(Encoding),
)
def test_encode_result_round_trips_any_text(
    uuid: str, stdout: str, stderr: str, encoding: Encoding
) -> None:
    finished = datetime(2024, 8, 4, 21, 44, 55, tzinfo=UTC)
    payload = encode_result([TaskResult(uuid, 1, finished, stdout, stderr)], encoding)

    entry = decode_result(payload)[uuid]

    assert entry["stdout"] == sanitize_text(stdout)
    assert entry["stderror"] == entry["stderr"] == sanitize_text(stderr)
    assert entry["exitCode"] == 1


@FAST
@given(st.text(ANY_CHAR))
def test_sanitize_text_properties(text: str) -> None:
    cleaned = sanitize_text(text)
    assert cleaned.encode("utf-8").decode("utf-8") == cleaned
    assert sanitize_text(cleaned) == cleaned
    assert not any(0xD800 <= ord(c) <= 0xDFFF for c in cleaned)


@FAST
@given(st.text(ANY_CHAR))
def test_sanitize_text_keeps_text_without_surrogates(text: str) -> None:
    assume(not any(0xD800 <= ord(c) <= 0xDFFF for c in text))
    assert sanitize_text(text) == text


@FAST
@given(st.binary())
def test_sanitize_bytes_matches_utf8_replace(data: bytes) -> None:
    assert sanitize_text(data) == data.decode("utf-8", "replace")
