"""The private-server launcher the bench and the fault tests stand on: a real mariadbd, killed for real."""

from __future__ import annotations

import os
import signal

import pytest

from devtools.private_mariadb import PrivateMariaDB


def _rows(server: PrivateMariaDB) -> list[tuple[int, str]]:
    conn = server.connect()
    try:
        cursor = conn.cursor()
        cursor.execute("SELECT id, note FROM crash_probe ORDER BY id")
        return [tuple(row) for row in cursor.fetchall()]
    finally:
        conn.close()


def test_settings_reach_the_server_and_it_is_not_the_shared_one() -> None:
    with PrivateMariaDB({"innodb_buffer_pool_size": "64M"}) as server:
        assert server.port != 3306
        conn = server.connect()
        cursor = conn.cursor()
        cursor.execute("SELECT @@innodb_buffer_pool_size, @@local_infile, @@port, @@datadir, @@tmpdir")
        pool, local_infile, port, datadir, tmpdir = cursor.fetchone()
        conn.close()
        assert pool == 64 * 1024 * 1024
        assert local_infile == 1
        assert port == server.port
        assert datadir.rstrip("/") == str(server.datadir)
        assert tmpdir.rstrip("/") == str(server.tmpdir)  # not the shared /tmp, which others clean


def test_sigkill_then_restart_keeps_committed_rows_and_drops_the_open_transaction() -> None:
    with PrivateMariaDB() as server:
        conn = server.connect()
        cursor = conn.cursor()
        cursor.execute("CREATE TABLE crash_probe (id INT PRIMARY KEY, note VARCHAR(20)) ENGINE=InnoDB")
        cursor.execute("INSERT INTO crash_probe VALUES (1, 'committed'), (2, 'committed')")
        conn.commit()
        cursor.execute("INSERT INTO crash_probe VALUES (3, 'in flight')")  # never committed
        pid = server.process.pid if server.process else None

        server.kill(signal.SIGKILL)
        assert pid is not None
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)  # the old server is really gone

        server.start()  # same datadir: InnoDB crash recovery
        assert _rows(server) == [(1, "committed"), (2, "committed")]


def test_cleanup_stops_the_server_and_removes_its_directory() -> None:
    server = PrivateMariaDB()
    with server:
        pid = server.process.pid if server.process else None
        assert server.datadir.is_dir()
    assert pid is not None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert not server.base_dir.exists()
