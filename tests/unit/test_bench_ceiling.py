"""bench.ceiling: W3's work in bare processes, one against several."""

from __future__ import annotations

import pytest

from bench import ceiling

pytestmark = pytest.mark.timeout(60)


def test_shares_are_contiguous_and_as_even_as_slices() -> None:
    assert ceiling.shares(16, 2) == [8, 8]
    assert ceiling.shares(10, 4) == [3, 3, 2, 2]
    assert ceiling.shares(1, 2) == [1]  # no process is handed nothing to time
    assert sum(ceiling.shares(1000, 7)) == 1000


def test_measure_times_every_run_in_one_process_and_shared_out() -> None:
    measured = ceiling.measure(jobs=4, mebibytes=2, runs=3, processes=2)

    assert set(measured) == {"one", "split"}
    assert len(measured["one"]) == len(measured["split"]) == 3
    assert all(seconds > 0 for seconds in measured["one"] + measured["split"])
