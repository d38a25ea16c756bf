"""Tests that need RabbitMQ fail clearly in CI when it is missing, and skip elsewhere."""

from __future__ import annotations

import pytest

from harness import services


@pytest.fixture
def no_rabbitmq(monkeypatch: pytest.MonkeyPatch) -> None:
    # A port nothing listens on stands in for a machine without RabbitMQ.
    monkeypatch.setattr(services, "RABBITMQ_PORT", services.free_port())


@pytest.mark.usefixtures("no_rabbitmq")
def test_missing_rabbitmq_fails_the_test_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=r"need RabbitMQ on 127\.0\.0\.1:\d+"):
        services.require_rabbitmq()


@pytest.mark.usefixtures("no_rabbitmq")
def test_missing_rabbitmq_skips_the_test_outside_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="install and start rabbitmq-server"):
        services.require_rabbitmq()
