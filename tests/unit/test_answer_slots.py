"""Unit tests of AnswerSlots: a slot is held exactly for one ``with`` block."""

from __future__ import annotations

import threading

import pytest

from worker.batch.runner import AnswerSlots


def test_a_slot_is_given_back_when_the_block_ends_even_by_an_exception() -> None:
    slots = AnswerSlots(1)
    with pytest.raises(RuntimeError), slots.held():
        raise RuntimeError("fetch failed")

    # Another thread gets the one slot: nothing leaked.
    got = threading.Event()

    def take() -> None:
        with slots.held():
            got.set()

    thread = threading.Thread(target=take, daemon=True)
    thread.start()
    assert got.wait(5), "the slot was not given back"
    thread.join(5)


def test_no_more_holders_than_slots() -> None:
    slots = AnswerSlots(2)
    inside, release = threading.Semaphore(0), threading.Event()
    most, lock, count = [0], threading.Lock(), [0]

    def hold() -> None:
        with slots.held():
            with lock:
                count[0] += 1
                most[0] = max(most[0], count[0])
            inside.release()
            release.wait(5)
            with lock:
                count[0] -= 1

    threads = [threading.Thread(target=hold, daemon=True) for _ in range(5)]
    for thread in threads:
        thread.start()
    assert inside.acquire(timeout=5) and inside.acquire(timeout=5)
    assert not inside.acquire(timeout=0.3), "a third lane got a slot"
    release.set()
    for thread in threads:
        thread.join(5)
    assert most[0] == 2
