"""W7's pieces that need no Archivematica checkout: the tasks it sends, the version it reports.

The run itself (``make bench AM_SRC=...``) checks every file's size and
checksum in the database after every batch; these pin what the batches say.
"""

from __future__ import annotations

import csv
import shlex
from pathlib import Path

import pytest

from bench import w7_a3m, w7_am, w7_archivematica

pytestmark = pytest.mark.timeout(30)

FUNCTIONS_TSV = Path(__file__).resolve().parent.parent / "data" / "ccp-functions.tsv"


def _templates(function: str) -> list[str]:
    with FUNCTIONS_TSV.open(newline="") as handle:
        rows = csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        return [row["arguments_template"] for row in rows if row["function"] == function]


def test_archivematica_tasks_use_the_workflows_own_template_for_a_transfer() -> None:
    # The workflow's transfer template, with the unit's values in and one file named.
    template = next(t for t in _templates(w7_am.STOCK)
                    if "--transferUUID" in t and "--filterSubdir" not in t)
    expected = (template.replace("%SIPUUID%", w7_a3m.TRANSFER)
                .replace("%SIPDirectory%", f"%sharedPath%{w7_a3m.UNIT}")
                + ' --filterSubdir "0001-data.bin"')

    assert w7_am.arguments("0001-data.bin") == expected
    # Each task names its file alone, so a batch of N files is N tasks.
    assert shlex.split(w7_am.arguments("a b.txt"))[-2:] == ["--filterSubdir", "a b.txt"]


def test_the_stock_function_is_one_the_controller_calls() -> None:
    assert _templates(w7_am.STOCK), f"{w7_am.STOCK} is not in ccp-functions.tsv"
    assert set(w7_am.SYSTEMS) == set(w7_a3m.SYSTEMS)


def test_the_checkouts_version_is_read_from_its_version_module(tmp_path: Path) -> None:
    lib = tmp_path / "src" / "archivematicaCommon" / "lib"
    lib.mkdir(parents=True)
    (lib / "version.py").write_text("ARCHIVEMATICA_VERSION = (1, 17, 0)\n")
    assert w7_archivematica._am_version(tmp_path) == "1.17.0"
    (lib / "version.py").write_text("VERSION = 'x'\n")
    assert w7_archivematica._am_version(tmp_path) == "?"
