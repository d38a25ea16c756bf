"""Taking turns: the order in which systems get their next run of a workload.

A shared host's speed moves by the minute. Sending one system's runs and the
other's alternately makes a slow minute fall on all of them, not on
whichever happened to have that minute to itself.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")


def rotated(items: Sequence[T], turn: int) -> list[T]:
    """``items`` in the order for turn number ``turn``: every ordering, one after another.

    Over each run of ``len(items)!`` turns every system goes first equally
    often and runs right after each other system equally often, so no one's
    after-work always lands on the same neighbour. (A plain rotation always
    puts amworker after in-process, say.)
    """
    orders = list(itertools.permutations(items))
    return list(orders[turn % len(orders)])


def take_turns(items: Sequence[T], rounds: int, measure: Callable[[T], None]) -> None:
    """``measure`` every item once a round, for ``rounds`` rounds, in :func:`rotated`'s orders."""
    for number in range(rounds):
        for item in rotated(items, number):
            measure(item)
