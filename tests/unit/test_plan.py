"""Unit tests for batch planning: how many slices, and which jobs go where."""

from __future__ import annotations

import collections
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker.contract.plan import JobSpec, slice_count, split
from worker.contract.records import RecordError


def specs(n: int) -> list[JobSpec]:
    return [JobSpec(uuid=f"task-{i}", argv=(str(i),), wants_output=i % 2 == 0) for i in range(n)]


# --- slice_count -------------------------------------------------------------


@pytest.mark.parametrize(
    ("wanted", "jobs", "expected"),
    [(1, 128, 1), (4, 128, 4), (4, 3, 3), (4, 4, 4), (128, 1, 1), (0, 10, 1), (-3, 10, 1), (5, 0, 1)],
)
def test_slice_count_is_wanted_capped_by_jobs_and_at_least_one(wanted: int, jobs: int, expected: int) -> None:
    assert slice_count(wanted, jobs) == expected


@given(wanted=st.integers(min_value=1, max_value=500), jobs=st.integers(min_value=1, max_value=500))
def test_slice_count_is_min_of_wanted_and_jobs(wanted: int, jobs: int) -> None:
    assert slice_count(wanted, jobs) == min(wanted, jobs)


# --- split -------------------------------------------------------------------


def test_split_keeps_order_and_puts_the_extra_jobs_first() -> None:
    slices = split(specs(10), 4)

    assert [[s.uuid for s in part] for part in slices] == [
        ["task-0", "task-1", "task-2"],
        ["task-3", "task-4", "task-5"],
        ["task-6", "task-7"],
        ["task-8", "task-9"],
    ]


def test_split_into_one_is_the_whole_batch_as_a_new_list() -> None:
    jobs = specs(5)

    (only,) = split(jobs, 1)

    assert only == jobs and only is not jobs


def test_split_of_nothing_is_empty_slices() -> None:
    assert split([], 3) == [[], [], []]


@pytest.mark.parametrize("count", [0, -1])
def test_split_refuses_fewer_than_one_slice(count: int) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        split(specs(3), count)


@given(jobs=st.integers(min_value=0, max_value=600), wanted=st.integers(min_value=1, max_value=64))
def test_split_properties(jobs: int, wanted: int) -> None:
    batch = specs(jobs)
    count = slice_count(wanted, jobs)

    slices = split(batch, count)

    assert len(slices) == count
    sizes = [len(s) for s in slices]
    assert max(sizes) - min(sizes) <= 1
    assert sizes == sorted(sizes, reverse=True)  # larger slices first
    assert [job for part in slices for job in part] == batch  # every job once, in order
    if jobs:
        assert all(sizes)  # with k <= jobs no slice is empty
    assert split(batch, count) == slices  # deterministic: a re-delivery plans the same


# --- JobSpec -------------------------------------------------------------------


@given(
    uuid=st.text(),
    argv=st.lists(st.text()).map(tuple),
    wants_output=st.booleans(),
)
def test_jobspec_survives_a_json_round_trip(uuid: str, argv: tuple[str, ...], wants_output: bool) -> None:
    spec = JobSpec(uuid=uuid, argv=argv, wants_output=wants_output)

    assert JobSpec.from_json(json.loads(json.dumps(spec.to_json()))) == spec


def test_jobspec_json_form() -> None:
    spec = JobSpec(uuid="u", argv=("a", "b c"), wants_output=False)

    assert spec.to_json() == {"uuid": "u", "argv": ["a", "b c"], "wants_output": False}


def test_jobspec_refuses_an_argv_that_is_not_a_list() -> None:
    with pytest.raises(RecordError, match="'argv' must be list"):
        JobSpec.from_json({"uuid": "u", "argv": "a b", "wants_output": True})


_ANY_JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                         lambda inner: st.lists(inner, max_size=3), max_leaves=6)


@given(
    uuid=st.text(max_size=5) | _ANY_JSON,
    argv=st.lists(st.text(max_size=5) | _ANY_JSON, max_size=4) | _ANY_JSON,
    wants_output=st.booleans() | _ANY_JSON,
    drop=st.sampled_from([None, "uuid", "argv", "wants_output"]),
)
def test_jobspec_accepts_exactly_the_well_formed_jobs(
        uuid: object, argv: object, wants_output: object, drop: str | None) -> None:
    # The fast path for well-formed jobs and the checks that name a problem
    # must agree: the same jobs accepted, as the same specs, the rest refused.
    data = {"uuid": uuid, "argv": argv, "wants_output": wants_output}
    if drop:
        del data[drop]
    well_formed = (drop is None and isinstance(uuid, str) and isinstance(wants_output, bool)
                   and isinstance(argv, list) and all(isinstance(arg, str) for arg in argv))
    if well_formed:
        assert isinstance(argv, list)
        assert JobSpec.from_json(data) == JobSpec(uuid=str(uuid), argv=tuple(argv),
                                                  wants_output=bool(wants_output))
    else:
        with pytest.raises(RecordError):
            JobSpec.from_json(data)


class _Text(str):
    """A str subclass: not what JSON decodes to, still a string."""


@pytest.mark.parametrize("data", [
    collections.OrderedDict(uuid="u", argv=["a"], wants_output=True),
    {"uuid": _Text("u"), "argv": [_Text("a")], "wants_output": True},
    {"uuid": "u", "argv": ["a"], "wants_output": True, "extra": 1},
], ids=["ordered-dict", "str-subclasses", "extra-key"])
def test_jobspec_reads_other_mappings_and_strings_the_same_way(data: dict[str, object]) -> None:
    spec = JobSpec.from_json(data)
    assert spec == JobSpec(uuid="u", argv=("a",), wants_output=True)
    assert type(spec.argv) is tuple and type(spec.wants_output) is bool


def test_a_refused_job_names_itself_and_its_field() -> None:
    with pytest.raises(RecordError, match=r"job 'u-1': field 'argv' must be str, got int"):
        JobSpec.from_json({"uuid": "u-1", "argv": ["a", 2], "wants_output": True})
    with pytest.raises(RecordError, match=r"job 'u-2': field 'wants_output' must be bool"):
        JobSpec.from_json({"uuid": "u-2", "argv": [], "wants_output": 1})


def test_jobspec_is_frozen() -> None:
    spec = specs(1)[0]

    with pytest.raises(AttributeError):
        spec.uuid = "other"  # type: ignore[misc]
