"""A private ``mariadbd`` with its own datadir, port and socket, for benches and fault tests.

The shared server at 127.0.0.1:3306 serves every test session on the machine; a bench that
resizes the buffer pool or a test that SIGKILLs the server must not touch it. This starts
a throw-away server under a temporary directory, with the settings the caller passes, and
can kill it with any signal and restart it on the same datadir (crash recovery is then
InnoDB's real one).

Usage::

    with PrivateMariaDB({"innodb_buffer_pool_size": "2G"}) as server:
        conn = server.connect()
        ...
        server.kill(signal.SIGKILL)
        server.start()          # same datadir: committed data must be there

The readiness check and the set-up statements go through the Unix socket; clients use
TCP on ``bind_address:port`` (the bench puts bench/delay_proxy.py in front of it to
emulate a network link).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import MySQLdb

MARIADBD = shutil.which("mariadbd", path="/usr/sbin:/usr/bin:/sbin:/bin") or "/usr/sbin/mariadbd"
INSTALL_DB = shutil.which("mariadb-install-db") or shutil.which("mysql_install_db") or "mariadb-install-db"
DATABASE = "test"
PR_SET_PDEATHSIG = 1  # prctl(2)

# Small and quick by default; callers override (the bench passes the production sizes).
DEFAULT_SETTINGS: dict[str, str] = {
    "innodb_buffer_pool_size": "128M",
    "innodb_log_file_size": "96M",
    "innodb_flush_log_at_trx_commit": "1",
    "local_infile": "ON",
    "skip_name_resolve": "ON",
    "character_set_server": "utf8mb4",
    "collation_server": "utf8mb4_general_ci",
    "max_allowed_packet": "256M",
}


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL it when the process that started it dies (no orphaned servers)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


class PrivateMariaDB:
    """One private server: ``start``, ``connect``, ``kill``, ``stop``, ``cleanup``.

    ``bind_address`` is where it listens for TCP; root has an
    empty password from anywhere, which is fine for a server that lives in a temp dir.
    """

    def __init__(
        self,
        settings: Mapping[str, str] | None = None,
        *,
        bind_address: str = "127.0.0.1",
        port: int | None = None,
        base_dir: Path | None = None,
        ready_timeout: float = 60.0,
    ) -> None:
        self.settings = {**DEFAULT_SETTINGS, **(settings or {})}
        self.bind_address = bind_address
        self.port = port if port is not None else free_port()
        self._own_dir = base_dir is None
        self.base_dir = Path(base_dir or tempfile.mkdtemp(prefix="private-mariadb-"))
        self.datadir = self.base_dir / "data"
        self.socket = self.base_dir / "mysqld.sock"
        self.log = self.base_dir / "error.log"
        self.tmpdir = self.base_dir / "tmp"  # its own: a shared /tmp gets cleaned by others mid-statement
        self.ready_timeout = ready_timeout
        self.process: subprocess.Popen[bytes] | None = None

    # -- lifecycle -------------------------------------------------------------------
    def __enter__(self) -> PrivateMariaDB:
        try:
            self.start()
        except BaseException:
            self.cleanup()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.cleanup()

    def start(self) -> None:
        """Start the server (initialising the datadir the first time) and wait until it answers."""
        if self.process is not None and self.process.poll() is None:
            raise RuntimeError(f"private mariadbd already running (pid {self.process.pid})")
        if not (self.datadir / "mysql").is_dir():
            self._install()
        self.tmpdir.mkdir(exist_ok=True)
        command = [MARIADBD, *self._arguments()]
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=_die_with_parent
            )
        self._wait_ready()
        self._admin(
            "CREATE USER IF NOT EXISTS 'root'@'%' IDENTIFIED BY ''",
            "GRANT ALL PRIVILEGES ON *.* TO 'root'@'%' WITH GRANT OPTION",
            f"CREATE DATABASE IF NOT EXISTS `{DATABASE}`",
        )

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to the server and wait for it to exit (SIGKILL: a crash, no clean shutdown)."""
        if self.process is None:
            return
        if self.process.poll() is None:
            os.kill(self.process.pid, sig)
            self.process.wait(timeout=120)
        self.process = None

    def stop(self) -> None:
        """A clean shutdown (SIGTERM); the datadir stays for a later ``start``."""
        self.kill(signal.SIGTERM)

    def restart(self) -> None:
        self.stop()
        self.start()

    def cleanup(self) -> None:
        """Stop the server if it runs (SIGKILL after a grace period) and remove the temp dir."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)
        self.process = None
        if self._own_dir:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    # -- clients ---------------------------------------------------------------------
    def connect(self, *, host: str | None = None, **options: Any) -> Any:
        """A MySQLdb connection over TCP to ``host`` (default: the bind address) as root."""
        return MySQLdb.connect(
            host=host or self.bind_address,
            port=self.port,
            user="root",
            password="",
            database=DATABASE,
            charset="utf8mb4",
            **options,
        )

    def connect_socket(self, **options: Any) -> Any:
        """A MySQLdb connection over the Unix socket."""
        return MySQLdb.connect(
            unix_socket=str(self.socket), user="root", password="", database=DATABASE, charset="utf8mb4", **options
        )

    def connection_settings(self, host: str | None = None) -> dict[str, Any]:
        """host/port/user/password/database, the shape tests' ``MYSQL_SETTINGS`` has."""
        return {
            "host": host or self.bind_address,
            "port": self.port,
            "user": "root",
            "password": "",
            "database": DATABASE,
        }

    # -- internals -------------------------------------------------------------------
    def _arguments(self) -> list[str]:
        fixed = [
            "--no-defaults",
            f"--datadir={self.datadir}",
            f"--socket={self.socket}",
            f"--port={self.port}",
            f"--bind-address={self.bind_address}",
            f"--pid-file={self.base_dir / 'mysqld.pid'}",
            f"--log-error={self.log}",
            f"--tmpdir={self.tmpdir}",
            "--user=root",
        ]
        return fixed + [f"--{name.replace('_', '-')}={value}" for name, value in self.settings.items()]

    def _install(self) -> None:
        self.datadir.mkdir(parents=True, exist_ok=True)
        command = [
            INSTALL_DB,
            "--no-defaults",
            f"--datadir={self.datadir}",
            "--user=root",
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
        ]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"{INSTALL_DB} failed ({result.returncode}): {result.stderr[-2000:]}")

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout
        while True:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"private mariadbd exited with {self.process.returncode}: {self._log_tail()}")
            with contextlib.suppress(MySQLdb.OperationalError):
                MySQLdb.connect(unix_socket=str(self.socket), user="root", password="", connect_timeout=2).close()
                return
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"private mariadbd not ready after {self.ready_timeout:.0f} s: {self._log_tail()}")
            time.sleep(0.1)

    def _admin(self, *statements: str) -> None:
        conn = MySQLdb.connect(unix_socket=str(self.socket), user="root", password="")
        try:
            cursor = conn.cursor()
            for sql in statements:
                cursor.execute(sql)
            conn.commit()
        finally:
            conn.close()

    def _log_tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-2000:]
        except OSError:
            return "(no error log)"
