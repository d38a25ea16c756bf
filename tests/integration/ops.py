"""Helpers of the operations tests (metrics, Flower, queues, checks).

Each test module starts its own small stack with a modules file of its own,
written here, so it does not depend on the shared test modules file.
"""

from __future__ import annotations

import json
import threading
import urllib.request
from collections.abc import Mapping
from pathlib import Path

import redis
from prometheus_client.parser import text_string_to_metric_families

from worker.cli.submit import SmokeTask, submit


def write_modules(path: Path, functions: Mapping[str, str]) -> Path:
    """A modules file in Archivematica's format: ``function = module`` lines."""
    lines = ["[supportedBatchCommands]", *(f"{f} = {m}" for f, m in functions.items())]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def http_get(url: str, timeout: float = 10.0) -> bytes:
    """The body of a GET (raises on a non-2xx status)."""
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - loopback only
        return bytes(response.read())


def http_json(url: str) -> object:
    """A GET's body, decoded as JSON."""
    return json.loads(http_get(url))


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``/metrics`` on the loopback port: (sample name, sorted labels) -> value."""
    text = http_get(f"http://127.0.0.1:{port}/metrics").decode()
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: Mapping[tuple[str, tuple[tuple[str, str], ...]], float], name: str,
          **labels: str) -> float:
    """One sample's value, 0 when absent (a labelled counter appears on first use)."""
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def run_batch(server: str, function: str, arguments: str = "", *, tasks: int = 1,
              timeout: float = 120.0) -> list[SmokeTask]:
    """Submit one batch as the controller would and return its answers."""
    results = submit(server, function, arguments, count=tasks, wants_output=True,
                     timeout=timeout)
    assert results is not None, f"{function}: WORK_FAIL"
    return results


class PubSubTap:
    """Every message published on the channels matching ``pattern``, in Redis's order.

    ``messages`` holds (channel, data) pairs, appended by a thread of its own
    from the moment the tap is made until :meth:`close`.
    """

    def __init__(self, client: redis.Redis, pattern: str) -> None:
        self.messages: list[tuple[str, bytes]] = []
        # Kept: redis-py closes a client's connections, the pub/sub one too,
        # when the client is collected.
        self._client = client
        self._pubsub = client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
        self._pubsub.psubscribe(pattern)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            message = self._pubsub.get_message(timeout=0.1)
            if message is not None and message["type"] == "pmessage":
                self.messages.append((message["channel"].decode(), message["data"]))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._pubsub.close()
