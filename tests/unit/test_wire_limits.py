"""Decoding hostile requests in bounded time and memory, and the decoded-size caps.

Memory is measured with tracemalloc (every allocation of the interpreter and
of the C unpickler and JSON parser), never with wall time.
"""

from __future__ import annotations

import json
import pickle
import tracemalloc
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from worker.batch.intake import Prepared, prepare_batch
from worker.codec import safe_pickle, wire
from worker.codec.argv import Paths
from worker.codec.limits import (
    MAX_CREATED_DATE_CHARS,
    MAX_TASK_UUID_CHARS,
    VALUES_PER_TASK,
    Limits,
    argument_bytes,
    check_json_values,
)
from worker.codec.records import Batch, Encoding
from worker.codec.wire import decode_request, encode_request, encode_result
from worker.contract.results import failed_results
from worker.errors import DecodeError

BOTH = pytest.mark.parametrize("encoding", list(Encoding))
PATHS = Paths(shared_directory="/var/archivematica/sharedDirectory/",
              client_assets_directory="/usr/lib/archivematica/MCPClient/assets/")
NOW = datetime(2024, 8, 4, 21, 40, 1, tzinfo=UTC)
MB = 1024 * 1024


def tasks(arguments: list[str]) -> dict[str, dict[str, object]]:
    out: dict[str, dict[str, object]] = {}
    for args in arguments:
        key = str(uuid.uuid4())
        out[key] = {"uuid": key, "createdDate": NOW, "arguments": args, "wants_output": True}
    return out


def memo_attack(copies: int, size: int = 1_000_000) -> bytes:
    """The issue's payload: one task with ``size`` bytes of arguments, and ``copies``
    more task keys bound to that same dict through the pickle's memo."""
    shared = {"uuid": "x", "createdDate": NOW, "arguments": "a" * size, "wants_output": True}
    document = {"tasks": {str(uuid.uuid4()): shared for _ in range(copies + 1)}}
    return pickle.dumps(document, protocol=0)


def prepare(batch: Batch, limits: Limits | None = None) -> Prepared:
    return prepare_batch(batch.tasks, limits=limits or Limits(), paths=PATHS, now=NOW)


@contextmanager
def peak_memory() -> Iterator[Callable[[], int]]:
    """Yields a function giving the peak bytes allocated inside the block."""
    tracemalloc.start()
    tracemalloc.reset_peak()
    peaks: list[int] = []
    try:
        yield lambda: peaks[0]
    finally:
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()


# --- the memo attack (issue 8, item 2) --------------------------------------------


def test_the_memo_attack_is_small_on_the_wire_and_refused_before_any_split() -> None:
    payload = memo_attack(300)
    assert len(payload) < 1_100_000  # passes any reasonable AMWORKER_MAX_PAYLOAD_BYTES
    with peak_memory() as peak:
        batch = decode_request(payload, max_bytes=2 * MB)
        prepared = prepare(batch)
    assert len(batch.tasks) == 301
    assert prepared.specs == []
    assert {task.uuid for task, _ in prepared.refused} == {task.uuid for task in batch.tasks}
    problems = {problem for _, problem in prepared.refused}
    assert len(problems) == 1
    assert "AMWORKER_MAX_BATCH_ARGUMENT_BYTES" in problems.pop()
    # Every reference was counted, and nothing was copied 301 times: the
    # payload itself (decoded once) is about all that was ever held.
    assert peak() < 8 * MB


def test_tasks_sharing_a_string_are_each_counted() -> None:
    batch = decode_request(memo_attack(3, size=1000))
    assert len({id(task.arguments) for task in batch.tasks}) == 1
    # 4 tasks of 1000 bytes of arguments and a 36-byte UUID each.
    assert prepare(batch, Limits(max_batch_argument_bytes=4143)).specs == []
    assert len(prepare(batch, Limits(max_batch_argument_bytes=4144)).specs) == 4


def codecs_attack(copies: int, size: int = MB) -> bytes:
    """A task with harmless arguments, and under an unknown key a list of ``copies``
    new strings of ``size`` bytes, each ``_codecs.encode`` of one string kept in the
    memo: 16 bytes of pickle per copy (``g12\\n(g11\\ng13\\ntRa``)."""
    return (b"(dp0\nVtasks\np1\n(dp2\nV" + str(uuid.uuid4()).encode() + b"\np3\n(dp4\n"
            b"Varguments\np5\nVa\np6\nsVcreatedDate\np7\nV2024-08-04 21:34:35\np8\nsVjunk\n"
            b"p9\n(lp10\nV" + b"x" * size + b"\np11\n0c_codecs\nencode\np12\n0Vlatin1\np13\n0"
            + b"g12\n(g11\ng13\ntRa" * copies + b"sss.")


def test_codecs_encode_cannot_copy_a_memo_string_again_and_again() -> None:
    payload = codecs_attack(300)
    assert len(payload) < 1_060_000
    with peak_memory() as peak, pytest.raises(DecodeError, match="refused _codecs.encode of "
                                              f"{MB} characters: a date or time state has at most 10"):
        decode_request(payload, max_bytes=2 * MB)
    # The string was decoded once; no copy of it was made.
    assert peak() < 8 * MB


def test_codecs_encode_of_a_short_string_stays_small_however_often() -> None:
    # Within the cap, each call makes at most 10 bytes: the operation budget
    # bounds how many, so the copies cost about what their operations do.
    payload = codecs_attack(20_000, size=10)
    with peak_memory() as peak:
        batch = decode_request(payload)
    assert batch.tasks[0].problem is None
    assert peak() < 4 * MB


# --- each cap -----------------------------------------------------------------------


@BOTH
def test_too_many_tasks_are_all_refused_and_named(encoding: Encoding) -> None:
    limits = Limits(max_tasks=50)
    batch = decode_request(encode_request(tasks(["a"] * 51), encoding),
                           max_values=limits.max_values)
    prepared = prepare(batch, limits)
    assert prepared.specs == [] and len(prepared.refused) == 51
    assert all("the batch has 51 tasks, more than the 50 allowed (AMWORKER_MAX_BATCH_TASKS)" == p
               for _, p in prepared.refused)
    assert len(prepare(decode_request(encode_request(tasks(["a"] * 50), encoding)), limits).specs) == 50


def test_one_long_argument_refuses_its_task_only() -> None:
    batch = decode_request(encode_request(tasks(["x" * 1001, "short", "é" * 501]), Encoding.JSON))
    prepared = prepare(batch, Limits(max_argument_bytes=1000))
    assert [spec.argv for spec in prepared.specs] == [("short",)]
    refused = {task.uuid: problem for task, problem in prepared.refused}
    assert refused == {
        batch.tasks[0].uuid: "'arguments' is 1001 bytes, more than the 1000 allowed "
                             "(AMWORKER_MAX_ARGUMENT_BYTES)",
        # Bytes, not characters: "é" is two bytes in UTF-8.
        batch.tasks[2].uuid: "'arguments' is 1002 bytes, more than the 1000 allowed "
                             "(AMWORKER_MAX_ARGUMENT_BYTES)",
    }


def test_caps_hold_again_once_placeholders_are_substituted() -> None:
    grows = "%sharedPath%" * 50  # 600 bytes that become 50 * 35
    batch = decode_request(encode_request(tasks([grows, "ok"]), Encoding.JSON))
    prepared = prepare(batch, Limits(max_argument_bytes=1000))
    assert [spec.argv for spec in prepared.specs] == [("ok",)]
    assert prepared.refused[0][1] == ("'arguments' is 1750 bytes once placeholders are substituted, "
                                      "more than the 1000 allowed (AMWORKER_MAX_ARGUMENT_BYTES)")
    whole = prepare(batch, Limits(max_argument_bytes=2000, max_batch_argument_bytes=1500))
    assert whole.specs == [] and len(whole.refused) == 2
    assert whole.refused[1][1].startswith("once placeholders are substituted, the batch's arguments")


def test_a_batch_within_every_cap_prepares_as_before() -> None:
    batch = decode_request(encode_request(tasks(['"%sharedPath%a b" c', "it\\'s"]), Encoding.PICKLE))
    prepared = prepare(batch)
    assert prepared.refused == []
    assert [spec.argv for spec in prepared.specs] == [
        ("/var/archivematica/sharedDirectory/a b", "c"), ("it's",)]


def test_argument_bytes_is_utf8_and_counts_surrogates() -> None:
    assert argument_bytes("abc") == 3
    assert argument_bytes("é€😀") == 2 + 3 + 4
    assert argument_bytes("\ud800") == 3


# --- item 7: a lone surrogate in a task key ------------------------------------------


@BOTH
def test_a_surrogate_task_key_is_refused_alone_and_answered_as_it_came(encoding: Encoding) -> None:
    good = str(uuid.uuid4())
    document = {"tasks": {"\ud800": {"arguments": "a", "createdDate": NOW.isoformat()},
                          good: {"arguments": "b", "createdDate": NOW.isoformat()}}}
    if encoding is Encoding.JSON:
        payload = json.dumps(document).encode()  # "\ud800" travels as that escape
    else:
        payload = pickle.dumps(document, protocol=0)
    batch = decode_request(payload)
    prepared = prepare(batch)
    assert [spec.uuid for spec in prepared.specs] == [good]
    assert [(task.uuid, problem) for task, problem in prepared.refused] == [
        ("\ud800", "the task UUID is not valid Unicode (it holds a lone surrogate)")]
    # Its answer carries the key back exactly.
    answer = encode_result(failed_results(["\ud800"], "amworker: payload refused: x"), encoding)
    assert "\ud800" in (json.loads(answer) if encoding is Encoding.JSON
                        else pickle.loads(answer))["task_results"]


# --- task UUIDs: a length cap, and their bytes in the batch budget -------------------


@BOTH
def test_an_overlong_task_uuid_is_refused_alone_and_answered_as_it_came(encoding: Encoding) -> None:
    longest, good = "u" * MAX_TASK_UUID_CHARS, str(uuid.uuid4())
    too_long = "v" * (MAX_TASK_UUID_CHARS + 1)
    payload = encode_request({key: {"arguments": key[:3], "createdDate": NOW}
                              for key in (longest, too_long, good)}, encoding)
    prepared = prepare(decode_request(payload))
    assert [spec.uuid for spec in prepared.specs] == [longest, good]
    assert [(task.uuid, problem) for task, problem in prepared.refused] == [
        (too_long, "task UUID too long: 257 characters, more than the 256 allowed "
                   "(a controller's has 36)")]


@BOTH
def test_a_huge_task_uuid_is_refused_in_bounded_memory_and_still_answered(
    encoding: Encoding,
) -> None:
    huge, good = "k" * (20 * MB), str(uuid.uuid4())
    payload = encode_request({huge: {"arguments": "a", "createdDate": NOW},
                              good: {"arguments": "b", "createdDate": NOW}}, encoding)
    batch = decode_request(payload)
    with peak_memory() as peak:
        prepared = prepare(batch)
    # Once decoded, the key is never copied: no UTF-8 size check, no argv,
    # nothing to dispatch. Its bytes alone pass the batch budget.
    assert peak() < MB
    assert prepared.specs == []
    problems = {problem for _, problem in prepared.refused}
    assert problems == {f"the batch's arguments and task UUIDs come to at least {20 * MB + 36} "
                        "bytes (every task counted), more than the 16777216 allowed "
                        "(AMWORKER_MAX_BATCH_ARGUMENT_BYTES)"}
    # The contract wants every key back: the answer echoes it exactly.
    answer = encode_result(failed_results([task.uuid for task in batch.tasks], "refused"), encoding)
    document = json.loads(answer) if encoding is Encoding.JSON else pickle.loads(answer)
    assert set(document["task_results"]) == {huge, good}


@BOTH
def test_a_huge_created_date_shared_by_every_task_is_never_parsed(
    encoding: Encoding, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A pickle's memo hands one 8 MB string to every task for a few bytes
    # each; parsing it scanned all of it once per task (2,000 tasks: 26 s).
    parsed: list[int] = []
    real = wire._space_separated_date

    def counting(raw: str) -> str:
        parsed.append(len(raw))
        return real(raw)

    monkeypatch.setattr(wire, "_space_separated_date", counting)
    huge, good = "2" * (8 * MB), str(uuid.uuid4())
    count = 2000 if encoding is Encoding.PICKLE else 2  # JSON has no memo: each copy is paid for
    document = {f"{i:036d}": {"arguments": "a", "createdDate": huge} for i in range(count)}
    document[good] = {"arguments": "b", "createdDate": NOW.isoformat()}
    payload = encode_request(document, encoding)

    specs = {task.uuid: task for task in decode_request(payload).tasks}

    assert parsed == [len(NOW.isoformat())]
    assert specs[good].created_date == "2024-08-04 21:40:01+00:00" and specs[good].problem is None
    assert {specs[f"{i:036d}"].problem for i in range(count)} == {
        f"'createdDate' is {8 * MB} characters, more than the {MAX_CREATED_DATE_CHARS} of any "
        f"ISO 8601 date: {'2' * 64!r}"}


def test_task_uuids_count_toward_the_batch_argument_bytes() -> None:
    # 100 tasks of 10 bytes of arguments: 1000 bytes of arguments, 3600 of UUIDs.
    batch = decode_request(encode_request(tasks(["0123456789"] * 100), Encoding.JSON))
    assert len(prepare(batch, Limits(max_argument_bytes=10, max_batch_argument_bytes=4600)).specs) == 100
    refused = prepare(batch, Limits(max_argument_bytes=10, max_batch_argument_bytes=4599))
    assert refused.specs == [] and len(refused.refused) == 100
    # Keys alone over the budget: refused before any argument is measured.
    assert prepare(batch, Limits(max_argument_bytes=10, max_batch_argument_bytes=3599)).specs == []


# --- decoding in bounded time and memory ---------------------------------------------


def test_a_memo_index_far_ahead_is_refused_before_the_unpickler_sizes_its_memo() -> None:
    # The C unpickler grows its memo to twice the index: 160 MB for this
    # 16-byte pickle (1.5 GB and 5 s for p100000000) before it notices anything.
    payload = b"(dp0\nS'tasks'\np10000000\n(dp1\ns."
    with peak_memory() as peak, pytest.raises(DecodeError, match="memo index of 10000000"):
        decode_request(payload)
    assert peak() < 4 * MB


@pytest.mark.parametrize("index", [b" 10000000", b"+10000000", b"0_10000000", b"1_0000_000",
                                   b"\t10000000 ", b"00000000000010000000"])
def test_every_spelling_of_a_far_memo_index_is_refused(index: bytes) -> None:
    # The unpickler reads the index as int() does: blanks, signs, underscores.
    payload = b"(dp0\nS'tasks'\np" + index + b"\n(dp1\ns."
    with peak_memory() as peak, pytest.raises(DecodeError, match="memo index of 10000000"):
        decode_request(payload)
    assert peak() < 4 * MB


def test_a_binary_memo_index_far_ahead_is_refused() -> None:
    # LONG_BINPUT takes a 4-byte index: 2**28 here, a 4 GB memo.
    payload = b"\x80\x02}q\x00X\x05\x00\x00\x00tasksq\x01}r\x00\x00\x00\x10s."
    with pytest.raises(DecodeError, match="memo index of 268435456"):
        decode_request(payload)


def test_real_pickles_use_their_memo_in_order() -> None:
    payload = memo_attack(2, size=10)
    assert payload.count(b"\ng") >= 2  # the shared task is fetched back from the memo
    assert len(decode_request(payload).tasks) == 3


def many_empty_lists(encoding: Encoding, count: int) -> bytes:
    if encoding is Encoding.JSON:
        return b'{"tasks":{},"x":[' + b"[]," * count + b"[]]}"
    return b"(dp0\nS'tasks'\n(dsS'x'\n(" + b"]" * count + b"ls."


@BOTH
def test_a_payload_of_tiny_values_is_refused_before_it_is_built(encoding: Encoding) -> None:
    # 3 MB of "[]," is a million lists: 64 MB of objects. The structure is
    # counted first, in a few kilobytes.
    payload = many_empty_lists(encoding, 1_000_000)
    with peak_memory() as peak, pytest.raises(DecodeError, match="more than 394240"):
        decode_request(payload)
    assert peak() < 8 * MB


def test_the_unpickler_and_the_codec_share_one_structure_default() -> None:
    # 400,000 operations: under a default of a million, over the one Limits derive.
    payload = b"(" + b"]" * 399_998 + b"l."
    assert safe_pickle.loads.__kwdefaults__ == {"max_ops": Limits().max_values}
    with pytest.raises(DecodeError, match=f"more than {Limits().max_values} pickle operations "
                                          r"\(the limit follows AMWORKER_MAX_BATCH_TASKS\)"):
        safe_pickle.loads(payload)
    with pytest.raises(DecodeError, match=f"more than {Limits().max_values} pickle operations"):
        decode_request(payload)


@BOTH
def test_the_largest_allowed_batch_and_one_task_more_both_decode(encoding: Encoding) -> None:
    limits = Limits(max_tasks=200)
    for count in (200, 201, 400):
        payload = encode_request(tasks([f'"{n}" --flag "x y"' for n in range(count)]), encoding)
        batch = decode_request(payload, max_values=limits.max_values)
        assert len(batch.tasks) == count  # read, so they can be answered payload refused


def test_the_default_task_cap_leaves_room_for_real_tasks() -> None:
    # A real protocol-0 task takes about 35 operations; the budget allows 96.
    payload = encode_request(tasks(["a"] * 4096), Encoding.PICKLE)
    assert len(decode_request(payload).tasks) == 4096
    assert VALUES_PER_TASK >= 2 * 40


def test_commas_and_colons_inside_strings_are_not_structure() -> None:
    text = "a,b:c[d{" * 200_000  # 1.6 MB of structural characters, all inside a string
    payload = encode_request(tasks([text]), Encoding.JSON)
    check_json_values(payload, 1000)  # the exact count sees only the envelope
    assert decode_request(payload, max_values=1000).tasks[0].arguments == text


def test_an_unterminated_string_is_counted_in_linear_work() -> None:
    # An escaped quote again and again, never closed: a backtracking pattern
    # would restart at each one. The JSON parser then refuses the payload.
    payload = b'{"tasks":{},"x":"' + b'\\",' * 300_000
    check_json_values(payload, 1000)
    with pytest.raises(DecodeError, match="malformed JSON"):
        decode_request(payload, max_values=1000)


@pytest.mark.parametrize("payload", [
    b'{"tasks":{"a":{"arguments":' + b"1" * 5000 + b"}}}",
    b"(dp0\nS'tasks'\n(dS'a'\nL" + b"1" * 5000 + b"L\nss.",
    b"(dp0\nS'tasks'\n(dS'a'\nI" + b"1" * 5000 + b"\nss.",
], ids=["json-int", "pickle-long", "pickle-int"])
def test_huge_integer_literals_are_refused_not_parsed(payload: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_request(payload)


def test_deep_pickle_nesting_within_budget_decodes_without_recursion() -> None:
    depth = 150_000
    payload = (b"(dp0\nS'tasks'\n(dS'a'\n(dS'arguments'\n" + b"(" * depth + b"l" * depth
               + b"sssS'deep'\nI1\ns.")
    batch = decode_request(payload)
    assert str(batch.tasks[0].problem).startswith("'arguments' is a list, not a string")


def test_deep_json_nesting_is_a_decode_error() -> None:
    with pytest.raises(DecodeError, match="RecursionError"):
        decode_request(b'{"tasks":{},"x":' + b"[" * 100_000 + b"]" * 100_000 + b"}")


@BOTH
def test_duplicate_task_keys_keep_the_last_and_are_answered_once(encoding: Encoding) -> None:
    if encoding is Encoding.JSON:
        payload = b'{"tasks":{"a":{"arguments":"first"},"a":{"arguments":"second"}}}'
    else:
        payload = (b"(dp0\nS'tasks'\n(dS'a'\n(dS'arguments'\nS'first'\nssS'a'\n"
                   b"(dS'arguments'\nS'second'\nsss.")
    batch = decode_request(payload)
    assert [(task.uuid, task.arguments) for task in batch.tasks] == [("a", "second")]


def test_an_error_message_never_repeats_a_huge_payload() -> None:
    payload = b"(dp0\nS" + b"x" * 1_000_000 + b"\n."  # a string with no quotes
    with pytest.raises(DecodeError) as caught:
        decode_request(payload)
    assert len(str(caught.value)) < 400


def test_text_that_looks_like_a_far_memo_index_is_not_refused() -> None:
    # The quick look for "p" before a long number also sees strings; the
    # operations are then read one by one, and this one is only text.
    payload = encode_request(tasks(["photo p123456789\n.jpg", "p99999999"]), Encoding.PICKLE)
    assert b"p123456789" in payload
    assert [task.arguments for task in decode_request(payload).tasks] == [
        "photo p123456789\n.jpg", "p99999999"]


def test_a_binary_memo_index_inside_a_text_pickle_is_refused() -> None:
    # Protocol-0 text around one binary LONG_BINPUT: the unpickler takes both.
    payload = b"(dp0\nS'tasks'\np1\n(dr\x00\x00\x00\x10s."
    with pytest.raises(DecodeError, match="memo index of 268435456"):
        decode_request(payload)


#: Pieces of hostile pickle programs: containers, memo puts and gets (some far
#: ahead), duplication, big numbers and strings, and calls of the allowed
#: globals (``_codecs.encode`` of a string in the memo), in any protocol's opcodes.
_PICKLE_PIECES = st.sampled_from([
    b"(", b"d", b"l", b"t", b"]", b"}", b")", b"N", b"s", b"a", b"e", b"u", b"0", b"2",
    b"\x8f", b"\x88", b"p0\n", b"p1\n", b"p2\n", b"p7\n", b"p100000000\n", b"g0\n", b"g3\n",
    b"q\x05", b"r\x00\x00\x00\x20", b"j\x01\x00\x00\x00", b"I12\n", b"L" + b"9" * 4400 + b"L\n",
    b"V" + b"x" * 1000 + b"\n", b"V" + b"x" * 100_000 + b"\n", b"S'tasks'\n",
    b"X\x05\x00\x00\x00tasks", b"c_codecs\nencode\n", b"Vlatin1\n", b"tR", b"g1\n(g0\ng2\ntRa",
])

#: Repetitions of one piece stop at this many bytes, so a payload stays a few MB.
_RUN_BYTES = 4 * MB

#: ``_codecs.encode`` of a 100 kB string kept in the memo, again and again:
#: random runs rarely line up the five pieces it takes, so it is always tried.
_CODECS_COPIES = [(b"V" + b"x" * 100_000 + b"\n", 1), (b"p0\n", 1), (b"c_codecs\nencode\n", 1),
                  (b"p1\n", 1), (b"Vlatin1\n", 1), (b"p2\n", 1), (b"]", 1),
                  (b"g1\n(g0\ng2\ntRa", 3000)]


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(st.tuples(_PICKLE_PIECES, st.integers(1, 20_000)), min_size=1, max_size=5))
@example(_CODECS_COPIES)
def test_hostile_pickle_programs_decode_in_bounded_memory(runs: list[tuple[bytes, int]]) -> None:
    payload = b"(dp0\n" + b"".join(piece * min(count, max(1, _RUN_BYTES // len(piece)))
                                   for piece, count in runs) + b"."
    with peak_memory() as peak:
        try:
            decode_request(payload, max_bytes=64 * MB)
        except DecodeError:
            pass
    # Every operation builds at most one small object (an empty set is the
    # largest, 216 bytes), and the budget caps the operations.
    assert peak() <= 300 * min(len(payload), Limits().max_values) + 8 * MB


_ARGUMENTS = st.one_of(
    st.text(alphabet=st.sampled_from(list("ab '\"\\%é")), max_size=30),
    st.sampled_from(["%sharedPath%" * 20, "x" * 300, "it's", '"%date%" %taskUUID%']),
)


@settings(max_examples=150, deadline=None)
@given(arguments=st.lists(_ARGUMENTS, max_size=12), max_tasks=st.integers(1, 12),
       max_argument=st.integers(1, 800), extra=st.integers(0, 3000), encoding=st.sampled_from(Encoding))
def test_every_task_is_prepared_or_refused_exactly_once(
    arguments: list[str], max_tasks: int, max_argument: int, extra: int, encoding: Encoding
) -> None:
    limits = Limits(max_tasks=max_tasks, max_argument_bytes=max_argument,
                    max_batch_argument_bytes=max_argument + extra)
    batch = decode_request(encode_request(tasks(arguments), encoding), max_values=limits.max_values)
    prepared = prepare(batch, limits)
    handled = [spec.uuid for spec in prepared.specs] + [task.uuid for task, _ in prepared.refused]
    assert sorted(handled) == sorted(task.uuid for task in batch.tasks)
    assert all(sum(map(len, spec.argv)) <= max_argument for spec in prepared.specs)
    if len(arguments) > max_tasks:
        assert prepared.specs == []
