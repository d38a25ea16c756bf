"""The commands the docs show are the commands that work: run them.

Convention (also described at the end of docs/operations.md): every fenced
shell block (```console, ```sh, ```bash, ```shell) in docs/*.md and README.md
is preceded by an HTML comment saying what to do with it:

* ``<!-- doctest: run -->`` -- run each ``$ `` line with bash against a
  private stack (gearmand, Redis, SQLite; harness/services.py); each must exit
  0, and the lines after it must appear in its output, in order, ``...``
  matching anything within a line. A block without ``$`` prompts is a list of
  commands with no expected output.
* ``<!-- doctest: daemon -->`` -- start each line in the background (``export``
  lines set the environment of what follows) and wait until it is ready: a
  Celery worker answers ``inspect ping``, the shim has registered with
  gearmand, Flower accepts connections.
* ``<!-- doctest: file PATH -->`` before any fenced block -- the block is
  written to PATH before the page's commands run.
* ``<!-- doctest: envfile -->`` before an ``ini`` block of ``NAME=value``
  lines -- amworker's settings must build from it.
* ``<!-- doctest: not-here KEY -->`` -- cannot run on a test machine. KEY must
  be in :data:`NOT_HERE`, which names what covers those commands instead, and
  each command must match that key's pattern: nothing slips in unreviewed.

Blocks of one page run in order in one shell session (exports carry over).
Absolute paths the docs use for a real install are moved into a temporary
directory (:data:`MOVED_ROOTS`), and a stand-in for Archivematica's MCPClient
tree there provides ``normalize_v1.0``.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.services import ROOT, Proc, Stack, accepts, free_port, spawn, stack, wait_until
from worker.config import BUNDLED_MODULES_FILE, KNOWN_VARIABLES, Settings

DOC_FILES = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]
SHELL_LANGUAGES = {"console", "sh", "bash", "shell", "shell-session"}
BIN = Path(sys.executable).parent

#: Commands that cannot run here, by marker key: (pattern every command in such
#: a block must match, why it cannot run, what covers it instead).
NOT_HERE: dict[str, tuple[str, str, str]] = {
    "docker": (
        r"([A-Z_]+=\S+ )*docker compose( -f \S+)* (up|exec|stop|logs|ps|down|version)\b.*"
        r"|docker (volume|network) (create|ls|inspect)\b.*",
        "needs a Docker engine, which the doc tests do not start",
        "scripts/test-compose (make test-compose, run by make test) brings compose.yaml "
        "up for real, alone and with compose.archivematica.yaml beside a stand-in "
        "Archivematica; tests/unit/test_compose.py validates both files and every "
        "command and setting in them",
    ),
    "service-manager": (
        r"(sudo )?systemctl (start|stop|restart|enable|disable) \S+|docker compose stop \S+",
        "no systemd (or Docker) on the test machines",
        "what the stop does -- SIGTERM to the shim or a worker -- is a fault test "
        "(docs/reliability.md, 'SIGTERM to the shim'); compose files: tests/unit/test_compose.py",
    ),
    "install": (
        r"python3 -m venv \S+|\S*pip install .+",
        "installs from a package index into system paths",
        "the Makefile's venv target installs amworker the same way for every CI run",
    ),
    "make": (
        r"make (run|test)\b.*",
        "`make test` runs this very suite; `make run` is a foreground server",
        ".ci/run runs `make test`; `make run` is `amworker init-db` + `amworker run`, "
        "whose parts run here (init-db, shim, Celery worker, submit)",
    ),
}

#: Paths of a real install -> their place under the test's temporary root.
MOVED_ROOTS = ("/etc/amworker", "/usr/lib/archivematica", "/usr/share/archivematica",
               "/var/archivematica/sharedDirectory", "/etc/default")
_MOVED = re.compile(r"(?<![\w/.-])(" + "|".join(re.escape(r) for r in MOVED_ROOTS) + r")(?![\w-])")
#: Flower's port in the docs; a free one is used instead.
FLOWER_PORT = "5555"

_MARKER = re.compile(r"^\s*<!--\s*doctest:\s*([\w-]+)\s*(.*?)\s*-->\s*$")
_FENCE = re.compile(r"^(\s*)```\s*([\w-]*)\s*$")


@dataclass(frozen=True)
class Block:
    """One fenced block of a doc page and its doctest marker."""

    path: Path
    line: int
    language: str
    kind: str | None
    argument: str
    body: str

    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"

    def commands(self) -> list[tuple[str, list[str]]]:
        """``(command, expected output lines)``; continuation lines joined."""
        lines = self.body.splitlines()
        if not any(line.startswith("$ ") for line in lines):
            return [(line, []) for line in lines if line.strip() and not line.startswith("#")]
        result: list[tuple[str, list[str]]] = []
        for line in lines:
            if line.startswith("$ "):
                result.append((line[2:], []))
            elif result and result[-1][0].endswith("\\"):
                result[-1] = (result[-1][0][:-1] + line.strip(), result[-1][1])
            elif result and line.strip():
                result[-1][1].append(line)
        return result


def read_blocks(path: Path) -> list[Block]:
    """Every fenced block of ``path``, with the marker on the line before it (if any)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    index = 0
    previous = ""
    while index < len(lines):
        opening = _FENCE.match(lines[index])
        if opening is None:
            if lines[index].strip():
                previous = lines[index]
            index += 1
            continue
        indent, language = opening.group(1), opening.group(2)
        body: list[str] = []
        index += 1
        while index < len(lines) and lines[index].strip() != "```":
            line = lines[index]
            body.append(line[len(indent):] if line.startswith(indent) else line.lstrip())
            index += 1
        marker = _MARKER.match(previous)
        blocks.append(Block(path, index - len(body), language,
                            marker.group(1) if marker else None,
                            marker.group(2) if marker else "", "\n".join(body) + "\n"))
        previous = ""
        index += 1
    return blocks


def all_blocks() -> list[Block]:
    return [block for path in DOC_FILES if path.exists() for block in read_blocks(path)]


# -- the convention itself (fast; no services) -----------------------------------


def test_docs_exist() -> None:
    for name in ("operations.md", "migrating.md", "scripts.md", "reliability.md", "design.md"):
        assert (ROOT / "docs" / name).exists(), name


def test_the_tree_tables_name_every_package() -> None:
    # design.md says which process each package runs in, README.md's layout
    # where to look: a new package must take its place in both.
    packages = {path.parent.name for path in (ROOT / "worker").glob("*/__init__.py")}
    assert {"batch", "pool", "cli", "codec", "contract", "scripts"} <= packages
    for page in (ROOT / "docs" / "design.md", ROOT / "README.md"):
        text = page.read_text(encoding="utf-8")
        missing = sorted(name for name in packages if f"`worker/{name}/`" not in text)
        assert not missing, f"{page.name} does not place: {missing}"


def test_every_shell_block_says_how_it_is_tested() -> None:
    problems = []
    for block in all_blocks():
        if block.language not in SHELL_LANGUAGES:
            continue
        if block.kind not in {"run", "daemon", "not-here"}:
            problems.append(f"{block.where()}: shell block without a doctest marker")
        elif block.kind == "not-here":
            if block.argument not in NOT_HERE:
                problems.append(f"{block.where()}: unknown not-here key {block.argument!r}")
                continue
            pattern = NOT_HERE[block.argument][0]
            problems.extend(
                f"{block.where()}: {command!r} is not a {block.argument!r} command"
                for command, _ in block.commands()
                if not re.fullmatch(pattern, command.split("  #")[0].strip())
            )
    assert not problems, "\n".join(problems)


def test_commands_that_cannot_run_here_are_listed_explicitly() -> None:
    """The full list, so a reviewer sees every command the doc tests do not run."""
    listed = {
        (block.argument, command)
        for block in all_blocks()
        if block.kind == "not-here"
        for command, _ in block.commands()
    }
    for key, command in sorted(listed):
        print(f"not run here ({key}: {NOT_HERE[key][1]}; covered by {NOT_HERE[key][2]}): {command}")
    assert {key for key, _ in listed} <= set(NOT_HERE)


def test_every_amworker_variable_in_the_docs_exists() -> None:
    for path in DOC_FILES:
        if not path.exists():
            continue
        named = set(re.findall(r"\bAMWORKER_[A-Z0-9_]*[A-Z0-9]", path.read_text()))
        assert named <= KNOWN_VARIABLES, f"{path.name}: {sorted(named - KNOWN_VARIABLES)}"


def test_the_settings_table_lists_every_setting() -> None:
    table = (ROOT / "docs" / "operations.md").read_text()
    missing = [name for name in KNOWN_VARIABLES if f"| `{name}` |" not in table]
    assert not missing, f"docs/operations.md 'Every setting' lacks {sorted(missing)}"


def exposed_metric_names() -> set[str]:
    """Every sample name the shim's and the workers' collectors can expose."""
    from prometheus_client import CollectorRegistry

    from worker.batch.metrics import ShimMetrics
    from worker.pool.job_metrics import JobMetrics

    suffixes = {"counter": ("_total",), "histogram": ("", "_bucket", "_sum", "_count"),
                "gauge": ("",)}
    names: set[str] = set()
    for build in (ShimMetrics, JobMetrics):
        registry = CollectorRegistry()
        build(registry)
        for family in registry.collect():
            names.update(family.name + suffix for suffix in suffixes.get(family.type, ("",)))
    return names


def test_metric_names_in_the_docs_are_the_exposed_ones() -> None:
    exposed = exposed_metric_names()
    for path in DOC_FILES:
        if not path.exists():
            continue
        named = set(re.findall(r"`((?:amworker|mcpclient)_[a-z_]+)`", path.read_text()))
        assert named <= exposed, f"{path.name} names metrics nothing exposes: {sorted(named - exposed)}"
    documented = set(re.findall(r"`((?:amworker|mcpclient)_[a-z_]+)`",
                                (ROOT / "docs" / "operations.md").read_text()))
    families = {n for n in exposed if not n.endswith(("_bucket", "_sum", "_count"))}
    assert families <= documented, f"undocumented metrics: {sorted(families - documented)}"


def test_envfile_blocks_build_settings(tmp_path: Path) -> None:
    blocks = [b for b in all_blocks() if b.kind == "envfile"]
    assert blocks
    write_files(tmp_path, shared=tmp_path / "shared")
    for block in blocks:
        env = {}
        for line in block.body.splitlines():
            if line.strip() and not line.startswith("#"):
                name, _, value = line.partition("=")
                env[name.strip()] = move_paths(value.strip(), tmp_path, tmp_path / "shared")
        settings = Settings.from_env(env)
        assert settings.gearman_servers, block.where()
        if "ARCHIVEMATICA_MCPCLIENT_CLIENT_DATABASE" in env and "AMWORKER_DATABASE_URL" not in env:
            assert settings.database_url.startswith("mysql://"), block.where()


# -- running the pages --------------------------------------------------------------


def move_paths(text: str, root: Path, shared: Path) -> str:
    def moved(match: re.Match[str]) -> str:
        if match.group(1) == "/var/archivematica/sharedDirectory":
            return str(shared)
        return f"{root}{match.group(1)}"

    return _MOVED.sub(moved, text)


def write_files(root: Path, *, shared: Path, only: Path | None = None) -> None:
    """The stand-in Archivematica tree, then every ``file`` block of the docs."""
    mcpclient = root / "usr/lib/archivematica/MCPClient"
    (mcpclient / "clientScripts").mkdir(parents=True, exist_ok=True)
    (mcpclient / "assets").mkdir(exist_ok=True)
    (mcpclient / "settings").mkdir(exist_ok=True)
    (root / "usr/lib/archivematica/archivematicaCommon").mkdir(exist_ok=True)
    (root / "usr/share/archivematica/dashboard").mkdir(parents=True, exist_ok=True)
    (mcpclient / "clientScripts/__init__.py").write_text("")
    (mcpclient / "clientScripts/normalize.py").write_text(
        '"""Stand-in for Archivematica\'s normalize: uses the 1.x import path."""\n'
        "from client.job import Job  # noqa: F401 - resolved by amworker's import hook\n\n\n"
        "def call(jobs):\n"
        "    for job in jobs:\n"
        "        with job.JobContext():\n"
        '            job.pyprint("normalized", *job.args[1:])\n'
    )
    (mcpclient / "archivematicaClientModules").write_text(
        "[supportedBatchCommands]\nnormalize_v1.0 = normalize\n")
    (mcpclient / "settings/__init__.py").write_text("")
    (mcpclient / "settings/common.py").write_text(
        '"""Stand-in for Archivematica\'s settings.common: its own apps and DATABASES."""\n'
        "import os\n\nimport dj_database_url\n\n"
        'DATABASES = {"default": dj_database_url.parse(os.environ["AMWORKER_DATABASE_URL"])}\n'
        'SECRET_KEY = "stand-in"\nUSE_TZ = True\nTIME_ZONE = "UTC"\n'
        'INSTALLED_APPS = ("django.contrib.contenttypes", "django.contrib.auth")\n'
    )
    for block in all_blocks():
        if block.kind == "file" and (only is None or block.path == only):
            target = Path(move_paths(block.argument, root, shared))
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(block.body)


def expect(output: str, expected: list[str], where: str, command: str) -> None:
    """Each expected line matches a later output line, in order (``...`` = anything)."""
    lines = output.splitlines()
    position = 0
    for wanted in expected:
        pattern = ".*".join(re.escape(part) for part in wanted.strip().split("..."))
        for index in range(position, len(lines)):
            if re.fullmatch(pattern, lines[index].strip()):
                position = index + 1
                break
        else:
            pytest.fail(f"{where}: `{command}` printed no line like {wanted!r}:\n{output}")


class Session:
    """One page's shell session: its environment, and what it started."""

    def __init__(self, stack: Stack, root: Path, flower_port: int) -> None:
        self.stack = stack
        self.root = root
        self.flower_port = flower_port
        self.env = {**stack.env, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
                    "HOME": str(root)}

    def localise(self, command: str) -> str:
        command = move_paths(command, self.root, self.stack.workdir / "shared")
        return re.sub(rf"\b{FLOWER_PORT}\b", str(self.flower_port), command)

    def run(self, block: Block) -> None:
        commands = block.commands()
        env_dump = self.root / "session.env"
        script = ["exec 2>&1", f"cd {shlex.quote(str(ROOT))}"]
        for number, (command, _) in enumerate(commands):
            script += [f"printf '\\n@@@BEGIN {number}@@@\\n'", self.localise(command),
                       f"printf '\\n@@@END {number} %s@@@\\n' $?"]
        script.append(f"env -0 > {shlex.quote(str(env_dump))}")
        done = subprocess.run(["bash", "-c", "\n".join(script)], env=self.env, cwd=ROOT,
                              capture_output=True, text=True, timeout=240)
        output = done.stdout
        for number, (command, expected) in enumerate(commands):
            found = re.search(rf"@@@BEGIN {number}@@@\n(.*?)\n@@@END {number} (\d+)@@@",
                              output, re.DOTALL)
            assert found, f"{block.where()}: `{command}` did not run:\n{output}"
            text, code = found.group(1), int(found.group(2))
            assert code == 0, f"{block.where()}: `{command}` exited {code}:\n{text}"
            expect(text, expected, block.where(), command)
        self.env = dict(
            item.split("=", 1) for item in env_dump.read_text().split("\0") if "=" in item)

    def daemon(self, block: Block) -> None:
        for number, (command, _) in enumerate(block.commands()):
            command = self.localise(command)
            if command.startswith("export "):
                self.run(Block(block.path, block.line, "console", "run", "", f"$ {command}\n"))
                continue
            proc = spawn(f"doc-{block.line}-{number}", ["bash", "-c", f"exec {command}"],
                         env=self.env, workdir=self.stack.workdir)
            self.stack.procs.append(proc)
            self.wait_ready(command, proc, block)

    def wait_ready(self, command: str, proc: Proc, block: Block) -> None:
        argv = shlex.split(command)
        ready: Callable[[], bool]
        if argv[:4] == ["celery", "-A", "worker", "worker"]:
            node = argv[argv.index("--hostname") + 1].replace("%h", socket.gethostname())
            ready = lambda: self.pings(node)  # noqa: E731
        elif argv[:2] == ["amworker", "shim"]:
            ready = lambda: self.stack._registered(proc.pid, 1)  # noqa: E731
        elif argv[:4] == ["celery", "-A", "worker", "flower"] or argv[:2] == ["amworker", "flower"]:
            ready = lambda: accepts(self.flower_port)  # noqa: E731
        else:
            pytest.fail(f"{block.where()}: no readiness probe for daemon `{command}`")
        wait_until(lambda: ready() or not proc.alive(), timeout=90, interval=0.3,
                   what=f"{block.where()}: `{command}`")
        assert proc.alive(), f"{block.where()}: `{command}` died:\n{proc.output()}"

    def pings(self, node: str) -> bool:
        return subprocess.run(
            [str(BIN / "celery"), "-A", "worker", "inspect", "ping", "-t", "1", "-d", node],
            env=self.env, cwd=ROOT, capture_output=True, timeout=30,
        ).returncode == 0


#: Pages whose flow starts from amworker's bundled scripts; the others start
#: from the stand-in Archivematica tree, as after docs/migrating.md.
BUNDLED_PAGES = {"README.md", "migrating.md"}
#: Pages whose commands assume services a not-here command started (README:
#: `make run`); the test starts the same ones.
GIVEN_SERVICES = {"README.md"}


def runnable_pages() -> list[Path]:
    return [path for path in DOC_FILES if path.exists()
            and any(b.kind in {"run", "daemon"} for b in read_blocks(path))]


@contextlib.contextmanager
def page_session(path: Path, tmp_path: Path) -> Iterator[Session]:
    root = tmp_path / "root"
    root.mkdir()
    workdir = tmp_path / "stack"
    workdir.mkdir()
    mcpclient = root / "usr/lib/archivematica/MCPClient"
    if path.name in BUNDLED_PAGES:
        scripts, modules = "worker.clientScripts", Path(BUNDLED_MODULES_FILE)
        extra = {}
    else:
        scripts, modules = "clientScripts", mcpclient / "archivematicaClientModules"
        extra = {"PYTHONPATH": f"{ROOT}{os.pathsep}{mcpclient}"}
    with stack(workdir, env=extra, scripts=scripts, modules_file=modules) as running:
        write_files(root, shared=workdir / "shared", only=path)
        session = Session(running, root, free_port())
        # Archivematica's database has the Tasks table; so does the stand-in.
        subprocess.run([str(BIN / "amworker"), "init-db"], env=session.env, cwd=ROOT,
                       check=True, capture_output=True, timeout=60)
        if path.name in GIVEN_SERVICES:
            running.celery_worker("given", concurrency=2)
            running.shim("given-shim")
        yield session


@pytest.mark.integration
@pytest.mark.timeout(600)
@pytest.mark.parametrize("path", runnable_pages(), ids=lambda p: p.name)
def test_page_commands_run(path: Path, tmp_path: Path) -> None:
    with page_session(path, tmp_path) as session:
        for block in read_blocks(path):
            if block.kind == "run":
                session.run(block)
            elif block.kind == "daemon":
                session.daemon(block)
