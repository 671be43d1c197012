"""A throwaway PostgreSQL server (Debian's postgresql, installed by .ci/run) for the tests that need a real one:
one server per test process, started on first use, and a fresh database per test. initdb and a server start
cost seconds; a database costs milliseconds, and each test still sees an empty one."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

PG_BIN = sorted(glob.glob("/usr/lib/postgresql/*/bin"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    bin_dir: str
    port: int
    as_user: list[str]

    def run(self, *cmd: str) -> subprocess.CompletedProcess:
        return subprocess.run([*self.as_user, *cmd], check=True, capture_output=True, text=True, timeout=120)

    def url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"


@pytest.fixture(scope="session")
def postgres_server():
    if not PG_BIN:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL server binaries missing: .ci/run must install Debian's postgresql")
        pytest.skip("needs Debian's postgresql (apt-get install postgresql)")
    # pytest's temp dirs are root-only; the server's user needs its own readable place
    home = Path(tempfile.mkdtemp(prefix="grelu-pg-"))
    os.chmod(home, 0o755)
    data = home / "data"
    data.mkdir()
    as_user = []
    if os.geteuid() == 0:  # the server refuses to run as root
        shutil.chown(data, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    # a port the kernel picked just now; with several test processes each starts its own server on its own port
    server = Server(PG_BIN[-1], free_port(), as_user)
    server.run(f"{server.bin_dir}/initdb", "-D", str(data), "-U", "postgres", "--auth=trust")
    server.run(f"{server.bin_dir}/pg_ctl", "-D", str(data), "-l", str(data / "log"), "-w", "-o",
               f"-p {server.port} -k {data} -c listen_addresses=127.0.0.1", "start")
    try:
        yield server
    finally:
        subprocess.run([*as_user, f"{server.bin_dir}/pg_ctl", "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True, timeout=120)
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def postgres(postgres_server):
    """The URL of an empty database of its own on the session's server."""
    name = f"t{uuid.uuid4().hex[:16]}"
    host = ["-h", "127.0.0.1", "-p", str(postgres_server.port), "-U", "postgres"]
    postgres_server.run(f"{postgres_server.bin_dir}/createdb", *host, name)
    yield postgres_server.url(name)
    # a killed worker's connection may linger a moment: --force ends it (the database is the test's alone)
    subprocess.run([*postgres_server.as_user, f"{postgres_server.bin_dir}/dropdb", *host, "--force", "--if-exists", name],
                   capture_output=True, timeout=120)
