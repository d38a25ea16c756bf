"""The chord callback (``amworker.collect``) on a real Redis, run as a pool process runs it.

Each case runs the task's body in a fresh interpreter whose settings point
at a private redis-server (the Celery app reads its settings once per
process), with the slices' envelopes stored by Celery's own backend.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.services import ROOT

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

PROBE = """
import json, sys
from worker.contract import keys
from worker.tasks import app, collect
token = "sliced_v0.0:" + sys.argv[1] + ":digest"
count = int(sys.argv[2])
ids = [keys.slice_id(token, i, count) for i in range(count)]
for index, slice_id in enumerate(ids):
    app.backend.store_result(slice_id, {"index": index, "count": count, "tasks": 3}, "SUCCESS")
client = app.backend.client
client.config_resetstat()
if "gone" in sys.argv:
    client.delete(app.backend.get_key_for_task(ids[1]))
if "answered" in sys.argv:
    client.set(keys.answer_key(token), json.dumps({"at": 1.0, "slices": ids, "failed": []}))
kwargs = {"function": "sliced_v0.0", "batch": token, "slices": ids}
try:
    found = collect.run(**kwargs)
except Exception as exc:
    found = {"raised": type(exc).__name__, "why": str(exc)}
found["mget_calls"] = client.info("commandstats").get("cmdstat_mget", {}).get("calls", 0)
if "stored" in sys.argv:
    # What Celery does after the body returns: store the result, then on_success.
    collect_id = keys.collect_id(token)
    app.backend.store_result(collect_id, dict(found), "SUCCESS")
    collect.on_success(dict(found), collect_id, (), kwargs)
    found["kept"] = bool(client.exists(app.backend.get_key_for_task(collect_id)))
print(json.dumps(found))
"""


def _collect(redis_url: str, tmp_path: Path, case: str, *flags: str, slices: int = 2) -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AMWORKER_", "DJANGO_"))}
    env.update({"PYTHONPATH": str(ROOT), "AMWORKER_BROKER_URL": redis_url,
                "AMWORKER_RESULT_BACKEND": redis_url, "AMWORKER_LOG_LEVEL": "WARNING",
                "AMWORKER_DATABASE_URL": f"sqlite:///{tmp_path}/db.sqlite3"})
    done = subprocess.run([sys.executable, "-c", PROBE, case, str(slices), *flags], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=50, check=True)
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_it_counts_every_slices_tasks(redis_url: str, tmp_path: Path) -> None:
    assert _collect(redis_url, tmp_path, "all")["tasks"] == 6


def test_a_message_naming_many_slices_reads_them_in_bounded_commands(
        redis_url: str, tmp_path: Path) -> None:
    # Worst input: thousands of slices. Each MGET stays at MGET_CHUNK keys.
    found = _collect(redis_url, tmp_path, "many", slices=1200)
    assert found["tasks"] == 3600
    assert found["mget_calls"] == 3  # 512 + 512 + 176


def test_a_slice_envelope_missing_before_the_answer_is_an_error(redis_url: str, tmp_path: Path) -> None:
    found = _collect(redis_url, tmp_path, "missing", "gone")
    assert found["raised"] == "RecordError", found


@pytest.mark.parametrize(("case", "flags", "kept"), [
    ("drop-answered", ("gone", "answered"), False), ("drop-pending", (), True),
], ids=["answered first", "not answered yet"])
def test_the_callbacks_result_is_dropped_only_once_the_batch_is_answered(
        redis_url: str, tmp_path: Path, case: str, flags: tuple[str, ...], kept: bool) -> None:
    # Answered first (the lane woke on the last slice): the lane dropped the
    # batch's envelopes before this result was stored, so it drops its own.
    # Not answered yet: the lane's answer will drop it.
    found = _collect(redis_url, tmp_path, case, *flags, "stored")
    assert found["kept"] is kept, found


def test_envelopes_the_shim_tidied_away_after_answering_are_no_error(
        redis_url: str, tmp_path: Path) -> None:
    # A lane polling between the last slice and this callback answers from
    # the slices and drops their envelopes; the callback then finds them gone.
    found = _collect(redis_url, tmp_path, "tidied", "gone", "answered")
    assert found.get("raised") is None, found
    assert found["tasks"] == 3
