"""Shared fixtures: real databases (MariaDB and SQLite), never mocks, and never skipped.

MariaDB is reached at $TEST_MYSQL_HOST:$TEST_MYSQL_PORT (default 127.0.0.1:3306, user
root, empty password, database test). If it is not there the tests FAIL: .ci/run starts
the server, and a silent skip would hide that the load path went untested.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import MySQLdb
import pandas as pd
import pytest

from devtools.emulator import moto_server
from devtools.local_airflow import PROJECT_ROOT, airflow_environment, mysql_connection
from devtools.strict_cognito import StrictCognitoProxy

# Before anything imports Airflow: a home of its own for the tests (SQLite metadata, our
# dags/ and plugins/), so that no test reads or writes ~/airflow.
# TEST_AIRFLOW_HOME gives concurrent test sessions on one checkout a metadata database each.
os.environ.update(airflow_environment(Path(os.environ.get("TEST_AIRFLOW_HOME", PROJECT_ROOT / ".airflow" / "tests"))))

from identity_sync.sql import MYSQL, SQLITE, Dialect, schema_statement, statement
from identity_sync.table import UsersTable

MYSQL_SETTINGS = {
    "host": os.environ.get("TEST_MYSQL_HOST", "127.0.0.1"),
    "port": int(os.environ.get("TEST_MYSQL_PORT", "3306")),
    "user": os.environ.get("TEST_MYSQL_USER", "root"),
    "password": os.environ.get("TEST_MYSQL_PASSWORD", ""),
    "database": os.environ.get("TEST_MYSQL_DATABASE", "test"),
}
ALL_COLUMNS = ["UserID", "InternalUserID", "CognitoID", "Email", "FirstName", "LastName"]
_running: list[pytest.Item] = []  # the test being set up or run, for the marker check in mysql_connect


def _uses_mariadb(item: pytest.Item) -> bool:
    params = getattr(getattr(item, "callspec", None), "params", {})
    return "mariadb_table" in getattr(item, "fixturenames", ()) or "mariadb" in params.values()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests on the shared server through the table fixtures carry the ``mariadb`` marker."""
    for item in items:
        if _uses_mariadb(item) and item.get_closest_marker("mariadb") is None:
            item.add_marker(pytest.mark.mariadb)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    _running[:] = [item]


def mysql_airflow_connection(database: str | None = None) -> str:
    """The Airflow connection URI of the test server, from the same TEST_MYSQL_* settings."""
    settings = MYSQL_SETTINGS
    return mysql_connection(
        settings["host"], settings["port"], database or settings["database"], settings["user"], settings["password"]
    )


def mysql_connect() -> Any:
    """A connection to the shared server; only a test marked ``mariadb`` may ask for one."""
    if _running and _running[0].get_closest_marker("mariadb") is None:
        pytest.fail(f"{_running[0].nodeid} uses the MariaDB server but is not marked @pytest.mark.mariadb")
    try:
        return MySQLdb.connect(charset="utf8mb4", **MYSQL_SETTINGS)
    except MySQLdb.OperationalError as exc:
        pytest.fail(
            f"MariaDB/MySQL is not reachable at {MYSQL_SETTINGS['host']}:{MYSQL_SETTINGS['port']} ({exc}). "
            "Start it (e.g. `start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd`) "
            "or run `make test`, which does.",
            pytrace=False,
        )


class TableUnderTest:
    """A fresh Users table on a real database, with helpers to seed and inspect it."""

    def __init__(self, connect: Any, dialect: Dialect, name: str) -> None:
        self.connect = connect
        self.dialect = dialect
        self.name = name
        self.lock_name = f"test.{name}"
        self._admin = connect()
        self.execute(schema_statement(dialect, name))

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> None:
        cursor = self._admin.cursor()
        cursor.execute(sql, params)
        self._admin.commit()
        cursor.close()

    def insert(self, rows: list[tuple[str | None, str | None, str | None]]) -> None:
        """Rows of (InternalUserID, CognitoID, Email); names are filled in."""
        cursor = self._admin.cursor()
        cursor.executemany(
            statement("insert_user", self.dialect, self.name),
            [(iid, sub, email, "First", "Last") for iid, sub, email in rows],
        )
        self._admin.commit()
        cursor.close()

    def users_table(self) -> UsersTable:
        """The product's UsersTable on a new connection of its own."""
        return UsersTable(self.connect(), self.dialect, self.name, self.lock_name)

    def rows(self) -> pd.DataFrame:
        """Every row, every column the sync may write, ordered by UserID."""
        connection = self.connect()
        try:
            cursor = connection.cursor()
            quoted = self.dialect.identifier(self.name)
            cursor.execute(f"SELECT {', '.join(ALL_COLUMNS)} FROM {quoted} ORDER BY UserID")
            return pd.DataFrame.from_records(list(cursor.fetchall()), columns=ALL_COLUMNS)
        finally:
            connection.close()

    def drop(self) -> None:
        self.execute(f"DROP TABLE IF EXISTS {self.dialect.identifier(self.name)}")
        self._admin.close()


class InBackground:
    """``work()`` in a thread of its own, so that a test can hold it at a lock, act, and then read
    what it raised (``join``): how the apply meets a concurrent writer, a crash or a kill."""

    def __init__(self, work: Callable[[], object]) -> None:
        self.errors: list[BaseException] = []
        self._thread = threading.Thread(target=self._run, args=(work,))
        self._thread.start()

    def _run(self, work: Callable[[], object]) -> None:
        try:
            work()
        except BaseException as exc:
            self.errors.append(exc)

    def join(self, timeout: float = 60) -> list[BaseException]:
        self._thread.join(timeout=timeout)
        return self.errors


@pytest.fixture
def sqlite_table(tmp_path: Path) -> Iterator[TableUnderTest]:
    path = tmp_path / "users.sqlite"
    table = TableUnderTest(lambda: sqlite3.connect(path), SQLITE, "Users")
    yield table
    table.drop()


@pytest.fixture
def mariadb_table() -> Iterator[TableUnderTest]:
    mysql_connect().close()
    table = TableUnderTest(mysql_connect, MYSQL, f"Users_{uuid.uuid4().hex[:12]}")
    yield table
    table.drop()


@pytest.fixture(params=["sqlite", "mariadb"])
def any_table(request: pytest.FixtureRequest) -> TableUnderTest:
    """The same test on both databases the product supports."""
    return request.getfixturevalue(f"{request.param}_table")


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    """moto's server for a test module (its state is process-wide: use unique pool names)."""
    with moto_server() as url:
        yield url


@pytest.fixture
def proxy(moto_url: str) -> Iterator[StrictCognitoProxy]:
    """The strict layer in front of moto, with fresh counters for each test."""
    with StrictCognitoProxy(moto_url) as running:
        yield running
