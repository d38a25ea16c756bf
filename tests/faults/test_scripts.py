"""Fault 7: a script misbehaves. Each case fails its own jobs with a clear cause,
and the worker lives on."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest

from harness.controller import make_tasks, submit, submit_many
from harness.services import Stack
from tests.faults.helpers import alive, assert_all_answered, config_file, failed_with

pytestmark = [pytest.mark.faults, pytest.mark.timeout(300)]

CONFIG = """
[functions."loopforever_v0.0"]
soft_time_limit = 2
time_limit = 5

[functions."bigoutput_v0.0"]
max_output_bytes = 1048576
"""

#: name -> (function, arguments)
CASES = {
    "raises": ("raises_v0.0", ""),
    "sys.exit(0)": ("sysexit_v0.0", "0"),
    "sys.exit(3)": ("sysexit_v0.0", "3"),
    "os._exit(3)": ("osexit_v0.0", "3"),
    "segfault": ("segfault_v0.0", ""),
    "loops past soft limit": ("loopforever_v0.0", ""),
    "loops past hard limit": ("loopforever_v0.0", "stubborn"),
    "200 MB of output": ("bigoutput_v0.0", "200"),
    "invalid UTF-8": ("badtext_v0.0", ""),
    "stray prints": ("strayprints_v0.0", ""),
    "leaves a child": ("leaveschild_v0.0", ""),
}


def test_misbehaving_scripts_fail_their_own_jobs(faststack: Stack, tmp_path: Path) -> None:
    faststack.env["AMWORKER_CONFIG_FILE"] = str(config_file(tmp_path, CONFIG))
    # A dead pool process is reported by its Celery worker (with the exit
    # code or signal) within a few seconds; a lease that lapses sooner than
    # that, on a loaded machine, would answer the vaguer "stopped renewing its
    # lease" first. Whole-worker deaths, where the lease is the only signal,
    # are tests/faults/test_worker_death.py's.
    faststack.env["AMWORKER_LEASE_SECONDS"] = "4"
    worker = faststack.celery_worker("w1", concurrency=2)
    faststack.shim()
    batches = {name: (fn, make_tasks([args]), str(uuid.uuid4())) for name, (fn, args) in CASES.items()}
    answers = dict(zip(batches, submit_many(faststack.server, list(batches.values()), timeout=240),
                       strict=True))
    for answer in answers.values():
        assert_all_answered(answer)

    def one(name: str) -> tuple[int, str, str]:
        answer = answers[name]
        (task_id,) = answer.tasks
        return answer.exit_code(task_id), answer.stdout(task_id), answer.stderr(task_id)

    def failed(name: str, cause: str | None = None) -> bool:
        answer = answers[name]
        (task_id,) = answer.tasks
        if cause is not None:
            return failed_with(answer, task_id, cause)
        return answer.exit_code(task_id) == 1

    code, _, err = one("raises")
    assert code == 1 and "RuntimeError: boom from raises_v0.0" in err
    for name in ("sys.exit(0)", "sys.exit(3)"):
        code, _, err = one(name)
        assert code == 1 and "called sys.exit" in err, (name, err)
    # os._exit and a segfault end the pool process: worker lost, with the reason.
    code, _, err = one("os._exit(3)")
    assert failed("os._exit(3)", "worker lost") and "exitcode 3" in err, err
    code, _, err = one("segfault")
    assert failed("segfault", "worker lost") and "SIGSEGV" in err, err
    assert "the pool process running this slice died" in err
    # Per-script soft and hard limits, from the TOML config.
    code, _, err = one("loops past soft limit")
    assert code == 1 and "time limit" in err and "soft time limit" in err, err
    assert failed("loops past hard limit", "time limit"), one("loops past hard limit")
    assert "killed by its hard time limit" in one("loops past hard limit")[2]
    # Output capped at 1 MB with a visible marker; memory stays bounded.
    code, out, err = one("200 MB of output")
    assert code == 0
    assert len(out.encode()) < 1024 * 1024 + 200
    assert re.search(r"\[amworker: output truncated after \d+ bytes; \d+ more bytes dropped\]", out)
    peak = re.search(r"peak (\d+) kB", err)
    assert peak, err
    peak_kb = int(peak.group(1))
    assert peak_kb < 200 * 1024, f"pool process peaked at {peak_kb} kB"
    # Invalid UTF-8 and lone surrogates come back as valid text.
    code, out, err = one("invalid UTF-8")
    assert code == 0 and "invalid" in out and "surrogate" in out and "surrogate" in err
    (out + err).encode("utf-8")  # strict: no surrogate survived
    assert "\ufffd" in out and "\ufffd" in err
    # Stray prints go to the Celery worker's log, not into the job.
    code, out, _ = one("stray prints")
    (task_id,) = answers["stray prints"].tasks
    assert code == 0 and out == "through the job\n"
    assert f"STRAY-STDOUT {task_id}" in worker.output()
    assert f"STRAY-STDERR {task_id}" in worker.output()
    # A leftover child is killed and reaped, and the job says so.
    code, out, err = one("leaves a child")
    pid = re.search(r"child=(\d+)", out)
    assert pid, out
    child = int(pid.group(1))
    assert code == 1 and "still running" in err and not alive(child)

    # The worker lives on and still serves.
    assert worker.alive()
    again = submit(faststack.server, "echo_v0.0", make_tasks(["hello"]), timeout=60)
    assert_all_answered(again)
    assert all(again.exit_code(t) == 0 for t in again.tasks)
    print("peak RSS of the 200 MB writer:", peak_kb, "kB")


def test_output_outside_the_job_api_reaches_the_log_bounded(faststack: Stack) -> None:
    worker = faststack.celery_worker("w1", concurrency=1)
    faststack.shim()
    warm = make_tasks([""])
    assert submit(faststack.server, "echo_v0.0", warm).exit_code(next(iter(warm))) == 0
    before = worker.log.stat().st_size

    # 5 ways x 8 MB = 40 MB of stray output, two of them as single 8 MB lines.
    tasks = make_tasks(["8"])
    answer = submit(faststack.server, "floodslogs_v0.0", tasks, timeout=120)

    (task_id,) = tasks
    assert answer.exit_code(task_id) == 0, answer.results
    assert answer.stdout(task_id) == "result\n"
    assert "amworker" not in answer.stderr(task_id)
    grown = worker.log.read_bytes()[before:]
    print(f"40 MB of stray output grew the worker's log by {len(grown)} bytes")
    # The default AMWORKER_MAX_LOG_BYTES (64 KiB) counts each record's prefix
    # too; the slack is the two markers and the slice's own log lines.
    assert len(grown) < 64 * 1024 + 8 * 1024, len(grown)
    assert max(len(line) for line in grown.splitlines()) < 4096 + 512
    text = grown.decode("utf-8", "replace")
    assert "amworker: stray output truncated: this slice's output outside the Job API" in text
    assert re.search(r"amworker: stray output truncated: \d{8} byte\(s\)", text), text[-2000:]
    assert "ppppp" in text  # what fits is logged, cut into pieces
    assert worker.alive()
