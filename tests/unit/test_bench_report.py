"""How the results table prints a ratio beside its target."""

from __future__ import annotations

import pytest

from bench import report, report_more
from bench.report_more import bar_text, times

pytestmark = pytest.mark.timeout(30)


def test_a_ratio_far_from_its_target_has_two_decimals() -> None:
    assert times(1.9712, 2.5) == "1.97×"
    assert times(0.38, 0.45) == "0.38×"
    assert times(2.3, None) == "2.30×"


def test_a_ratio_just_under_its_target_never_prints_as_the_target() -> None:
    # The committed run of 20:58 had W2 at 0.4465x against >= 0.45x: it
    # printed "0.45x" beside MISSED.
    assert times(0.4464, 0.45) == "0.446×"
    assert times(1.8496, 1.85) == "1.8496×"
    assert times(1.9004, 1.9) == "1.9004×"
    assert times(0.44996, 0.45) == "0.44996×"
    assert times(1.8999999999, 1.9) == "1.900000×"  # six decimals at most


def test_a_ratio_equal_to_its_target_prints_as_the_target() -> None:
    assert times(0.45, 0.45) == "0.45×"


def test_the_w2_row_shows_a_near_miss_as_a_miss() -> None:
    raw = {"sizes": {"w2_batches": 16, "w2_tasks": 128, "w2_rounds": 5}, "errors": {},
           "w2": {"amworker": [12_626.0], "inprocess": [28_281.0], "floor": [136_466.0]}}

    row = report._w2(raw)

    assert row.ratio.startswith("0.446× in-process")
    assert row.verdict == "**MISSED**"


def test_a_bar_label_has_three_digits_and_thousands_in_full() -> None:
    assert [bar_text(v, None) for v in (20.53, 2.434, 0.9374, 111.2)] == \
        ["20.5", "2.43", "0.937", "111"]
    assert bar_text(9033.4, 20_000) == "9,033"  # not "9.03e+03"
    assert bar_text(87_734.0, None) == "87,734"


def test_a_bar_just_over_its_target_is_not_labelled_with_the_target() -> None:
    # W4 at 32 MiB was 1.904x against 1.9x: labelled "1.9" it looked like a tie.
    assert bar_text(1.904, 1.9) == "1.904"
    assert bar_text(1.904, None) == "1.90"


def test_a_large_bar_next_to_its_target_and_odd_values_stay_readable() -> None:
    assert bar_text(19_999.6, 20_000) == "19,999.6"  # W2's target line is at 20,000
    assert bar_text(999.7, None) == "1,000"
    assert bar_text(1e-300, None) == "0.000000"
    assert [bar_text(v, None) for v in (0.0, -2.5, float("inf"))] == ["0.00", "-2.50", "inf"]


def _w3_raw(ceiling: dict[str, list[float]] | None) -> dict[str, object]:
    w3: dict[str, object] = {"amworker_split": [0.2], "amworker_single": [0.36], "inprocess": [0.35]}
    if ceiling is not None:
        w3["ceiling"] = ceiling
    return {"sizes": {"w3_tasks": 16, "w3_runs": 1}, "errors": {}, "w3": w3,
            "w4": {"one_worker": [0.36], "two_workers": [0.19]}}


def test_w3_and_w4_show_the_hosts_ceiling_beside_their_speedup() -> None:
    raw = _w3_raw({"one": [0.35, 0.36, 0.40], "split": [0.18, 0.2, 0.19]})

    w3, w4 = report._w3(raw, "w3", 32), report._w4(raw, "w4", 32)

    # Medians: 0.36 s in one bare process, 0.19 s in two.
    assert w3.floor == w4.floor == "1.89× ceiling: bare processes, no worker (0.19 s vs 0.36 s)"
    assert w3.ratio.startswith("1.75× faster than in-process")


def test_a_run_without_the_ceiling_still_renders() -> None:
    # Runs recorded before the ceiling was measured are re-rendered from JSON.
    raw = _w3_raw(None)

    assert report._w3(raw, "w3", 32).floor == report._w4(raw, "w4", 32).floor == "—"


def _w9_raw(*, stock: bool, celery: bool) -> dict[str, object]:
    tree = {"pss_mb": 150.0, "rss_mb": 262.0, "samples": 9,
            "processes": [{"role": "shim", "pss_mb": 39.0}, {"role": "celery", "pss_mb": 37.0}]}
    w9: dict[str, object] = {"amworker": tree, "inprocess": {**tree, "pss_mb": 66.0}}
    raw: dict[str, object] = {"machine": {"cores": "2"}, "w9": w9, "stock": {"measured": stock,
                              "reason": "not measured in this run"}}
    if stock:
        w9["stock"] = {**tree, "pss_mb": 56.0}
    if celery:
        raw["w9_celery"] = {"pss_mb": 91.4, "rss_mb": 160.3, "samples": 9, "processes": []}
    return raw


def test_the_w9_row_sets_a_bare_celery_worker_beside_the_stock_tree() -> None:
    row = report_more._w9(_w9_raw(stock=True, celery=True))

    assert "2.68× stock (PSS)" in row.ratio
    assert "a bare Celery worker (prefork, 2 pool processes" in row.ratio
    assert "PSS 91 MB, 1.63× stock" in row.ratio


def test_the_w9_row_says_when_the_bare_celery_worker_was_not_measured() -> None:
    row = report_more._w9(_w9_raw(stock=False, celery=False))

    assert "a bare Celery worker: not measured in this run" in row.ratio
    assert "stock" not in row.ratio.split(";")[-1]
