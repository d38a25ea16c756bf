"""bench.turns.rotated: the order systems take their turns in."""

from __future__ import annotations

import math
from collections import Counter

import pytest

from bench.turns import rotated

pytestmark = pytest.mark.timeout(10)


@pytest.mark.parametrize("systems", [["floor", "inprocess", "amworker"], ["redis", "rabbitmq"]])
def test_each_system_goes_first_and_follows_each_other_equally_often(systems: list[str]) -> None:
    cycle = math.factorial(len(systems))
    turns = [rotated(systems, number) for number in range(cycle * 3)]

    assert all(sorted(order) == sorted(systems) for order in turns)
    assert turns[:cycle] == turns[cycle:2 * cycle]
    firsts = Counter(order[0] for order in turns[:cycle])
    assert set(firsts.values()) == {cycle // len(systems)}
    # Who runs right before whom inside a turn: every ordered pair alike.
    pairs = Counter(pair for order in turns[:cycle] for pair in zip(order, order[1:], strict=False))
    assert len(pairs) == len(systems) * (len(systems) - 1)
    assert len(set(pairs.values())) == 1


def test_take_turns_measures_every_system_once_a_round_in_the_rotated_orders() -> None:
    from bench.turns import take_turns

    seen: list[str] = []
    take_turns(["a", "b", "c"], 8, seen.append)

    assert seen == [system for number in range(8) for system in rotated(["a", "b", "c"], number)]
    assert Counter(seen) == {"a": 8, "b": 8, "c": 8}
