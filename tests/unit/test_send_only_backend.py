"""The shim's Celery result backend: one for every lane, and it subscribes to nothing.

A fresh Celery app per test, so the process-wide ``worker.celery.app`` is
left as it was. Building a backend opens no connection, so no Redis is needed.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
from celery import Celery

from worker.batch.service import SendOnlyRedisBackend, use_send_only_backend

pytestmark = pytest.mark.timeout(30)

URL = "redis://127.0.0.1:1/0"


def _app() -> Celery:
    app = Celery("send-only-test", set_as_current=False, backend=URL)
    use_send_only_backend(app, URL)
    return app


def _backend_seen_by_another_thread(app: Celery) -> object:
    seen: list[object] = []
    thread = threading.Thread(target=lambda: seen.append(app.backend))
    thread.start()
    thread.join(10)
    assert seen, "the other thread never got a backend"
    return seen[0]


def test_every_lane_shares_one_backend() -> None:
    app = _app()
    mine = app.backend
    assert isinstance(mine, SendOnlyRedisBackend)
    # Celery keeps a backend per thread unless it says it is thread-safe:
    # then a lane's first chord would open a Redis connection of its own.
    assert _backend_seen_by_another_thread(app) is mine


def test_a_stock_redis_backend_is_per_thread_which_is_what_the_shim_avoids() -> None:
    # The control: without the send-only class, Celery hands each thread its own.
    app = Celery("stock-backend-test", set_as_current=False, backend=URL)
    assert _backend_seen_by_another_thread(app) is not app.backend


def test_sending_subscribes_to_nothing_and_keeps_nothing_pending() -> None:
    app = _app()
    backend: Any = app.backend
    result = app.AsyncResult("some-slice-id")
    backend.on_task_call(producer=None, task_id="some-slice-id")
    assert backend.add_pending_result(result) is result
    # Celery's own would now hold the result (and its channel) until collected.
    assert not backend._pending_results.concrete
    assert not backend._pending_results.weak
