"""Tests of the bundled coreutils-style client scripts.

Most tests are differential: the same fixture is built twice, our script runs
in one copy and the real command (GNU coreutils, tree) runs in the other with
the same argv, and exit code, stderr and the resulting file tree (types,
modes, contents, link targets) must match. Real commands run in the C locale,
whose messages use ASCII quotes like ours.
"""

from __future__ import annotations

import configparser
import importlib
import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from worker.client.job import Job
from worker.clientScripts import (
    _common,
    copy_file,
    copy_recursive,
    create_directory,
    create_directory_tree,
    evaluate_test,
    move_path,
    remove_directories,
    set_file_permission,
)

pytestmark = pytest.mark.timeout(60)

MODULES_FILE = Path(_common.__file__).with_name("archivematicaClientModules")
EXPECTED_FUNCTIONS = {
    "test_v0.0": "evaluate_test",
    "copy_v0.0": "copy_file",
    "copyrecursive_v0.0": "copy_recursive",
    "move_v0.0": "move_path",
    "createdirectory_v0.0": "create_directory",
    "createdirectorytree_v0.0": "create_directory_tree",
    "setfilepermission_v0.0": "set_file_permission",
    "removedirectories_v0.0": "remove_directories",
}


# --- harness ----------------------------------------------------------------


def make_job(name: str, *argv: str) -> Job:
    """A real job whose ``args`` are ``[name, *argv]``, as the executor builds them."""
    return Job(name, "00000000-0000-0000-0000-000000000000", argv)


def run_script(module: ModuleType, *argv: str) -> Job:
    """Run one client script on one job, in the current directory."""
    job = make_job(module.__name__.rsplit(".", 1)[-1], *argv)
    module.call([job])
    return job


def run_real(argv: list[str], cwd: Path, locale: str = "C") -> subprocess.CompletedProcess[str]:
    """Run the real command (never through a shell)."""
    env = {**os.environ, "LC_ALL": locale}
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=30, check=False)


def snapshot(root: Path) -> dict[str, tuple[Any, ...]]:
    """Every entry under ``root``: type, permission bits, contents or link target."""
    entries: dict[str, tuple[Any, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            info = path.lstat()
            mode = oct(stat.S_IMODE(info.st_mode))
            key = str(path.relative_to(root))
            if stat.S_ISLNK(info.st_mode):
                entries[key] = ("link", os.readlink(path))
            elif stat.S_ISREG(info.st_mode):
                entries[key] = ("file", mode, path.read_bytes())
            else:
                entries[key] = (stat.S_IFMT(info.st_mode), mode)
    return entries


@dataclass
class Twin:
    """Two identical work directories: ours (the cwd) and the real command's."""

    ours: Path
    real: Path

    def compare(
        self,
        module: ModuleType,
        command: list[str],
        argv: list[str],
        setup: Callable[[Path], None],
        *,
        same_tree: bool = True,
    ) -> Job:
        setup(self.ours)
        setup(self.real)
        job = run_script(module, *argv)
        real = run_real([*command, *argv], self.real)
        assert (job.int_code, job.error) == (real.returncode, real.stderr)
        assert job.output == real.stdout
        if same_tree:
            assert snapshot(self.ours) == snapshot(self.real)
        return job


@pytest.fixture
def twin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Twin:
    ours, real = tmp_path / "ours", tmp_path / "real"
    ours.mkdir()
    real.mkdir()
    monkeypatch.chdir(ours)
    return Twin(ours, real)


@pytest.fixture(params=[0o022, 0o077, 0o000], ids=["umask022", "umask077", "umask000"])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def write(path: Path, text: str, mode: int = 0o644) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)
    return path


def make_dir(path: Path, mode: int = 0o755) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(mode)
    return path


# --- test_v0.0 --------------------------------------------------------------


def populate_for_test(d: Path) -> None:
    write(d / "f", "data")
    write(d / "empty", "")
    make_dir(d / "d")
    (d / "link").symlink_to("f")
    (d / "dang").symlink_to("nowhere")
    os.mkfifo(d / "fifo")
    write(d / "exe", "#!", 0o755)
    write(d / "noperm", "x", 0o000)
    write(d / "suid", "x", 0o4755)
    make_dir(d / "sgid", 0o2755)
    make_dir(d / "sticky", 0o1777)
    write(d / "old", "o")
    write(d / "new", "n")
    os.utime(d / "old", (1_000_000_000, 1_000_000_000))
    os.utime(d / "new", (1_500_000_000, 2_000_000_000))


# fmt: off
TEST_CASES = [
    [], [""], ["x"], ["-d"], ["-"], ["--"], ["!"], ["("], [")"],
    ["-d", "d"], ["-d", "f"], ["-d", "missing"], ["-d", "link"], ["-f", "f"], ["-f", "d"],
    ["-f", "fifo"], ["-e", "dang"], ["-e", "link"], ["-e", ""], ["-h", "dang"], ["-L", "link"],
    ["-L", "f"], ["-r", "f"], ["-r", "noperm"], ["-w", "f"], ["-x", "exe"], ["-x", "f"],
    ["-x", "d"], ["-s", "f"], ["-s", "empty"], ["-p", "fifo"], ["-S", "f"], ["-b", "f"],
    ["-c", "/dev/null"], ["-g", "sgid"], ["-g", "d"], ["-k", "sticky"], ["-u", "suid"],
    ["-u", "f"], ["-O", "f"], ["-G", "f"], ["-N", "new"], ["-N", "old"], ["-t", "abc"],
    ["-t", "99"], ["-n", ""], ["-n", "x"], ["-z", ""], ["-z", "x"], ["-Q", "x"], ["-a", "d"],
    ["-o", "d"], ["-dd", "x"], ["-é", "x"], ["!", "x"], ["!", ""], ["!", "-d", "d"],
    ["a", "=", "a"], ["a", "=", "b"], ["a", "==", "a"], ["a", "!=", "b"], ["abc", "<", "abd"],
    ["b", ">", "a"], ["é", ">", "z"], ["1", "-eq", "1"], [" 12 ", "-eq", "+12"],
    ["-0", "-eq", "0"], ["1", "-ne", "2"], ["1", "-lt", "2"], ["2", "-le", "2"],
    ["3", "-gt", "2"], ["2", "-ge", "3"], ["a", "-eq", "1"], ["1", "-lt", "a"],
    ["+-1", "-eq", "1"], ["", "-eq", "0"], ["1\n", "-eq", "1"], ["it's", "-eq", "1"],
    ["99999999999999999999", "-gt", "1"], ["-l", "abc", "-eq", "3"],
    ["1", "-eq", "-l", "x"], ["a", "=", "-l", "b"], ["-l", "abc", "=", "abc"],
    ["old", "-nt", "new"], ["new", "-nt", "old"], ["f", "-nt", "missing"],
    ["missing", "-nt", "f"], ["missing", "-ot", "f"], ["old", "-ot", "new"],
    ["f", "-ef", "link"], ["f", "-ef", "d"], ["f", "-ef", "missing"],
    ["(", "x", ")"], ["(", "", ")"], ["(", "!", ")"], ["(", ")"], ["(", "x"],
    ["x", "-a", "(", "y"], ["(", "a", "=", "a", ")", "-a", "(", "b", ")"],
    ["(", "(", "a", ")", ")"], ["(", "a", "b", "c", "d", "e", ")"], ["!", "(", "a"],
    ["(", "-d", "d", ")"], ["!", "(", "-d", "d", ")"], ["(", "a", "-a", "b", "c"],
    ["-n", "-a", "-n"], ["-z", "-o", "-z"], ["x", "-o"], ["x", "-a"], ["-e", "-e"],
    ["a", "b", "c"], ["a", "b", "c", "d"], ["!", "a", "b"], ["-d", "x", "y"],
    ["1", "-eq", "1", "extra"], ["a", "-eq"], ["a", "-nt"], ["=", "=", "="], ["!", "!", "!"],
    ["!", "=", "a"], ["!", "!", "x"], ["!", "!", "!", "!"], ["x", "-a", "y", "-o", ""],
    ["", "-o", "", "-a", "x"], ["!", "x", "-a", "y"], ["-d", "d", "-a", "-f", "f"],
    ["-d", "d", "-o", "-f", "nope"], ["a", "-a", "b", "-a"], ["!", "-z", "x", "-a", "!", "-n", ""],
    ["-d", "d", "-a", "(", "-f", "f", "-o", "x", ")"], ["x", "-a", "!"],
]
# fmt: on


@pytest.mark.parametrize("argv", TEST_CASES, ids=repr)
def test_test_matches_gnu_test(argv: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    populate_for_test(tmp_path)
    monkeypatch.chdir(tmp_path)
    job = run_script(evaluate_test, *argv)
    real = run_real(["test", *argv], tmp_path)
    assert (job.int_code, job.error) == (real.returncode, real.stderr)
    assert job.output == ""


def test_test_tsv_form(tmp_path: Path) -> None:
    sip = make_dir(tmp_path / "sip")
    assert run_script(evaluate_test, "-d", f"{sip}/DIP").int_code == 1
    make_dir(sip / "DIP")
    assert run_script(evaluate_test, "-d", f"{sip}/DIP").int_code == 0


def test_test_usage_error_is_exit_2_with_message() -> None:
    job = run_script(evaluate_test, "1", "-eq", "one")
    assert job.int_code == 2
    assert job.error == "test: invalid integer 'one'\n"


# --- copy_v0.0 ----------------------------------------------------------------


def populate_for_cp(d: Path) -> None:
    write(d / "f", "one", 0o640)
    write(d / "g", "two", 0o600)
    write(d / "suid", "s", 0o4755)
    write(d / "ro", "r", 0o444)
    make_dir(d / "d")
    make_dir(d / "d2" / "f")
    os.link(d / "f", d / "hl")
    (d / "lf").symlink_to("f")
    (d / "dang").symlink_to("nowhere")
    write(d / "src" / "a", "A", 0o600)
    write(d / "src" / "sub" / "b", "B", 0o755)
    (d / "src" / "ln").symlink_to("a")
    os.mkfifo(d / "src" / "fifo", 0o640)
    (d / "src" / "sub").chmod(0o500)
    (d / "src").chmod(0o750)
    (d / "srclink").symlink_to("src")
    make_dir(d / "dest")
    write(d / "dest2" / "src" / "old", "old")
    write(d / "dest2" / "src" / "a", "previous", 0o666)
    write(d / "objects" / "metadata" / "OCRfiles" / "page.txt", "ocr")
    make_dir(d / "DIP", 0o770)


# fmt: off
CP_CASES = [
    ["f", "new"], ["f", "g"], ["f", "g", "-n"], ["-n", "f", "g"], ["--no-clobber", "f", "g"],
    ["--no-c", "f", "g"], ["f", "new", "-n"], ["missing", "x"], ["-n", "missing", "x"],
    ["f", "d"], ["f", "d/"], ["f", "nodir/x"], ["f", "nodir/"], ["f", "newf/"], ["f", "g/"],
    ["d", "x"], ["f"], [], ["f", "f"], ["f", "hl"], ["-n", "f", "hl"], ["f", "g", "d"],
    ["f", "g", "h"], ["f", "g", "f"], ["f", "missing", "d"], ["lf", "copy"], ["f", "lf"],
    ["g", "lf"], ["f", "dang"], ["f", "d2"], ["-n", "f", "d2"], ["suid", "new"], ["ro", "new"],
    ["g", "ro"], ["-z", "f", "x"], ["--bogus", "f", "x"], ["--", "f", "new"],
    ["-R", "src", "new"],
]
# fmt: on


@pytest.mark.parametrize("argv", CP_CASES, ids=repr)
def test_copy_matches_gnu_cp(argv: list[str], twin: Twin, umask: int) -> None:
    twin.compare(copy_file, ["cp"], argv, populate_for_cp)


def test_copy_no_clobber_keeps_target_and_exits_0(tmp_path: Path) -> None:
    # coreutils 9.1 (Debian bookworm): cp -n skipping an existing file is a success.
    source = write(tmp_path / "processingMCP.default.xml", "default")
    target = write(tmp_path / "sip" / "processingMCP.xml", "custom")
    job = run_script(copy_file, str(source), str(target), "-n")
    assert (job.int_code, job.error, target.read_text()) == (0, "", "custom")
    target.unlink()
    assert run_script(copy_file, str(source), str(target), "-n").int_code == 0
    assert target.read_text() == "default"


def test_copy_makes_a_fifo_instead_of_reading_it(tmp_path: Path) -> None:
    # GNU cp without -R would block reading the fifo; a worker must not hang.
    os.mkfifo(tmp_path / "pipe", 0o640)
    job = run_script(copy_file, str(tmp_path / "pipe"), str(tmp_path / "copy"))
    assert (job.int_code, job.error) == (0, "")
    assert stat.S_ISFIFO((tmp_path / "copy").lstat().st_mode)


def test_copy_missing_source_message(tmp_path: Path) -> None:
    job = run_script(copy_file, str(tmp_path / "nope"), str(tmp_path / "x"))
    assert job.int_code == 1
    assert job.error == f"cp: cannot stat '{tmp_path}/nope': No such file or directory\n"


# --- copyrecursive_v0.0 -------------------------------------------------------

# fmt: off
CP_R_CASES = [
    ["src", "new"], ["src", "dest"], ["src", "dest2"], ["-n", "src", "dest2"],
    ["src", "dest2", "-n"], ["src/", "new2/"], ["missing", "x"], ["src", "f"], ["srclink", "x"],
    ["srclink", "dest"], ["f", "newf"], ["lf", "g"], ["lf", "dest"], ["src", "nodir/x"],
    ["objects/metadata/OCRfiles", "DIP"], ["src", "d2"], ["src", "new", "-R"],
    ["src/ln", "src/fifo", "dest"], ["src", "f", "x"],
]
# fmt: on


@pytest.mark.parametrize("argv", CP_R_CASES, ids=repr)
def test_copy_recursive_matches_gnu_cp_r(argv: list[str], twin: Twin, umask: int) -> None:
    twin.compare(copy_recursive, ["cp", "-R"], argv, populate_for_cp)


@pytest.mark.parametrize("argv", [["src", "src"], ["src", "src/sub"], ["src/", "src/new"]])
def test_copy_recursive_refuses_copy_into_itself(argv: list[str], twin: Twin) -> None:
    # GNU cp copies part of the tree before noticing; we refuse up front.
    twin.compare(copy_recursive, ["cp", "-R"], argv, populate_for_cp, same_tree=False)
    assert "new" not in os.listdir(twin.ours / "src")


def test_copy_recursive_tsv_form(tmp_path: Path) -> None:
    sip = make_dir(tmp_path / "sip")
    write(sip / "objects" / "metadata" / "OCRfiles" / "a.txt", "text")
    make_dir(sip / "DIP")
    job = run_script(copy_recursive, f"{sip}/objects/metadata/OCRfiles", f"{sip}/DIP")
    assert (job.int_code, job.error) == (0, "")
    assert (sip / "DIP" / "OCRfiles" / "a.txt").read_text() == "text"


# --- move_v0.0 ------------------------------------------------------------------


def populate_for_mv(d: Path) -> None:
    write(d / "f", "one")
    write(d / "g", "two", 0o600)
    write(d / "d" / "inner", "in")
    write(d / "e" / "d" / "x", "x")
    make_dir(d / "e2" / "d")
    write(d / "h", "h")
    os.link(d / "h", d / "h2")
    make_dir(d / "dd")
    write(d / "ff", "ff")
    make_dir(d / "t" / "ff")
    write(d / "sip" / "DIP" / "objects" / "o.txt", "o")
    make_dir(d / "uploadedDIPs")
    make_dir(d / "watched" / "uploadDIP")
    make_dir(d / "rejected")
    (d / "lnk").symlink_to("d")


# fmt: off
MV_CASES = [
    ["missing", "x"], ["f", "d"], ["f", "g"], ["d", "e"], ["d", "e2"], ["d", "d"],
    ["e2", "e2/d"], ["h", "h2"], ["dd", "ff"], ["ff", "t"], ["f", "nodir/x"], ["f", "nodir/"],
    ["f", "ff2/"], ["f"], [], ["f", "g", "d"], ["f", "g", "missing"], ["f", "g", "ff"],
    ["f", "missing", "d"], ["d", "new"], ["sip", "uploadedDIPs/"], ["sip", "rejected/DIP-sip"],
    ["sip/DIP", "watched/uploadDIP/sip"], ["lnk", "renamed"], ["--", "f", "new"], ["-y", "f", "g"],
]
# fmt: on


@pytest.mark.parametrize("argv", MV_CASES, ids=repr)
def test_move_matches_gnu_mv(argv: list[str], twin: Twin) -> None:
    twin.compare(move_path, ["mv"], argv, populate_for_mv)


def _other_device_dir(tmp_path: Path) -> Path:
    shm = Path("/dev/shm")
    if not shm.is_dir() or os.stat(shm).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("no second file system to move across")
    return Path(tempfile.mkdtemp(dir=shm))


def test_move_across_file_systems(tmp_path: Path) -> None:
    other = _other_device_dir(tmp_path)
    try:
        write(tmp_path / "sip" / "objects" / "a.txt", "a", 0o640)
        (tmp_path / "sip" / "link").symlink_to("objects/a.txt")
        os.utime(tmp_path / "sip" / "objects" / "a.txt", (1_000_000_000, 1_000_000_000))
        expected = snapshot(tmp_path / "sip")
        make_dir(other / "target")
        write(other / "file", "old")
        job = run_script(move_path, str(tmp_path / "sip"), str(other / "target"))
        assert (job.int_code, job.error) == (0, "")
        assert not (tmp_path / "sip").exists()
        assert snapshot(other / "target" / "sip") == expected
        assert (other / "target" / "sip" / "objects" / "a.txt").stat().st_mtime == 1_000_000_000
        write(tmp_path / "file", "new")
        assert run_script(move_path, str(tmp_path / "file"), str(other / "file")).int_code == 0
        assert (other / "file").read_text() == "new"
    finally:
        shutil.rmtree(other)


# --- createdirectory_v0.0 ---------------------------------------------------------


def populate_for_mkdir(d: Path) -> None:
    make_dir(d / "exists")
    write(d / "file", "x")
    make_dir(d / "sgid", 0o2775)


# fmt: off
MKDIR_CASES = [
    ["-m", "770", "DIP/", "DIP/objects/"], ["-m", "770", "thumbnails/"], ["-m", "770", "exists"],
    ["-m", "770", "a", "exists", "b"], ["-m", "770", "x/y"], ["-m", "770", "file/sub"],
    ["-m", "xyz", "q"], ["-m", "17777", "q"], ["-m", "8", "q"], ["-m", "", "q"], ["-m", "770", ""],
    [], ["-m"], ["-m", "770"], ["-m770", "q"], ["--mode=711", "q"], ["--mode", "711", "q"],
    ["--mo=711", "q"], ["q", "-m", "700"], ["-m", "700", "-m", "750", "q"], ["q"], ["a", "b/"],
    ["-m", "u=rwx,g=rx", "q"], ["-m", "+t", "q"], ["-m", "-w", "q"], ["-m", "g+s", "q"],
    ["-m", "=755", "q"], ["-m", "a=rx,u+w", "q"], ["-m", "go-x", "q"], ["-m", "o=u", "q"],
    ["-m", "+x", "q"], ["-m", "a+X", "q"], ["-m", "u=rwxs,g=rx", "q"], ["-m", "0", "q"],
    ["-m", "7777", "q"], ["-m", "1770", "q"], ["-m", "2770", "q"], ["-m", "00770", "sgid/q"],
    ["-m", "770", "sgid/q"], ["-m", "g-s", "sgid/q"], ["-m", "u-s", "sgid/q"], ["sgid/q"],
    ["-m", "u+", "q"], ["-m", "u", "q"], ["-m", "u+x,", "q"], ["-m", "=755+x", "q"],
    ["-m", "u=g", "q"], ["-m", "a-rwx,u+rw", "q"], ["-m", "+", "q"], ["-m", "ug=rwx,o=", "q"],
    ["-m", "u+x,,g+x", "q"], ["-m", "g=u+x", "q"], ["-m", "=", "q"], ["-m", "a", "q"],
    ["-m", "0o770", "q"], ["-m", "-0", "q"], ["-m", "+00", "q"], ["-m", "u=0", "q"],
    ["-x", "q"], ["--bogus", "q"], ["--mode", "770", "--", "-dash"],
]
# fmt: on


@pytest.mark.parametrize("argv", MKDIR_CASES, ids=repr)
def test_create_directory_matches_gnu_mkdir(argv: list[str], twin: Twin, umask: int) -> None:
    twin.compare(create_directory, ["mkdir"], argv, populate_for_mkdir)


def test_create_directory_tsv_form_is_exactly_770(tmp_path: Path, umask: int) -> None:
    sip = make_dir(tmp_path / "sip")
    job = run_script(create_directory, "-m", "770", f"{sip}/DIP/", f"{sip}/DIP/objects/")
    assert (job.int_code, job.error) == (0, "")
    assert stat.S_IMODE((sip / "DIP").stat().st_mode) == 0o770
    assert stat.S_IMODE((sip / "DIP" / "objects").stat().st_mode) == 0o770


def test_create_directory_existing_reports_and_continues(tmp_path: Path) -> None:
    make_dir(tmp_path / "thumbnails")
    job = run_script(create_directory, "-m", "770", str(tmp_path / "thumbnails"), str(tmp_path / "b"))
    assert job.int_code == 1
    assert job.error == (f"mkdir: cannot create directory '{tmp_path}/thumbnails': File exists\n")
    assert stat.S_IMODE((tmp_path / "b").stat().st_mode) == 0o770


def test_create_directory_does_not_make_parents(tmp_path: Path) -> None:
    job = run_script(create_directory, "-p", "-m", "770", str(tmp_path / "a" / "b"))
    assert (job.int_code, job.error) == (
        1,
        "mkdir: invalid option -- 'p'\nTry 'mkdir --help' for more information.\n",
    )
    assert not (tmp_path / "a").exists()


# --- setfilepermission_v0.0 --------------------------------------------------------


def populate_for_chmod(d: Path) -> None:
    write(d / "f", "f", 0o644)
    write(d / "g", "g", 0o600)
    write(d / "rw", "rw", 0o666)
    write(d / "exe", "x", 0o755)
    make_dir(d / "d", 0o755)
    make_dir(d / "sgid", 0o2755)
    (d / "dang").symlink_to("nowhere")
    (d / "lnk").symlink_to("f")


# fmt: off
CHMOD_CASES = [
    ["775", "f"], ["775", "f", "missing", "g"], ["xyz", "f"], ["775"], [], ["775", "dang"],
    ["700", "lnk"], ["770", "sgid"], ["00770", "sgid"], ["0770", "sgid"], ["2770", "d"],
    ["u+s,g+s", "f"], ["-w", "f"], ["-w", "rw"], ["rw", "-w"], ["a-w", "rw"], ["+w", "g"],
    ["-rwx", "f"], ["+X", "f"], ["+X", "exe"], ["a-x,+X", "d"], ["go=u", "f"], ["8", "f"],
    ["775", "f/x"], ["775", "--", "-x"], ["--", "775", "f"], ["=", "f"], ["u=", "f"],
    ["+t", "d"], ["g-s", "sgid"], ["o+s", "f"], ["u=rw,go=r", "f", "g", "d"], ["0", "f"],
    ["7777", "f"], ["17777", "f"], ["", "f"], ["u+", "f"], ["-", "f"], ["-Z", "f"],
    ["--bogus", "775", "f"], ["-x", "exe", "-w"],
]
# fmt: on


@pytest.mark.parametrize("argv", CHMOD_CASES, ids=repr)
def test_set_file_permission_matches_gnu_chmod(argv: list[str], twin: Twin, umask: int) -> None:
    twin.compare(set_file_permission, ["chmod"], argv, populate_for_chmod)


def test_set_file_permission_tsv_form(tmp_path: Path) -> None:
    aip = write(tmp_path / "sip" / "aip.7z", "aip", 0o600)
    job = run_script(set_file_permission, "775", str(aip))
    assert (job.int_code, stat.S_IMODE(aip.stat().st_mode)) == (0, 0o775)
    job = run_script(set_file_permission, "775", str(tmp_path / "gone.7z"))
    assert job.int_code == 1
    assert job.error == f"chmod: cannot access '{tmp_path}/gone.7z': No such file or directory\n"


# --- removedirectories_v0.0 ---------------------------------------------------------


def populate_for_rm(d: Path) -> None:
    write(d / "d" / "e" / "f", "f")
    write(d / "d" / "g", "g")
    write(d / "file", "x")
    (d / "ldir").symlink_to("d")
    (d / "dang").symlink_to("nowhere")
    write(d / "ro" / "sub" / "x", "x", 0o444)
    (d / "ro" / "sub").chmod(0o555)
    write(d / "thumbnails" / "t.jpg", "t")


# fmt: off
RM_CASES = [
    ["missing"], ["d"], ["file"], ["ldir"], ["ldir/"], ["dang"], ["d", "missing", "file"],
    ["."], [".."], ["d/."], ["d/./"], ["d/.."], ["missing/.."], ["file/"], ["file/x"],
    ["thumbnails/"], ["-r", "d"], ["--", "-x"], ["ro"], [], ["d/e", "d"],
]
# fmt: on


@pytest.mark.parametrize("argv", RM_CASES, ids=repr)
def test_remove_directories_matches_gnu_rm_rf(argv: list[str], twin: Twin) -> None:
    twin.compare(remove_directories, ["rm", "-rf"], argv, populate_for_rm)


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/", "rm: it is dangerous to operate recursively on '/'\n"),
        ("//", "rm: it is dangerous to operate recursively on '//' (same as '/')\n"),
        ("/tmp/..", "rm: refusing to remove '.' or '..' directory: skipping '/tmp/..'\n"),
        ("/./", "rm: refusing to remove '.' or '..' directory: skipping '/./'\n"),
        ("", "rm: refusing to remove an empty path\n"),
    ],
)
def test_remove_directories_refuses_root_and_empty(
    path: str, message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("tried to delete something")

    # Belt and braces: this test runs as root on a real machine.
    monkeypatch.setattr(shutil, "rmtree", forbidden)
    monkeypatch.setattr(os, "unlink", forbidden)
    job = run_script(remove_directories, path, "/nonexistent-amworker-test")
    assert (job.int_code, job.error) == (1, message)


def test_remove_directories_tsv_form(tmp_path: Path) -> None:
    sip = make_dir(tmp_path / "sip")
    for sub in ("logs", "objects", "thumbnails"):
        write(sip / sub / "x", "x")
    argv = [f"{sip}/logs/", f"{sip}/objects/", f"{sip}/thumbnails/", f"{sip}/sip-uuid"]
    job = run_script(remove_directories, *argv)
    assert (job.int_code, job.error, os.listdir(sip)) == (0, "", [])


def test_remove_directories_reports_what_it_cannot_remove(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    locked = write(tmp_path / "locked" / "sub" / "x", "x").parent
    write(tmp_path / "other" / "y", "y")

    def deny(path: Any, *args: Any, **kwargs: Any) -> None:
        raise PermissionError(13, "Permission denied", path)

    # Running as root, a read-only directory would not stop the removal.
    monkeypatch.setattr(os, "unlink", deny)
    job = run_script(remove_directories, str(tmp_path / "locked"), str(tmp_path / "other"))
    assert job.int_code == 1
    assert job.error.splitlines() == [
        f"rm: cannot remove '{locked}/x': Permission denied",
        f"rm: cannot remove '{locked}': Directory not empty",
        f"rm: cannot remove '{tmp_path}/locked': Directory not empty",
        f"rm: cannot remove '{tmp_path}/other/y': Permission denied",
        f"rm: cannot remove '{tmp_path}/other': Directory not empty",
    ]


# --- createdirectorytree_v0.0 ---------------------------------------------------------


def populate_for_tree(d: Path) -> None:
    objects = make_dir(d / "objects")
    for name in (
        "a.txt",
        "Z.txt",
        ".hidden",
        " lead",
        "-dash",
        "1",
        "10",
        "2",
        "_u",
        "~t",
        "é",
        "new\nline",
        "tab\tx",
        "Éa",
    ):
        write(objects / name, "x")
    write(objects / "sub" / "f1", "1")
    write(objects / "sub" / "deep" / "f2", "2")
    make_dir(objects / "B")
    make_dir(objects / "empty")
    (objects / "sub" / "lnk").symlink_to("../a.txt")
    (objects / "dirlink").symlink_to("sub")
    (objects / "dangling").symlink_to("nowhere")
    make_dir(d / "bare")
    write(d / "hidden_only" / ".h", "h")


# fmt: off
TREE_CASES = [
    ["objects", "-o", "out.txt"], ["objects/", "-o", "out.txt"], ["-o", "out.txt", "objects"],
    ["missing", "-o", "out.txt"], ["objects/a.txt", "-o", "out.txt"],
    ["objects/dirlink", "-o", "out.txt"], ["bare", "-o", "out.txt"],
    ["hidden_only", "-o", "out.txt"], ["objects/sub", "bare", "missing", "-o", "out.txt"],
    ["objects/sub"], ["--", "objects/sub"], ["objects", "-o", "nodir/out.txt"],
]
# fmt: on


@pytest.mark.skipif(shutil.which("tree") is None, reason="tree is not installed")
@pytest.mark.parametrize("argv", TREE_CASES, ids=repr)
def test_create_directory_tree_matches_tree(argv: list[str], twin: Twin) -> None:
    populate_for_tree(twin.ours)
    populate_for_tree(twin.real)
    job = run_script(create_directory_tree, *argv)
    real = run_real(["tree", *argv], twin.real, locale="C.UTF-8")
    assert job.int_code == real.returncode
    assert job.output == real.stdout
    assert snapshot(twin.ours) == snapshot(twin.real)
    if real.stderr:
        assert job.error == real.stderr


def test_create_directory_tree_tsv_form(tmp_path: Path) -> None:
    write(tmp_path / "sip" / "objects" / "b" / "c.txt", "c")
    write(tmp_path / "sip" / "objects" / "a.txt", "a")
    out = tmp_path / "sip" / "metadata" / "directory_tree.txt"
    make_dir(out.parent)
    job = run_script(create_directory_tree, f"{tmp_path}/sip/objects/", "-o", str(out))
    assert (job.int_code, job.error) == (0, "")
    assert out.read_text(encoding="utf-8") == (
        f"{tmp_path}/sip/objects/\n├── a.txt\n└── b\n    └── c.txt\n\n2 directories, 2 files\n"
    )


def test_create_directory_tree_missing_directory(tmp_path: Path) -> None:
    out = tmp_path / "tree.txt"
    job = run_script(create_directory_tree, str(tmp_path / "gone"), "-o", str(out))
    assert job.int_code == 2
    assert job.error == (f"tree: cannot open directory '{tmp_path}/gone': No such file or directory\n")
    assert out.read_text() == f"{tmp_path}/gone  [error opening dir]\n\n0 directories, 0 files\n"


def test_create_directory_tree_unreadable_subdirectory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path / "top" / "locked" / "x", "x")
    write(tmp_path / "top" / "ok" / "g", "g")
    real_scandir = os.scandir

    def scandir(path: str) -> Any:
        if str(path).endswith("locked"):
            raise PermissionError(13, "Permission denied", path)
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    monkeypatch.chdir(tmp_path)
    job = run_script(create_directory_tree, "top")
    assert job.int_code == 2
    assert job.error == "tree: cannot open directory 'top/locked': Permission denied\n"
    assert job.output == (
        "top\n├── locked  [error opening dir]\n└── ok\n    └── g\n\n3 directories, 1 file\n"
    )


# --- quoting, shell safety, modules file, job loop ------------------------------------

# fmt: off
QUOTED_NAMES = [
    "it's", "a b", "x$(touch pwned)", "; rm -rf /", "nl\nx", 'dq"x', "back\\sl", "tab\tx",
    "both'\"", "!bang", "~home", "a~b", "a*b", "#hash", "x#y", "a=b", "{a}", "a^b", "it's!",
    "x:y", "a,b", "%p", "bell\a", "\x7f", "\x1b[0m",
]
# fmt: on


@pytest.mark.parametrize("name", QUOTED_NAMES, ids=repr)
def test_file_names_are_quoted_like_gnu(name: str, twin: Twin) -> None:
    def nothing(d: Path) -> None:
        return None

    twin.compare(copy_file, ["cp"], [name, "nodir/x"], nothing)
    twin.compare(create_directory, ["mkdir"], [f"{name}/sub"], nothing)
    twin.compare(evaluate_test, ["test"], [name, "-eq", "1"], nothing)


@pytest.mark.parametrize("name", ["é", "日本", "a\udcffb"], ids=repr)
def test_non_ascii_names_match_a_utf8_locale(name: str, twin: Twin) -> None:
    job = run_script(copy_file, name, "x")
    real = run_real(["cp", name, "x"], twin.real, locale="C.UTF-8")
    assert (job.int_code, job.error) == (real.returncode, real.stderr)


SHELL_TRAPS = ["$(touch pwned)", "`touch pwned`", "; rm -rf victim; touch pwned", "&& touch pwned"]


@pytest.mark.parametrize("trap", SHELL_TRAPS, ids=repr)
def test_arguments_are_never_run_by_a_shell(
    trap: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    victim = write(tmp_path / "victim" / "keep", "keep").parent
    monkeypatch.chdir(tmp_path)
    name = f"a {trap}"
    write(tmp_path / name, "payload")
    steps = [
        (evaluate_test, ["-f", name], 0),
        (copy_file, [name, f"{name}.copy"], 0),
        (create_directory, ["-m", "770", f"dir {trap}", f"dir {trap}/sub"], 0),
        (copy_recursive, [f"dir {trap}", f"dir2 {trap}"], 0),
        (move_path, [f"{name}.copy", f"dir {trap}/moved"], 0),
        (set_file_permission, ["600", name], 0),
        (create_directory_tree, [f"dir {trap}", "-o", f"tree {trap}.txt"], 0),
        (remove_directories, [f"dir2 {trap}", f"missing {trap}"], 0),
        (evaluate_test, ["-d", f"dir2 {trap}"], 1),
    ]
    for module, argv, status in steps:
        job = run_script(module, *argv)
        assert (job.int_code, job.error) == (status, ""), module.__name__
    assert (tmp_path / f"dir {trap}" / "moved").read_text() == "payload"
    assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600
    assert "├── moved" in (tmp_path / f"tree {trap}.txt").read_text()
    # Names may contain the text "touch pwned"; only a shell would make a file named "pwned".
    assert [path for path in tmp_path.rglob("*") if path.name == "pwned"] == []
    assert not Path("pwned").exists()
    assert (victim / "keep").read_text() == "keep"


def test_scripts_never_start_a_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("a client script tried to start a process")

    for name in (
        "system",
        "popen",
        "fork",
        "forkpty",
        "posix_spawn",
        "posix_spawnp",
        "execv",
        "execve",
        "execvp",
        "execvpe",
        "spawnv",
        "spawnvp",
    ):
        if hasattr(os, name):
            monkeypatch.setattr(os, name, forbidden)
    monkeypatch.setattr(subprocess.Popen, "__init__", forbidden)
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "f", "f")
    for module, argv in [
        (evaluate_test, ["-f", "f", "-a", "(", "1", "-lt", "2", ")"]),
        (copy_file, ["f", "g"]),
        (create_directory, ["-m", "u=rwx,g+s", "d"]),
        (copy_recursive, ["d", "d2"]),
        (move_path, ["g", "d"]),
        (set_file_permission, ["go-rwx", "f"]),
        (create_directory_tree, ["d", "-o", "t.txt"]),
        (remove_directories, ["d2", "d"]),
    ]:
        assert run_script(module, *argv).int_code == 0, module.__name__


def test_modules_file_names_every_script() -> None:
    parser = configparser.ConfigParser()
    assert parser.read(MODULES_FILE) == [str(MODULES_FILE)]
    functions = dict(parser["supportedBatchCommands"])
    assert functions == EXPECTED_FUNCTIONS
    for module_name in functions.values():
        module = importlib.import_module(f"worker.clientScripts.{module_name}")
        assert callable(module.call)
        assert module.__doc__


def test_run_jobs_isolates_a_failing_job() -> None:
    def command(args: list[str], report: _common.Report) -> None:
        if args == ["boom"]:
            raise RuntimeError("bug")
        report.error("reported", 3)

    jobs = [make_job("f", "boom"), make_job("f", "ok")]
    _common.run_jobs(jobs, "prog", command)
    assert jobs[0].int_code == 1
    assert "RuntimeError: bug" in jobs[0].error
    assert (jobs[1].int_code, jobs[1].error) == (3, "prog: reported\n")


def test_each_job_of_a_batch_gets_its_own_status(tmp_path: Path) -> None:
    make_dir(tmp_path / "present")
    jobs = [make_job("test_v0.0", "-d", str(tmp_path / name)) for name in ("present", "absent")]
    evaluate_test.call(jobs)
    assert [job.int_code for job in jobs] == [0, 1]
