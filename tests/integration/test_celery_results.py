"""What a real worker stores in Celery's result store: nothing for a slice that succeeded.

The shim answers from each slice's own stored results (``amworker:outcome:``)
and never waits for Celery's copy, so ``amworker.run_slice`` stores none on
success (``ignore_result``); the chord callback's result is still stored,
and so is a failure Celery decides itself (tests/faults/test_scripts.py:
a pool process killed, a hard time limit). Every result Celery stores is
published on its key's channel, which is what this reads.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from harness.services import Stack, stack, wait_until
from tests.integration.ops import PubSubTap, run_batch, write_modules
from worker.contract import keys

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


class ResultTap(PubSubTap):
    """The task ids of every result Celery publishes, in Redis's order."""

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        super().__init__(client, prefix + "*")
        self.prefix = prefix

    @property
    def ids(self) -> list[str]:
        return [channel[len(self.prefix):] for channel, _ in list(self.messages)]


@pytest.fixture
def deployed(tmp_path: Path) -> Iterator[Stack]:
    modules = write_modules(tmp_path / "modules.ini", {"sliced_v0.0": "sliced", "echo_v0.0": "echo_args"})
    with stack(tmp_path, modules_file=modules) as running:
        running.celery_worker("results-it", concurrency=2)
        running.shim(functions=2)
        yield running


def test_slices_that_succeed_store_no_celery_result_and_the_callback_does(deployed: Stack) -> None:
    tap = ResultTap(deployed.redis, "celery-task-meta-")
    try:
        # One slice (no chord), then four slices and the chord's callback.
        single = run_batch(deployed.server, "echo_v0.0", "hello", tasks=3)
        chord = run_batch(deployed.server, "sliced_v0.0", tasks=8)
        assert [r.exit_code for r in single + chord] == [0] * 11
        # The callback runs after every slice reported, so its result comes
        # after any a slice of either batch would have published.
        wait_until(lambda: any(i.endswith(":collect") for i in tap.ids), timeout=30,
                   what="the chord callback's result", interval=0.05)
    finally:
        tap.close()
    assert len(tap.ids) == 1, f"Celery results published besides the callback's: {tap.ids}"
    assert tap.ids[0].startswith("sliced_v0.0:") and tap.ids[0] == keys.collect_id(
        tap.ids[0].removesuffix(":collect")), tap.ids
