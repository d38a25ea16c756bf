"""Unit tests for the ids and Redis keys derived from a batch."""

from __future__ import annotations

import hashlib

import pytest

from worker import keys

PAYLOAD = b'{"tasks": {}}'


def test_batch_token_is_function_and_unique() -> None:
    assert keys.batch_token("copy_v0.0", "7f3c-batch", PAYLOAD) == "copy_v0.0:7f3c-batch"


def test_batch_token_is_deterministic() -> None:
    assert keys.batch_token("f", "u", PAYLOAD) == keys.batch_token("f", "u", PAYLOAD)
    assert keys.batch_token("f", "", PAYLOAD) == keys.batch_token("f", "", bytes(PAYLOAD))


def test_batch_token_ignores_the_payload_when_unique_is_set() -> None:
    assert keys.batch_token("f", "u", b"one") == keys.batch_token("f", "u", b"two")


def test_batch_token_depends_on_the_function() -> None:
    assert keys.batch_token("a", "u", PAYLOAD) != keys.batch_token("b", "u", PAYLOAD)


def test_unique_is_stripped() -> None:
    assert keys.batch_token("f", "  u \n", PAYLOAD) == "f:u"


@pytest.mark.parametrize("unique", ["", "   "])
def test_empty_unique_falls_back_to_a_payload_digest(unique: str) -> None:
    token = keys.batch_token("f", unique, PAYLOAD)

    assert token == "f:" + hashlib.sha256(PAYLOAD).hexdigest()[:32]
    assert keys.batch_token("f", unique, PAYLOAD + b" ") != token


def test_derived_ids_are_stable_and_distinct() -> None:
    token = keys.batch_token("f", "u", PAYLOAD)

    ids = [
        keys.slice_id(token, 0, 3),
        keys.slice_id(token, 2, 3),
        keys.group_id(token),
        keys.collect_id(token),
    ]

    assert ids == ["f:u:slice-1-of-3", "f:u:slice-3-of-3", "f:u:group", "f:u:collect"]


def test_slice_id_depends_on_the_slice_count() -> None:
    assert keys.slice_id("t", 0, 2) != keys.slice_id("t", 0, 3)


def test_redis_keys_share_the_prefix_and_differ_by_kind() -> None:
    made = [keys.plan_key("t"), keys.claim_key("t"), keys.lease_key("t"), keys.answer_key("t")]

    assert made == ["amworker:plan:t", "amworker:claim:t", "amworker:lease:t", "amworker:answer:t"]
    assert len(set(made)) == len(made)
