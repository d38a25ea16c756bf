"""W9's Celery floor: the memory of a bare Celery worker, with no amworker in it.

W9's target puts amworker's whole tree (shim, Celery's main process, its
pool processes) within 1.2x of the stock worker's. This measures what the
brief's executor costs before amworker adds anything: a Celery app of one
task, on the run's own Redis as broker and result backend, its prefork pool
as large as amworker's, sampled like every W9 system (:mod:`bench.memory`)
while it runs slices of W2's size. If this alone is over 1.2x the stock
tree, no amworker on Celery's prefork pool can meet the target.
"""

from __future__ import annotations

import logging
import sys
import uuid
from pathlib import Path
from typing import Any

from celery import Celery

from bench import memory, systems
from harness.services import Proc, spawn, wait_until

log = logging.getLogger("bench")

#: The whole app: a task returning per job what a slice returns, no Django, no amworker.
APP_SOURCE = '''\
import os

from celery import Celery

app = Celery("celery_floor", broker=os.environ["FLOOR_URL"], backend=os.environ["FLOOR_URL"])
app.conf.update(task_serializer="json", result_serializer="json", accept_content=["json"],
                worker_hijack_root_logger=False)


@app.task(name="celery_floor.run")
def run(jobs):
    return {job["uuid"]: {"exit_code": 0, "stdout": "", "stderr": ""} for job in jobs}
'''

MODULE = "celery_floor_app"
#: The Redis database the floor uses on the run's Redis (amworker's keys live in 0).
DATABASE = 9


def measure(redis_port: int, workdir: Path, *, rounds: int, slices: int, jobs: int) -> dict[str, Any]:
    """The floor's peak PSS and RSS over ``rounds`` of ``slices`` tasks of ``jobs`` jobs each."""
    url = f"redis://127.0.0.1:{redis_port}/{DATABASE}"
    (workdir / f"{MODULE}.py").write_text(APP_SOURCE)
    client = Celery(MODULE, broker=url, backend=url)
    client.conf.update(task_serializer="json", result_serializer="json", accept_content=["json"])
    worker = _start(url, workdir)
    try:
        wait_until(lambda: _answers(client, worker), timeout=60, what="the bare Celery worker",
                   interval=0.2)
        for _ in range(2):  # warm, as every W9 system is before it is sampled
            _round(client, slices, jobs)
        with memory.Sampler({"celery": worker.popen.pid}) as sampler:
            for _ in range(rounds):
                _round(client, slices, jobs)
        return sampler.result()
    finally:
        systems.stop([worker])
        client.close()


def _start(url: str, workdir: Path) -> Proc:
    argv = [sys.executable, "-m", "celery", "-A", MODULE, "worker", "--pool", "prefork",
            "--concurrency", str(systems.cores()), "--without-mingle", "--without-gossip",
            "--loglevel", "WARNING"]
    env = {"PATH": "/usr/bin:/bin", "FLOOR_URL": url, "PYTHONPATH": str(workdir)}
    return spawn("celery-floor", argv, env=env, workdir=workdir, cwd=workdir)


def _answers(client: Celery, worker: Proc) -> bool:
    if not worker.alive():
        raise RuntimeError(f"the bare Celery worker died:\n{worker.output()[-2000:]}")
    try:
        client.send_task("celery_floor.run", args=[[]]).get(timeout=1)
    except Exception:  # noqa: BLE001 - not up yet: the wait tries again
        return False
    return True


def _round(client: Celery, slices: int, jobs: int) -> None:
    """``slices`` tasks in flight at once, each answered in full."""
    sent = []
    for _ in range(slices):
        batch = [{"uuid": str(uuid.uuid4()), "argv": ["noop", "x"]} for _ in range(jobs)]
        sent.append((batch, client.send_task("celery_floor.run", args=[batch])))
    for batch, result in sent:
        answer = result.get(timeout=60)
        if len(answer) != len(batch):
            raise RuntimeError(f"the bare Celery worker answered {len(answer)} of {len(batch)} jobs")
