"""The broker settings: which URLs are accepted, and the Celery options each broker gets."""

from __future__ import annotations

import pytest

from worker.celery import celery_config
from worker.config import Settings, broker_kind
from worker.errors import ConfigError

AMQP = "amqp://guest:guest@rabbit:5672/archivematica"
REDIS_ONLY_TRANSPORT = {"visibility_timeout", "unacked_restore_interval",
                        "unacked_restore_throttle", "health_check_interval"}


def rabbit_settings(**env: str) -> Settings:
    return Settings.from_env({"AMWORKER_BROKER_URL": AMQP,
                              "AMWORKER_RESULT_BACKEND": "redis://redis:6379/0", **env})


@pytest.mark.parametrize(("url", "kind"), [
    ("redis://r:6379/0", "redis"), ("rediss://r:6380/0", "redis"),
    ("unix:///run/redis.sock", "redis"), (AMQP, "amqp"), ("AMQPS://r:5671//", "amqp"),
    ("pyamqp://r//", "amqp"),
])
def test_broker_kind_follows_the_scheme(url: str, kind: str) -> None:
    assert broker_kind(url) == kind


@pytest.mark.parametrize("url", ["sqs://key:secret@", "memory://", "kafka://k:9092"])
def test_other_celery_transports_are_refused_naming_the_variable(url: str) -> None:
    with pytest.raises(ConfigError, match=r"AMWORKER_BROKER_URL=.*RabbitMQ \(amqp://"):
        Settings.from_env({"AMWORKER_BROKER_URL": url})


def test_rabbitmq_broker_needs_a_redis_result_backend() -> None:
    with pytest.raises(ConfigError, match="set AMWORKER_RESULT_BACKEND to a redis:// URL"):
        Settings.from_env({"AMWORKER_BROKER_URL": AMQP})


def test_rabbitmq_broker_keeps_results_in_redis() -> None:
    settings = rabbit_settings()
    assert settings.broker_is_amqp
    assert settings.broker_url == AMQP
    assert settings.result_backend == "redis://redis:6379/0"
    assert not Settings.from_env({}).broker_is_amqp


def test_redis_broker_acks_on_start_without_prefetch() -> None:
    conf = celery_config(Settings.from_env({"AMWORKER_VISIBILITY_TIMEOUT": "40"}))
    assert conf["task_acks_late"] is False
    assert conf["worker_disable_prefetch"] is True
    assert conf["worker_prefetch_multiplier"] == 1
    assert conf["broker_transport_options"]["visibility_timeout"] == 40
    assert conf["broker_transport_options"]["unacked_restore_interval"] == 10
    assert "task_default_queue_type" not in conf


def test_rabbitmq_broker_acks_late_in_quorum_queues() -> None:
    conf = celery_config(rabbit_settings(AMWORKER_VISIBILITY_TIMEOUT="40"))
    assert conf["broker_url"] == AMQP
    # Redis-only transport options are not handed to the amqp transport.
    assert not REDIS_ONLY_TRANSPORT & set(conf["broker_transport_options"])
    assert conf["broker_transport_options"] == {"confirm_publish": True}
    assert conf["task_acks_late"] is True
    assert conf["task_reject_on_worker_lost"] is False
    assert conf["worker_cancel_long_running_tasks_on_connection_loss"] is False
    assert conf["worker_prefetch_multiplier"] == 1
    # Celery ignores it on amqp, with a warning at every start: not set.
    assert conf["worker_disable_prefetch"] is False
    assert conf["task_default_queue_type"] == "quorum"
    assert conf["task_create_missing_queue_type"] == "quorum"
    assert conf["worker_detect_quorum_queues"] is True


@pytest.mark.parametrize("settings", [Settings.from_env({}), rabbit_settings()], ids=["redis", "amqp"])
def test_flower_gets_every_event_but_no_started_result_is_stored(settings: Settings) -> None:
    conf = celery_config(settings)
    # queued -> started -> done in Flower come from these events ...
    assert conf["worker_send_task_events"] is True
    assert conf["task_send_sent_event"] is True
    # ... so a STARTED result, which nobody reads, is not written before each slice.
    assert conf["task_track_started"] is False
