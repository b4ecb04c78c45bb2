"""Workbench fixtures: a real PostgreSQL server on loopback (started here), a database per test on SQLite
and on PostgreSQL, and a running workbench server process."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

BIN = Path(sys.executable).parent
PG_ENV = "ANNOTUNE_TEST_POSTGRES"  # use this server (a URL) instead of starting one


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pg_bin() -> Path:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if not candidates:
        pytest.fail("PostgreSQL is not installed (no pg_ctl); install it (Debian: apt-get install postgresql) "
                    f"or point {PG_ENV} at a server")
    return Path(candidates[-1]).parent


def _as_postgres(command: list[str]) -> list[str]:
    # initdb and postgres refuse to run as root; Debian's package brings a `postgres` user.
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory) -> Iterator[str]:
    if os.environ.get(PG_ENV):
        yield os.environ[PG_ENV]
        return
    pg = _pg_bin()
    # Not under pytest's temp folder: that one is private to this user, and the server runs as `postgres`.
    root = Path(tempfile.mkdtemp(prefix="annotune-pg-"))
    data, sockets = root / "data", root / "sock"
    data.mkdir()
    sockets.mkdir()
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        for folder in (data, sockets):
            shutil.chown(folder, "postgres")
        os.chmod(root, 0o755)
    subprocess.run(_as_postgres([str(pg / "initdb"), "-D", str(data), "-U", "annotune", "--auth=trust",
                                 "--encoding=UTF8", "--no-sync"]), check=True, capture_output=True)
    port = free_port()
    options = f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300"
    subprocess.run(_as_postgres([str(pg / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(root / "log"),
                                 "-w", "start"]), check=True, capture_output=True)
    try:
        yield f"postgresql://annotune@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(_as_postgres([str(pg / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]),
                       capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def _admin_sql(server: str, statement: str) -> None:
    import psycopg

    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(statement)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path) -> Iterator[str]:
    """A fresh, empty database URL: a SQLite file, or a new database on the test PostgreSQL server."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'workbench.db'}"
        return
    server = request.getfixturevalue("postgres_server")
    name = f"t_{uuid.uuid4().hex[:12]}"
    _admin_sql(server, f"CREATE DATABASE {name}")
    yield server.rsplit("/", 1)[0] + f"/{name}"
    _admin_sql(server, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


class Server:
    """``annotune workbench serve`` in a child process."""

    def __init__(self, db_url: str, log: Path, extra: tuple[str, ...] = ()) -> None:
        self.db_url, self.log_path, self.extra = db_url, log, extra
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self) -> Server:
        self.log = self.log_path.open("a")
        self.process = subprocess.Popen(
            [str(BIN / "annotune"), "workbench", "serve", "--db", self.db_url, "--port", str(self.port),
             *self.extra], stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {self.log_path.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/api/health", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.2)
        raise RuntimeError(f"server did not start: {self.log_path.read_text()[-2000:]}")

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()  # SIGKILL: no shutdown handlers run
            self.process.wait()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
        self.log.close()


@pytest.fixture
def start_server(tmp_path) -> Iterator:
    servers: list[Server] = []

    def start(db_url: str, *extra: str) -> Server:
        server = Server(db_url, tmp_path / "server.log", extra).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(autouse=True)
def quick_password_hashing(monkeypatch):
    """In-process tests hash passwords with cheap argon2 settings; servers in child processes use the real ones."""
    from argon2 import PasswordHasher

    from annotune.annotate import store

    monkeypatch.setattr(store, "_hasher", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
