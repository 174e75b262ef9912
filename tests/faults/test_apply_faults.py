"""Fault injection against the apply, on a private ``mariadbd`` this module starts and kills.

What issue 7 did by hand, as tests: the server SIGKILLed mid-apply (then restarted on the
same datadir: InnoDB's real crash recovery) and the applying process SIGKILLed
mid-transaction. Every time the table must be all-or-nothing and a rerun must converge.
(Another session writing while the apply runs: tests/integration/test_load.py, which holds
the apply between two statements on the shared server.) The shared server is never
touched here: it serves every test session on the machine.

The apply is held at a known point by a real database lock, not a mock: another session
locks the index gap of an e-mail the apply is about to insert, so the apply's INSERT waits
there with its UPDATEs done and uncommitted.
"""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devtools.private_mariadb import PrivateMariaDB
from identity_sync.extract import records_frame
from identity_sync.reconcile import Plan, plan_changes
from identity_sync.sql import MYSQL, schema_statement, statement
from identity_sync.table import UsersTable
from tests.conftest import InBackground

ROWS = 20_000
NEW_USERS = 200
BLOCKED_EMAIL = "zz-new0@example.com"  # the first new user's, after every other e-mail: a gap no UPDATE writes
WORKER = """
import pickle, sys
import MySQLdb
from identity_sync.sql import MYSQL
from identity_sync.table import UsersTable
host, port, table, plan_path = sys.argv[1:]
with open(plan_path, "rb") as f:
    plan = pickle.load(f)
connection = MySQLdb.connect(host=host, port=int(port), user="root", password="", database="test", charset="utf8mb4")
UsersTable(connection, MYSQL, table, "faults." + table).apply(plan)
"""


def iid(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012x}"


@pytest.fixture(scope="module")
def server() -> Iterator[PrivateMariaDB]:
    with PrivateMariaDB({"innodb_buffer_pool_size": "64M", "innodb_log_file_size": "48M"}) as running:
        yield running


@pytest.fixture
def table(server: PrivateMariaDB) -> str:
    """A fresh Users table of ROWS rows on the private server (prod subs: a restored environment)."""
    name = f"Users_{uuid.uuid4().hex[:12]}"
    connection = server.connect()
    try:
        cursor = connection.cursor()
        cursor.execute(schema_statement(MYSQL, name))
        rows = [(iid(i), f"prod-{i}", f"user{i}@example.com", "First", "Last") for i in range(ROWS)]
        cursor.executemany(statement("insert_user", MYSQL, name), rows)
        connection.commit()
    finally:
        connection.close()
    return name


def restore_pool() -> Any:
    """Every user relinked to a dev sub, one in ten with a new e-mail, and NEW_USERS new users."""
    records = [
        {
            "sub": f"dev-{i}",
            "username": f"u{i}",
            "email": f"user{i}@example.com" if i % 10 else f"renamed{i}@example.com",
            "internal_user_id": iid(i),
            "status": "CONFIRMED",
            "enabled": True,
            "email_verified": True,
            "given_name": "First",
            "family_name": "Last",
        }
        for i in range(ROWS)
    ]
    records += [
        {
            "sub": f"dev-new-{j}",
            "username": f"n{j}",
            "email": f"zz-new{j}@example.com",
            "internal_user_id": iid(ROWS + j),
            "status": "CONFIRMED",
            "enabled": True,
            "email_verified": True,
            "given_name": "New",
            "family_name": "User",
        }
        for j in range(NEW_USERS)
    ]
    return records_frame(records)


def users_table(server: PrivateMariaDB, name: str) -> UsersTable:
    return UsersTable(server.connect(), MYSQL, name, f"faults.{name}")


def snapshot(server: PrivateMariaDB, name: str) -> list[tuple[Any, ...]]:
    connection = server.connect()
    try:
        cursor = connection.cursor()
        cursor.execute(f"SELECT UserID, InternalUserID, CognitoID, Email FROM {MYSQL.identifier(name)} ORDER BY UserID")
        return list(cursor.fetchall())
    finally:
        connection.close()


def make_plan(server: PrivateMariaDB, name: str) -> Plan:
    users = users_table(server, name)
    try:
        plan = plan_changes(restore_pool(), users.read(), "keep")
    finally:
        users.connection.close()
    assert plan.rows_to_write == ROWS + NEW_USERS
    return plan


def expected_after(plan: Plan, before: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """The rows the plan leads to (new rows by InternalUserID: a rolled-back insert spends AUTO_INCREMENT values)."""
    new = {(r.UserID, r.column): r.new for r in plan.changes.itertuples()}
    rows = [(u, i, new.get((u, "CognitoID"), c), new.get((u, "Email"), e)) for u, i, c, e in before]
    inserts = plan.inserts.sort_values("InternalUserID")
    return rows + [(None, r.InternalUserID, r.CognitoID, r.Email) for r in inserts.itertuples()]


def without_new_ids(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    return [row if row[0] <= ROWS else (None, *row[1:]) for row in rows]


class GapHolder:
    """Another session holding the index gap of an e-mail the apply will insert: its INSERT waits."""

    def __init__(self, server: PrivateMariaDB, name: str) -> None:
        self.connection = server.connect()
        cursor = self.connection.cursor()
        cursor.execute("START TRANSACTION")
        cursor.execute(f"SELECT UserID FROM {MYSQL.identifier(name)} WHERE Email = %s FOR UPDATE", (BLOCKED_EMAIL,))
        cursor.fetchall()

    def release(self) -> None:
        try:
            self.connection.rollback()
            self.connection.close()
        except Exception:  # the server may have been killed under it
            pass


def wait_until_insert_waits(server: PrivateMariaDB, name: str, timeout: float = 30) -> None:
    """Until the apply's INSERT is blocked on the held gap: its UPDATEs have run, nothing is committed."""
    watcher = server.connect()
    try:
        cursor = watcher.cursor()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            cursor.execute(
                "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO LIKE %s",
                (f"INSERT INTO {MYSQL.identifier(name)}%",),
            )
            if cursor.fetchone()[0]:
                return
            time.sleep(0.05)
        raise AssertionError("the apply never reached its INSERT")
    finally:
        watcher.close()


def converge(server: PrivateMariaDB, name: str, plan: Plan, expected: list[tuple[Any, ...]]) -> None:
    """A rerun of the same plan finishes the job; a fresh plan then has nothing left to write."""
    users = users_table(server, name)
    try:
        result = users.apply(plan)
        assert (result.cognito_ids_set, result.rows_inserted) == (ROWS, NEW_USERS)
        assert without_new_ids(snapshot(server, name)) == expected
        assert plan_changes(restore_pool(), users.read(), "keep").rows_to_write == 0
    finally:
        users.connection.close()


def test_server_killed_mid_apply_leaves_the_table_whole_and_shows_the_root_error(
    server: PrivateMariaDB, table: str
) -> None:
    """SIGKILL of mariadbd with the UPDATEs done, uncommitted: crash recovery undoes them; a rerun converges.

    The error raised is the one the apply's statement got (2013, lost the connection during
    the query), not the follow-on of the rollback (2006, server has gone away), which hid it.
    """
    before = snapshot(server, table)
    plan = make_plan(server, table)
    holder = GapHolder(server, table)
    applying = InBackground(lambda: users_table(server, table).apply(plan))
    try:
        wait_until_insert_waits(server, table)
        server.kill(signal.SIGKILL)
        errors = applying.join()
    finally:
        holder.release()
        if server.process is None:
            server.start()

    assert len(errors) == 1
    assert errors[0].args[0] == 2013 and "gone away" not in str(errors[0]), repr(errors[0])
    assert snapshot(server, table) == before  # all or nothing
    converge(server, table, plan, expected_after(plan, before))


def test_applying_process_killed_mid_transaction_writes_nothing_and_a_rerun_converges(
    server: PrivateMariaDB, table: str, tmp_path: Path
) -> None:
    before = snapshot(server, table)
    plan = make_plan(server, table)
    plan_path = tmp_path / "plan.pickle"
    plan_path.write_bytes(pickle.dumps(plan))
    holder = GapHolder(server, table)
    root = Path(__file__).resolve().parents[2]
    env = os.environ | {"PYTHONPATH": f"{root / 'plugins'}{os.pathsep}{root}"}
    worker = subprocess.Popen(
        [sys.executable, "-c", WORKER, server.bind_address, str(server.port), table, str(plan_path)],
        env=env,
        cwd=root,
    )
    try:
        wait_until_insert_waits(server, table)
        worker.send_signal(signal.SIGKILL)
        assert worker.wait(timeout=30) == -signal.SIGKILL
    finally:
        if worker.poll() is None:
            worker.kill()
        holder.release()

    # The server rolls the dead session back and frees its lock; until then a reader sees the old rows.
    deadline = time.monotonic() + 60
    while other_sessions(server) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert snapshot(server, table) == before
    converge(server, table, plan, expected_after(plan, before))


def other_sessions(server: PrivateMariaDB) -> int:
    watcher = server.connect()
    try:
        cursor = watcher.cursor()
        cursor.execute(
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID <> CONNECTION_ID() AND USER = 'root'"
        )
        return int(cursor.fetchone()[0])
    finally:
        watcher.close()
