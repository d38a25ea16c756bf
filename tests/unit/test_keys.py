"""Unit tests for the ids and Redis keys derived from a batch."""

from __future__ import annotations

import hashlib

import pytest

from worker.contract import keys

PAYLOAD = b'{"tasks": {}}'
UUIDS = ("b3c1", "a7e2")
DIGEST = hashlib.sha256(b"a7e2\nb3c1").hexdigest()[:12]


def test_batch_token_is_function_unique_and_task_digest() -> None:
    assert keys.batch_token("copy_v0.0", "7f3c-batch", PAYLOAD, UUIDS) == f"copy_v0.0:7f3c-batch:{DIGEST}"


def test_batch_token_is_deterministic() -> None:
    assert keys.batch_token("f", "u", PAYLOAD, UUIDS) == keys.batch_token("f", "u", PAYLOAD, UUIDS)
    assert keys.batch_token("f", "", PAYLOAD, UUIDS) == keys.batch_token("f", "", bytes(PAYLOAD), UUIDS)


def test_a_redelivery_is_the_same_batch_whatever_the_task_order() -> None:
    # Same unique, same tasks: gearmand handing the job back, which attaches.
    assert keys.batch_token("f", "u", b"one", UUIDS) == keys.batch_token("f", "u", b"two", UUIDS[::-1])


def test_a_reused_unique_with_other_tasks_is_a_new_batch() -> None:
    # The controller contract (docs/design.md): once answered, a unique may come again with other tasks.
    first = keys.batch_token("f", "u", PAYLOAD, UUIDS)

    assert keys.batch_token("f", "u", PAYLOAD, ("c9d0",)) != first
    assert keys.batch_token("f", "u", PAYLOAD, (*UUIDS, "c9d0")) != first


def test_batch_token_depends_on_the_function() -> None:
    assert keys.batch_token("a", "u", PAYLOAD, UUIDS) != keys.batch_token("b", "u", PAYLOAD, UUIDS)


def test_unique_is_stripped() -> None:
    assert keys.batch_token("f", "  u \n", PAYLOAD, UUIDS) == f"f:u:{DIGEST}"


@pytest.mark.parametrize("unique", ["", "   "])
def test_empty_unique_falls_back_to_a_payload_digest(unique: str) -> None:
    token = keys.batch_token("f", unique, PAYLOAD, UUIDS)

    assert token == "f:" + hashlib.sha256(PAYLOAD).hexdigest()[:32] + f":{DIGEST}"
    assert keys.batch_token("f", unique, PAYLOAD + b" ", UUIDS) != token


def test_derived_ids_are_stable_and_distinct() -> None:
    token = "f:u"

    ids = [
        keys.slice_id(token, 0, 3),
        keys.slice_id(token, 2, 3),
        keys.collect_id(token),
    ]

    assert ids == ["f:u:slice-1-of-3", "f:u:slice-3-of-3", "f:u:collect"]


def test_slice_id_depends_on_the_slice_count() -> None:
    assert keys.slice_id("t", 0, 2) != keys.slice_id("t", 0, 3)


def test_redis_keys_share_the_prefix_and_differ_by_kind() -> None:
    made = [keys.plan_key("t"), keys.claim_key("t"), keys.lease_key("t"), keys.answer_key("t"),
            keys.outcome_key("t")]

    assert made == ["amworker:plan:t", "amworker:claim:t", "amworker:lease:t", "amworker:answer:t",
                    "amworker:outcome:t"]
    assert len(set(made)) == len(made)


def test_unique_of_gives_back_the_controllers_batch_uuid() -> None:
    token = keys.batch_token("copy_v0.0", "a:b-uuid", b"{}", ["t1", "t2"])
    assert keys.unique_of(token, "copy_v0.0") == "a:b-uuid"


def test_legacy_token_is_what_a_shim_before_task_digests_used() -> None:
    # Such a shim keyed a batch by function:unique; a unique may hold colons.
    token = keys.batch_token("copy_v0.0", "7f3c:batch", PAYLOAD, UUIDS)
    assert keys.legacy_token(token) == "copy_v0.0:7f3c:batch"
