"""Unit tests of the key lifetimes derived from the deadlines (worker.lifetimes)."""

from __future__ import annotations

from types import MappingProxyType

from worker import lifetimes
from worker.celery import celery_config
from worker.config import FunctionOptions, Settings

SETTINGS = Settings(queue_wait=600.0, time_limit=3600.0, lease_seconds=10.0)


def test_a_key_lives_queue_wait_plus_time_limit_plus_grace_and_margin() -> None:
    assert lifetimes.key_ttl(SETTINGS, None) == 600 + 3600 + 30 + 120
    assert lifetimes.key_ttl(SETTINGS, 60.0) == 600 + 60 + 30 + 120


def test_result_expires_caps_every_lifetime() -> None:
    capped = Settings(queue_wait=600.0, time_limit=3600.0, result_expires=1000.0)
    assert lifetimes.key_ttl(capped, None) == 1000
    assert lifetimes.redelivery_grace(Settings(result_expires=10.0)) == 10


def test_celery_keeps_results_for_the_slowest_function_only() -> None:
    slow = Settings(queue_wait=600.0, time_limit=3600.0,
                    functions=MappingProxyType({"slow": FunctionOptions(time_limit=7200.0)}))
    config = celery_config(slow)
    assert config["result_expires"] == 600 + 7200 + 30 + 120
    assert config["result_expires"] < 7 * 24 * 3600


def test_celery_stores_no_argv_or_kwargs_in_results() -> None:
    assert celery_config(SETTINGS)["result_extended"] is False


def test_a_lease_is_three_beats() -> None:
    assert lifetimes.lease_ttl(SETTINGS) == 30
