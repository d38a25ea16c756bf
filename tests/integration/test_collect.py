"""The chord callback (``amworker.collect``) on a real Redis, run as a pool process runs it.

Each case runs the task's body in a fresh interpreter whose settings point
at a private redis-server (the Celery app reads its settings once per
process).
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
client = app.backend.client
if "answered" in sys.argv:
    client.set(keys.answer_key(token), json.dumps({"at": 1.0, "slices": ids, "failed": []}))
client.config_resetstat()
kwargs = {"function": "sliced_v0.0", "batch": token, "slices": ids}
found = collect.run(**kwargs)
# The probe's own INFO and CONFIG RESETSTAT aside (Redis 7 names a
# subcommand "cmdstat_config|resetstat").
found["commands"] = sum(v.get("calls", 0) for k, v in client.info("commandstats").items()
                        if not k.startswith(("cmdstat_info", "cmdstat_config")))
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


def test_it_says_every_slice_reported_without_reading_redis(redis_url: str, tmp_path: Path) -> None:
    # Celery runs the callback only once every slice reported success, and
    # no slice stores a Celery result for it to read (run_slice): nothing to
    # fetch, whatever the batch.
    found = _collect(redis_url, tmp_path, "all")
    assert (found["function"], found["slices"]) == ("sliced_v0.0", 2), found
    assert found["commands"] == 0, found


def test_a_message_naming_many_slices_costs_redis_nothing(redis_url: str, tmp_path: Path) -> None:
    # Worst input: thousands of slices named. Before, each slice's envelope
    # was read back; now the message alone answers.
    found = _collect(redis_url, tmp_path, "many", slices=1200)
    assert found["slices"] == 1200
    assert found["commands"] == 0, found


@pytest.mark.parametrize(("case", "flags", "kept"), [
    ("drop-answered", ("answered",), False), ("drop-pending", (), True),
], ids=["answered first", "not answered yet"])
def test_the_callbacks_result_is_dropped_only_once_the_batch_is_answered(
        redis_url: str, tmp_path: Path, case: str, flags: tuple[str, ...], kept: bool) -> None:
    # Answered first (the lane woke on the last slice): the lane dropped the
    # batch's envelopes before this result was stored, so it drops its own.
    # Not answered yet: the lane's answer will drop it.
    found = _collect(redis_url, tmp_path, case, *flags, "stored")
    assert found["kept"] is kept, found
