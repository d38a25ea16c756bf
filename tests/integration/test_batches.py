"""Batches end to end: controller -> gearmand -> shim -> Celery chord -> answer.

Everything is real (gearmand, Redis, a Celery worker with two pool processes,
the shim as a subprocess); the controller is played by a raw Gearman client.
The core tests take ``broker_stack`` and run twice: with Redis as Celery's
broker, and with RabbitMQ (Redis then holds only results and coordination).
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import pytest

from harness.services import Stack, wait_until
from tests.integration.controller import (
    BASE_KEYS,
    CREATED_WITH_SPACE,
    ENCODINGS,
    OUTPUT_KEYS,
    Batch,
    batch,
    exit_codes,
    finished_at,
    run,
)
from worker.codec.records import Encoding

pytestmark = pytest.mark.integration

# A clock skew allowance for comparing our clock with the answer's timestamps.
SLACK = timedelta(seconds=2)


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_all_success_batch_has_the_exact_result_shape(broker_stack: Stack,
                                                      encoding: Encoding) -> None:
    built = batch("echo_v0.0", encoding, ["one", "two", "three", "four", "five"])
    before = datetime.now(UTC)
    answered = run(broker_stack, built)
    after = datetime.now(UTC)

    assert exit_codes(answered) == dict.fromkeys(built.tasks, 0)
    for task_id, entry in answered.items():
        assert set(entry) == BASE_KEYS | OUTPUT_KEYS
        assert before - SLACK <= finished_at(entry, encoding) <= after + SLACK
        assert entry["stdout"] == f"echo_v0.0 {built.tasks[task_id]['arguments']}\n"
        assert entry["stderror"] == entry["stderr"] == "to stderr\n"


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_without_wants_output_no_output_keys(amworker_stack: Stack, encoding: Encoding) -> None:
    built = batch("echo_v0.0", encoding, ["a", "b"], wants_output=False)
    answered = run(amworker_stack, built)
    for entry in answered.values():
        assert set(entry) == BASE_KEYS
        assert entry["exitCode"] == 0
        finished_at(entry, encoding)


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_wants_output_on_off_and_missing_in_one_batch(amworker_stack: Stack,
                                                      encoding: Encoding) -> None:
    built = Batch("echo_v0.0", encoding)
    on = built.add("on", wants_output=True)
    off = built.add("off", wants_output=False)
    missing = built.add("missing", wants_output=None)  # the contract's default: true
    answered = run(amworker_stack, built)
    assert set(answered[on]) == BASE_KEYS | OUTPUT_KEYS
    assert answered[on]["stdout"] == "echo_v0.0 on\n"
    assert set(answered[off]) == BASE_KEYS
    assert set(answered[missing]) == BASE_KEYS | OUTPUT_KEYS
    assert answered[missing]["stdout"] == "echo_v0.0 missing\n"
    assert exit_codes(answered) == {on: 0, off: 0, missing: 0}


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_script_sees_function_plus_argv_with_placeholders_and_quoting(
        amworker_stack: Stack, encoding: Encoding) -> None:
    shared = amworker_stack.env["AMWORKER_SHARED_DIRECTORY"]
    assert shared.endswith("/")
    built = Batch("argvjson_v0.0", encoding)
    task_id = built.add(
        "'single quoted' \"double \\\"q\\\"\" plain "
        "\"back\\`tick\" %sharedPath%objects/f.txt --uuid=%taskUUID% \"%jobCreatedDate%\""
    )
    answered = run(amworker_stack, built)
    entry = answered[task_id]
    assert entry["exitCode"] == 0, entry
    assert json.loads(str(entry["stdout"])) == [
        "argvjson_v0.0",
        "single quoted",
        'double "q"',
        "plain",
        "back`tick",
        f"{shared}objects/f.txt",
        f"--uuid={task_id}",
        CREATED_WITH_SPACE,
    ]


def test_created_date_as_pickled_aware_datetime_reaches_the_script(amworker_stack: Stack) -> None:
    # Protocol 0 writes an aware datetime through datetime, timezone,
    # timedelta and _codecs.encode: the restricted unpickler must accept it.
    built = Batch("argvjson_v0.0", Encoding.PICKLE)
    task_id = built.add("\"%jobCreatedDate%\"")
    built.tasks[task_id]["createdDate"] = datetime(2024, 8, 4, 21, 34, 35, 241750, tzinfo=UTC)
    answered = run(amworker_stack, built)
    assert json.loads(str(answered[task_id]["stdout"])) == ["argvjson_v0.0", CREATED_WITH_SPACE]


def test_echo_prints_its_args(amworker_stack: Stack) -> None:
    built = batch("echo_v0.0", Encoding.JSON, ["%taskUUID% alpha 'beta gamma'"])
    (task_id,) = built.tasks
    answered = run(amworker_stack, built)
    assert answered[task_id]["stdout"] == f"echo_v0.0 {task_id} alpha beta gamma\n"


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_mixed_exit_codes_in_one_batch(broker_stack: Stack, encoding: Encoding) -> None:
    codes = [0, 1, 2, 17, 0, 255]
    built = batch("exitcode_v0.0", encoding, [str(code) for code in codes])
    answered = run(broker_stack, built)
    assert exit_codes(answered) == dict(zip(built.tasks, codes, strict=True))
    for task_id, code in zip(built.tasks, codes, strict=True):
        assert answered[task_id]["stdout"] == f"exiting with {code}\n"


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_four_slices_keep_payload_order_and_one_process_each(broker_stack: Stack,
                                                             encoding: Encoding) -> None:
    built = batch("sliced_v0.0", encoding, [f"job-{i}" for i in range(10)])
    answered = run(broker_stack, built)
    assert exit_codes(answered) == dict.fromkeys(built.tasks, 0)
    # In payload order: slice i always holds the same contiguous jobs.
    outputs = [str(answered[task_id]["stdout"]) for task_id in built.tasks]
    lines = [re.fullmatch(r"pid=(\d+) jobs_in_slice=(\d+)\n", out) for out in outputs]
    assert all(lines), outputs
    pids = [int(m.group(1)) for m in lines if m]
    sizes = [int(m.group(2)) for m in lines if m]
    # 10 jobs in 4 contiguous slices of 3, 3, 2, 2 (payload order kept).
    assert sizes == [3, 3, 3, 3, 3, 3, 2, 2, 2, 2]
    # Jobs of one slice share a process; runs of equal pid mark the 4 slices.
    slices = [pids[0:3], pids[3:6], pids[6:8], pids[8:10]]
    assert all(len(set(s)) == 1 for s in slices), pids
    # Which pool process takes which slice is Celery's choice: slices this
    # short can all land on one process that is idle again before the next
    # arrives. That slices do run side by side in separate processes is
    # shown by test_slices_really_run_at_the_same_time, which cannot pass
    # otherwise.


def test_slices_really_run_at_the_same_time(broker_stack: Stack) -> None:
    # Each slice waits (up to 20 s) for a marker of the other slice; run one
    # after the other, the first would time out and fail its jobs.
    rendezvous = broker_stack.workdir / "rendezvous"
    rendezvous.mkdir()
    built = batch("rendezvous_v0.0", Encoding.JSON, [f"{rendezvous} 20"] * 4)
    answered = run(broker_stack, built, timeout=60)
    assert exit_codes(answered) == dict.fromkeys(built.tasks, 0), answered
    markers = sorted(p.name for p in rendezvous.iterdir())
    assert len(markers) == 2, markers
    pids = {(rendezvous / name).read_text() for name in markers}
    assert len(pids) == 2, "the two slices ran in two different pool processes"


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_script_that_raises_fails_every_job_with_the_traceback(broker_stack: Stack,
                                                               encoding: Encoding) -> None:
    built = batch("raises_v0.0", encoding, ["x", "y", "z"])
    answered = run(broker_stack, built)
    assert exit_codes(answered) == dict.fromkeys(built.tasks, 1)
    for entry in answered.values():
        assert "Traceback (most recent call last)" in str(entry["stderr"])
        assert "RuntimeError: boom from raises_v0.0" in str(entry["stderr"])
        assert entry["stderror"] == entry["stderr"]


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_sys_exit_fails_the_jobs_and_the_worker_keeps_serving(broker_stack: Stack,
                                                              encoding: Encoding) -> None:
    workers = [p for p in broker_stack.procs if p.name.startswith("it-")]
    built = batch("sysexit_v0.0", encoding, ["0", "0"])  # even sys.exit(0) is a failure
    answered = run(broker_stack, built)
    assert exit_codes(answered) == dict.fromkeys(built.tasks, 1)
    for entry in answered.values():
        assert "sys.exit" in str(entry["stderr"])
    assert workers and all(p.alive() for p in workers), "the Celery worker died"

    after = batch("echo_v0.0", encoding, ["still", "serving"])
    assert exit_codes(run(broker_stack, after)) == dict.fromkeys(after.tasks, 0)


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_script_that_fails_to_import_fails_its_jobs_only(broker_stack: Stack,
                                                         encoding: Encoding) -> None:
    built = batch("importfail_v0.0", encoding, ["a", "b"])
    answered = run(broker_stack, built)
    assert exit_codes(answered) == dict.fromkeys(built.tasks, 1)
    for entry in answered.values():
        assert "No module named 'amworker_no_such_dependency'" in str(entry["stderr"])

    other = batch("echo_v0.0", encoding, ["fine"])
    assert exit_codes(run(broker_stack, other)) == dict.fromkeys(other.tasks, 0)


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_unbalanced_quotes_fail_only_that_task(amworker_stack: Stack,
                                               encoding: Encoding) -> None:
    built = Batch("echo_v0.0", encoding)
    good = [built.add("fine"), built.add("also 'fine'")]
    bad = built.add('"unterminated')
    answered = run(amworker_stack, built)
    assert exit_codes(answered) == {good[0]: 0, good[1]: 0, bad: 1}
    assert answered[bad]["stdout"] == ""
    assert "arguments cannot be split" in str(answered[bad]["stderr"])
    assert answered[good[1]]["stdout"] == "echo_v0.0 also fine\n"


def test_the_chord_callback_itself_succeeds(broker_stack: Stack) -> None:
    # The shim answers a chord batch whether or not its callback worked (it
    # assembles the slices itself when the callback fails), so a broken
    # callback would go unseen in the answer: check its own outcome.
    built = batch("sliced_v0.0", Encoding.JSON, [f"job-{i}" for i in range(4)])
    answered = run(broker_stack, built)
    assert exit_codes(answered) == dict.fromkeys(built.tasks, 0)
    worker = next(p for p in broker_stack.procs if p.name.startswith("it-"))  # the Celery worker
    callback = f":{built.unique}:"

    def callback_lines() -> list[str]:
        return [line for line in worker.output().splitlines()
                if callback in line and ":collect]" in line]

    # Celery logs the outcome just after storing the result the shim woke on.
    wait_until(lambda: any("succeeded" in line for line in callback_lines()), timeout=30,
               what="the chord callback's 'succeeded' line")
    assert not [line for line in callback_lines() if "raised" in line], callback_lines()
