"""Unit tests for what ``amworker check`` prints: never a password."""

from __future__ import annotations

import pytest

from worker.config.display import redact

PASSWORD = "s3cr3t-Pw"

URLS = [
    (f"redis://:{PASSWORD}@cache.example:6379/0", "redis://:**@cache.example:6379/0"),
    (f"redis://amworker:{PASSWORD}@cache.example:6379/0", "redis://amworker:**@cache.example:6379/0"),
    (f"rediss://:{PASSWORD}@cache.example:6380/1", "rediss://:**@cache.example:6380/1"),
    (f"amqp://guest:{PASSWORD}@rabbit.example:5672//", "amqp://guest:**@rabbit.example:5672//"),
    (f"amqps://guest:{PASSWORD}@rabbit.example:5671/vhost", "amqps://guest:**@rabbit.example:5671/vhost"),
    # An "@" in the password (percent-encoded or not) does not end it early.
    ("redis://:p%40ss@cache.example:6379/0", "redis://:**@cache.example:6379/0"),
    ("amqp://guest:p@ss@rabbit.example//", "amqp://guest:**@rabbit.example//"),
    # A failover list: every URL's password, not only the first one's.
    (f"amqp://a:{PASSWORD}@one//;amqp://b:{PASSWORD}@two//", "amqp://a:**@one//;amqp://b:**@two//"),
]


@pytest.mark.parametrize(("url", "shown"), URLS, ids=[u for u, _ in URLS])
def test_a_password_in_a_broker_url_never_shows(url: str, shown: str) -> None:
    printed = redact(url)

    assert printed == shown
    assert PASSWORD not in printed and "p@ss" not in printed and "p%40ss" not in printed


@pytest.mark.parametrize("url", ["redis://cache.example:6379/0", "amqp://rabbit.example//",
                                 "unix:///run/redis.sock"])
def test_a_url_without_a_password_shows_as_it_is(url: str) -> None:
    assert redact(url) == url


def test_the_shims_refusal_of_a_non_redis_backend_hides_its_password() -> None:
    from worker.batch.service import build_shim
    from worker.config import Settings
    from worker.errors import ConfigError

    settings = Settings(result_backend="db+postgresql://amworker:s3cret@db/results")
    with pytest.raises(ConfigError) as caught:
        build_shim(settings)
    assert "s3cret" not in str(caught.value)
    assert "amworker:**@db" in str(caught.value)
