"""Unit tests of the key lifetimes derived from the deadlines (worker.contract.lifetimes)."""

from __future__ import annotations

from types import MappingProxyType

from worker.celery import celery_config
from worker.config import FunctionOptions, Settings
from worker.contract import lifetimes

SETTINGS = Settings(queue_wait=600.0, time_limit=3600.0, lease_seconds=10.0)


def test_a_key_lives_queue_wait_plus_time_limit_plus_grace_and_margin() -> None:
    assert lifetimes.key_ttl(SETTINGS, None) == 600 + 3600 + 30 + 120
    assert lifetimes.key_ttl(SETTINGS, 60.0) == 600 + 60 + 30 + 120


def test_result_expires_caps_every_lifetime() -> None:
    capped = Settings(queue_wait=600.0, time_limit=3600.0, result_expires=1000.0)
    assert lifetimes.key_ttl(capped, None) == 1000
    assert lifetimes.redelivery_grace(Settings(result_expires=10.0), None) == 10


def test_an_answered_batch_keeps_its_results_for_a_whole_queue_wait_by_default() -> None:
    # A job gearmand hands back (the shim died before gearmand read the
    # answer) waits in its queue like any job; with a fixed minute its real
    # results were gone and every task was answered "answered before".
    assert lifetimes.redelivery_grace(SETTINGS, None) == 600
    assert lifetimes.redelivery_grace(Settings.from_env({}), None) == 3600


def test_the_redelivery_grace_is_a_setting_bounded_by_the_key_lifetime() -> None:
    assert lifetimes.redelivery_grace(Settings(redelivery_grace=90.0), None) == 90
    short = Settings(queue_wait=60.0, time_limit=60.0, redelivery_grace=10_000.0)
    assert lifetimes.redelivery_grace(short, None) == lifetimes.key_ttl(short, None)


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
