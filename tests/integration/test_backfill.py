"""The backfill's steps (backfill_steps) against moto behind StrictCognitoProxy, and real databases.

Each step is called directly, as the DAG's tasks call it, with Settings read from a tmp
environments.yaml and Airflow connections given as AIRFLOW_CONN_* variables: the
production code path (AwsBaseHook -> boto3 -> the proxy; DbApiHook -> MariaDB or SQLite).
Setup goes straight to moto (not through the proxy), so the proxy's counters hold only the
calls the code under test made. moto's state is process-wide: every pool has its own name.

tests/dags/test_backfill_dag_run.py runs the whole DAG; here each rule is checked at the
step that enforces it.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from devtools.emulator import aws_client
from devtools.local_airflow import aws_connection, connection_variable, sqlite_connection
from devtools.population import ATTRIBUTE, PoolUser, create_pool, create_users
from devtools.strict_cognito import StrictCognitoProxy
from identity_sync import backfill_writes
from identity_sync.backfill import BACKFILL_REASON as REASON
from identity_sync.backfill_records import ChunkOutcome
from identity_sync.backfill_steps import (
    inspect_step,
    plan_writes_step,
    prerequisites_step,
    refusals,
    review_step,
    select_environments,
    verify_step,
    write_chunk_step,
)
from identity_sync.backfill_writes import ChunkProgress
from identity_sync.cognito import CognitoHook, user_attributes
from identity_sync.config import SNAPSHOT_BASE_ENV_VAR, Settings, load_settings, parse_settings
from identity_sync.extract import extract_pool
from identity_sync.guards import RefusedError
from identity_sync.migrations import MIGRATIONS, pending_migrations
from identity_sync.ratelimit import QUOTAS
from identity_sync.reconcile import plan_changes
from identity_sync.report import RunFiles, read_csv_gz
from identity_sync.schedule import DEFAULT_WRITE_RATE, WRITE_SLOTS
from identity_sync.sql import MYSQL, SQLITE, Dialect, migration_statements, schema_statement, statement
from identity_sync.table import UsersTable
from tests.conftest import TableUnderTest, mysql_airflow_connection, mysql_connect

WRITE = "AdminUpdateUserAttributes"
CREATE = "AdminCreateUser"
WRITE_OPERATIONS = (WRITE, CREATE, "AddCustomAttributes")
V1 = "include/sql/migrations/V1__add_internal_user_id_column.sql"
V2 = "include/sql/migrations/V2__add_internal_user_id_unique_index.sql"
RATE = 25.0  # the quota: keeps the suite fast


def iid(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


# -- Cognito ----------------------------------------------------------------------------------


@pytest.fixture
def client(moto_url: str) -> Any:
    """Straight to moto: setup and inspection, never counted by the proxy."""
    return aws_client("cognito-idp", moto_url)


@pytest.fixture(autouse=True)
def aws_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws-credentials"))
    for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_RETRY_MODE", "AWS_MAX_ATTEMPTS", SNAPSHOT_BASE_ENV_VAR):
        monkeypatch.delenv(name, raising=False)


def new_pool(client: Any, attribute: str | None) -> str:
    return create_pool(client, f"bf-it-{uuid.uuid4().hex[:10]}", attribute=attribute)


def person(n: int, email: str | None = None, internal_id: str | None = None) -> PoolUser:
    return PoolUser(email or f"person{n}@example.com", internal_id, f"Given{n}", f"Family{n}")


def pool_users(client: Any, pool_id: str) -> dict[str, dict[str, str | None]]:
    """sub -> every attribute, listed straight from moto."""
    users: dict[str, dict[str, str | None]] = {}
    for page in client.get_paginator("list_users").paginate(UserPoolId=pool_id, PaginationConfig={"PageSize": 60}):
        for user in page["Users"]:
            attrs = user_attributes(user)
            users[attrs["sub"]] = attrs
    return users


def carried(client: Any, pool_id: str) -> dict[str, str | None]:
    """sub -> the id attribute's value (None when missing)."""
    return {sub: attrs.get(ATTRIBUTE) for sub, attrs in pool_users(client, pool_id).items()}


def by_email(client: Any, pool_id: str) -> dict[str, str | None]:
    """lower-case e-mail -> the id attribute's value."""
    return {str(a["email"]).lower(): a.get(ATTRIBUTE) for a in pool_users(client, pool_id).values()}


def schema_entry(client: Any, pool_id: str) -> dict[str, Any] | None:
    schema = client.describe_user_pool(UserPoolId=pool_id)["UserPool"]["SchemaAttributes"]
    return next((a for a in schema if a["Name"] == ATTRIBUTE), None)


def writes_made(proxy: StrictCognitoProxy) -> dict[str, int]:
    return {op: proxy.calls[op] + proxy.rejected[op] + proxy.throttled[op] for op in WRITE_OPERATIONS}


NO_WRITES = dict.fromkeys(WRITE_OPERATIONS, 0)


# -- tables -----------------------------------------------------------------------------------


class BackfillTable(TableUnderTest):
    """A Users table on a real database, current or (``legacy``) from before the migrations."""

    def __init__(self, connect: Callable[[], Any], dialect: Dialect, name: str, conn_json: str, legacy: bool) -> None:
        self.connect, self.dialect, self.name, self.lock_name = connect, dialect, name, f"test.{name}"
        self.conn_json, self.legacy = conn_json, legacy
        self._admin = connect()
        self.execute(schema_statement(dialect, name, legacy=legacy))

    def add(self, rows: list[tuple[str | None, str | None, str | None]]) -> None:
        """Rows of (InternalUserID, CognitoID, Email); a legacy table takes no id."""
        if not self.legacy:
            self.insert(rows)
            return
        assert all(row[0] is None for row in rows)
        cursor = self._admin.cursor()
        cursor.executemany(
            statement("insert_legacy_user", self.dialect, self.name),
            [(sub, email, "First", "Last") for _, sub, email in rows],
        )
        self._admin.commit()
        cursor.close()

    def full(self) -> pd.DataFrame:
        """Every column of every row, ordered by UserID."""
        connection = self.connect()
        try:
            cursor = connection.cursor()
            cursor.execute(f"SELECT * FROM {self.dialect.identifier(self.name)} ORDER BY UserID")
            columns = [d[0] for d in cursor.description]
            return pd.DataFrame.from_records(list(cursor.fetchall()), columns=columns)
        finally:
            connection.close()

    def pending(self) -> list[str]:
        users = self.users_table()
        try:
            return [m.script for m in pending_migrations(users)]
        finally:
            users.connection.close()


@pytest.fixture
def make_table(tmp_path: Path) -> Iterator[Callable[..., BackfillTable]]:
    made: list[BackfillTable] = []

    def make(kind: str = "mariadb", *, legacy: bool = False) -> BackfillTable:
        name = f"Users_bf_{uuid.uuid4().hex[:10]}"
        if kind == "mariadb":
            mysql_connect().close()
            table = BackfillTable(mysql_connect, MYSQL, name, mysql_airflow_connection(), legacy)
        else:
            path = tmp_path / f"{name}.sqlite"
            table = BackfillTable(lambda: sqlite3.connect(path), SQLITE, name, sqlite_connection(path), legacy)
        made.append(table)
        return table

    yield make
    for table in made:
        table.drop()


# -- settings and steps -----------------------------------------------------------------------


@pytest.fixture
def configure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, proxy: StrictCognitoProxy) -> Callable[..., Settings]:
    """environments.yaml in tmp_path: name -> (pool id, table, protected); connections as variables."""

    def configure(**environments: tuple[str, BackfillTable, bool]) -> Settings:
        monkeypatch.setenv(connection_variable("aws_bf_it"), aws_connection(proxy.url))
        raw = {}
        for name, (pool_id, table, protected) in environments.items():
            conn_id = f"users_db_bf_it_{name}"
            monkeypatch.setenv(connection_variable(conn_id), table.conn_json)
            raw[name] = {
                "aws_conn_id": "aws_bf_it",
                "user_pool_id": pool_id,
                "db_conn_id": conn_id,
                "users_table": table.name,
                "protected": protected,
            }
        path = tmp_path / "environments.yaml"
        path.write_text(yaml.safe_dump({"snapshot_base": f"file://{tmp_path / 'runs'}", "environments": raw}))
        return load_settings(path)

    return configure


def files(settings: Settings, env: str, run: str) -> RunFiles:
    return RunFiles.for_run(settings.snapshot_base, "cognito_user_backfill", run, env)


def prepare(
    settings: Settings,
    env: str,
    run: str = "run-1",
    *,
    dry_run: bool = False,
    apply_migration: bool = True,
    create_missing: bool = False,
    slots: int = 1,
) -> dict[str, Any]:
    """The steps before the writes, as the DAG runs them (approved beforehand); their records as one dict."""
    inspection = inspect_step(settings, env, files(settings, env, run), create_missing=create_missing)
    review_step(settings, [inspection], dry_run=dry_run, apply_migration=apply_migration, approved=True)
    summary = {**inspection.__dict__, "refusals": refusals(settings, inspection, apply_migration), "chunks": []}
    if dry_run:
        return summary
    prepared = prerequisites_step(settings, inspection, apply_migration=apply_migration)
    chunks = plan_writes_step(settings, prepared, create_missing=create_missing, slots=slots)
    return summary | {"ids_assigned": prepared.ids_assigned, "chunks": chunks}


def write_all(settings: Settings, summary: dict[str, Any], slots: int = 1) -> list[ChunkOutcome]:
    return [write_chunk_step(settings, chunk, rate=RATE, slots=slots) for chunk in summary["chunks"]]


def report(settings: Settings, env: str, name: str, run: str = "run-1") -> pd.DataFrame:
    """A .csv.gz report of the run, every value as text."""
    return read_csv_gz(files(settings, env, run), name)


def issues_by(settings: Settings, env: str, key: str, run: str = "run-1") -> dict[Any, tuple[str, str]]:
    issues = report(settings, env, "backfill_issues.csv.gz", run)
    issues = issues[issues["category"].isin(["conflict", "unlinked", "missing_user"])]
    issues = issues[issues[key] != ""]  # the report writes a missing value as empty
    keys = issues[key].astype(int) if key == "UserID" else issues[key]
    return dict(zip(keys, zip(issues["category"], issues["reason"], strict=True), strict=True))


def ids_of(table: BackfillTable) -> dict[str, str]:
    """lower-case e-mail -> InternalUserID of every row."""
    rows = table.full()
    return dict(zip(rows["Email"].str.lower(), rows["InternalUserID"], strict=True))


def assert_lower_case_uuid4(value: Any) -> None:
    assert isinstance(value, str) and value == value.lower()
    parsed = uuid.UUID(value)
    assert parsed.version == 4 and str(parsed) == value


# -- linking ----------------------------------------------------------------------------------


@pytest.mark.mariadb
def test_prod_pool_linked_by_sub(client, proxy, make_table, configure) -> None:
    """Rows that have an id keep it; the rest get one; every user gets its row's id, once."""
    pool_id = new_pool(client, "mutable")
    people = [person(n) for n in range(8)]
    subs = create_users(client, pool_id, people)
    table = make_table()
    kept = [iid(n) for n in range(4)]
    table.add([(kept[n] if n < 4 else None, sub, p.email) for n, (p, sub) in enumerate(zip(people, subs, strict=True))])
    settings = configure(prod=(pool_id, table, True))

    summary = prepare(settings, "prod")
    assert summary["pending_migrations"] == [] and summary["ids_to_assign"] == 4 and summary["ids_assigned"] == 4
    assert summary["attribute_to_add"] is False
    assert summary["counts"]["write"] == summary["billable_mau_writes"] == 8
    assert [c.kind for c in summary["chunks"]] == ["write"]
    (outcome,) = write_all(settings, summary)
    assert (outcome.done, outcome.user_gone, outcome.row_changed, outcome.throttled) == (8, 0, 0, 0)

    rows = table.full()
    assert list(rows["InternalUserID"][:4]) == kept  # rows with an id are never touched
    for value in rows["InternalUserID"][4:]:
        assert_lower_case_uuid4(value)
    assert list(rows["CognitoID"]) == subs and list(rows["Email"]) == [p.email for p in people]
    assert carried(client, pool_id) == dict(zip(rows["CognitoID"], rows["InternalUserID"], strict=True))
    changes = report(settings, "prod", "backfill_plan.csv.gz")
    assert set(changes["matched_by"]) == {"sub"} and set(changes["action"]) == {"write attribute"}
    assert proxy.calls[WRITE] == 8 and proxy.rejected[WRITE] == 0 and proxy.calls["AddCustomAttributes"] == 0
    coverage = verify_step(settings, "prod")
    assert (coverage.pool_users, coverage.with_valid_id, coverage.share) == (8, 8, 1.0)


@pytest.mark.mariadb
def test_rows_linked_only_by_email(client, proxy, make_table, configure) -> None:
    """Stale subs, e-mails in another case: linked by e-mail; the pool gets the attribute first."""
    pool_id = new_pool(client, None)
    people = [person(n) for n in range(6)]
    create_users(client, pool_id, people)
    table = make_table(legacy=True)
    table.add([(None, f"prod-sub-{n}", p.email.upper() if n % 2 else p.email) for n, p in enumerate(people)])
    settings = configure(prod=(pool_id, table, True))

    summary = prepare(settings, "prod")
    assert summary["attribute_to_add"] is True and summary["ids_assigned"] == 6
    entry = schema_entry(client, pool_id)
    assert entry is not None and entry["Mutable"] is True
    assert entry["StringAttributeConstraints"] == {"MinLength": "36", "MaxLength": "36"}
    write_all(settings, summary)

    changes = report(settings, "prod", "backfill_plan.csv.gz")
    assert len(changes) == 6 and set(changes["matched_by"]) == {"e-mail"}
    assert by_email(client, pool_id) == ids_of(table)
    assert list(table.full()["CognitoID"]) == [f"prod-sub-{n}" for n in range(6)]  # the backfill never relinks
    assert proxy.calls["AddCustomAttributes"] == 1 and proxy.calls[WRITE] == 6


@pytest.mark.mariadb
def test_conflicts_are_left_alone_and_reported(client, proxy, make_table, configure) -> None:
    pool_id = new_pool(client, "mutable")
    other = iid(424242)
    users = [person(0, internal_id=other), person(1), person(2)]  # person 2 has no row
    subs = create_users(client, pool_id, users)
    table = make_table()
    table.add([(iid(1), subs[0], users[0].email), (iid(2), subs[1], users[1].email), (iid(3), "gone", "gone@x.com")])
    settings = configure(prod=(pool_id, table, True))

    summary = prepare(settings, "prod")
    write_all(settings, summary)
    after = carried(client, pool_id)
    assert after == {subs[0]: other, subs[1]: iid(2), subs[2]: None}  # the different id is kept
    issues = report(settings, "prod", "backfill_issues.csv.gz")
    conflict = issues[issues["sub"] == subs[0]].iloc[0]
    assert (conflict["category"], conflict["reason"], conflict["InternalUserID"]) == (
        "conflict",
        REASON["different_id"],
        other,
    )
    assert int(conflict["UserID"]) == 1
    assert issues_by(settings, "prod", "UserID")[3] == ("missing_user", REASON["no_user"])
    assert issues_by(settings, "prod", "sub")[subs[2]] == ("unlinked", REASON["no_row"])
    assert proxy.calls[WRITE] == 1 and summary["counts"]["conflict"] == 1

    again = prepare(settings, "prod", run="run-2")
    write_all(settings, again)
    assert again["counts"]["write"] == 0 and proxy.calls[WRITE] == 1
    assert carried(client, pool_id)[subs[0]] == other


def restored_dev(make_table: Callable[..., BackfillTable]) -> tuple[BackfillTable, list[PoolUser]]:
    """prod's rows (prod subs, ids) copied into dev's table, as a restore leaves them."""
    prod = make_table()
    people = [person(n) for n in range(6)]
    prod.add([(iid(100 + n), str(uuid.uuid4()), p.email) for n, p in enumerate(people)])
    dev = make_table()
    dev.execute(f"INSERT INTO `{dev.name}` SELECT * FROM `{prod.name}`")
    assert dev.full().equals(prod.full())
    return dev, people


@pytest.mark.mariadb
def test_lower_pool_after_a_restore_gets_ids_by_email(client, proxy, make_table, configure) -> None:
    dev, people = restored_dev(make_table)
    pool_id = new_pool(client, None)
    in_pool = [people[0], people[1], people[2], people[3]]
    create_users(
        client,
        pool_id,
        [PoolUser(p.email.upper() if n % 2 else p.email, None, "D", "U") for n, p in enumerate(in_pool)],
    )
    before = dev.full()
    settings = configure(dev=(pool_id, dev, False))

    summary = prepare(settings, "dev")
    assert summary["ids_assigned"] == 0 and summary["counts"]["write"] == 4 and summary["counts"]["missing_user"] == 2
    write_all(settings, summary)

    assert dev.full().equals(before)  # every row had its id: the table is not touched
    expected = {p.email: iid(100 + n) for n, p in enumerate(in_pool)}
    assert by_email(client, pool_id) == expected
    assert set(report(settings, "dev", "backfill_plan.csv.gz")["matched_by"]) == {"e-mail"}
    assert issues_by(settings, "dev", "UserID") == {
        5: ("missing_user", REASON["no_user"]),
        6: ("missing_user", REASON["no_user"]),
    }
    assert proxy.calls[CREATE] == 0
    assert verify_step(settings, "dev").share == 1.0


@pytest.mark.mariadb
def test_create_missing_users_creates_them_with_the_attribute(client, proxy, make_table, configure) -> None:
    dev, people = restored_dev(make_table)
    pool_id = new_pool(client, "mutable")
    create_users(client, pool_id, [PoolUser(people[0].email, None, "D", "U")])
    settings = configure(dev=(pool_id, dev, False))

    summary = prepare(settings, "dev", create_missing=True)
    assert summary["counts"]["create"] == 5 and summary["counts"]["write"] == 1
    assert sorted(c.kind for c in summary["chunks"]) == ["create", "write"]
    proxy.force_throttle(CREATE, 3)
    outcomes = {o.kind: o for o in write_all(settings, summary)}
    assert outcomes["write"].done == 1
    assert (outcomes["create"].done, outcomes["create"].throttled) == (5, 3)

    users = {str(a["email"]).lower(): a for a in pool_users(client, pool_id).values()}
    assert {e: a.get(ATTRIBUTE) for e, a in users.items()} == {p.email: iid(100 + n) for n, p in enumerate(people)}
    created = users[people[3].email]
    assert (created["given_name"], created["family_name"]) == ("First", "Last")  # the row's names
    assert proxy.calls[CREATE] == 5 and proxy.rejected[CREATE] == 0

    # A task cleared and run again after its chunk finished: its checkpoint says it is done, nothing is repeated.
    (create_chunk,) = [c for c in summary["chunks"] if c.kind == "create"]
    retried = write_chunk_step(settings, create_chunk, rate=RATE, slots=1)
    assert (retried.done, retried.resumed_at, proxy.calls[CREATE]) == (5, 5, 5)
    assert len(pool_users(client, pool_id)) == 6

    again = prepare(settings, "dev", run="run-2", create_missing=True)
    assert again["counts"]["create"] == 0 and again["counts"]["write"] == 0 and again["counts"]["done"] == 6
    assert again["chunks"] == []


def test_creating_users_in_a_protected_environment_is_refused_before_anything_runs() -> None:
    raw = {
        name: {"aws_conn_id": "aws", "user_pool_id": "us-east-2_Pool1", "db_conn_id": "db", "protected": name == "prod"}
        for name in ("dev", "qa", "prod")
    }

    settings = parse_settings({"snapshot_base": "file:///tmp/x", "environments": raw}, Path("environments.yaml"))
    with pytest.raises(RefusedError, match="protected environment\\(s\\) prod"):
        select_environments(settings, ["dev", "prod"], True)
    with pytest.raises(RefusedError, match="protected environment\\(s\\) prod"):
        select_environments(settings, [], True)  # all of them
    assert select_environments(settings, ["qa", "dev"], True) == ["qa", "dev"]
    assert select_environments(settings, None, False) == ["dev", "qa", "prod"]
    with pytest.raises(RefusedError, match="unknown environment 'stage'"):
        select_environments(settings, ["stage"], False)


# -- the immutable attribute ------------------------------------------------------------------


@pytest.mark.mariadb
def test_immutable_attribute_with_existing_users_is_refused_before_any_write(
    client, proxy, make_table, configure
) -> None:
    pool_id = new_pool(client, "immutable")
    people = [person(n) for n in range(4)]
    subs = create_users(client, pool_id, people)
    table = make_table(legacy=True)
    table.add([(None, sub, p.email) for p, sub in zip(people, subs, strict=True)])
    table.add([(None, None, "not-in-pool@example.com")])  # would be created: still refused
    before = table.full()
    settings = configure(dev=(pool_id, table, False))

    dry = prepare(settings, "dev", dry_run=True, create_missing=True)
    assert any("immutable" in refusal for refusal in dry["refusals"])
    with pytest.raises(RefusedError, match="immutable") as refused:
        prepare(settings, "dev", create_missing=True)
    message = str(refused.value)
    assert "4 existing users" in message and "mutable" in message and "create_missing_users" in message
    assert "Nothing was written" in message

    assert table.full().equals(before)  # no migration, no ids
    assert "InternalUserID" not in table.full().columns
    assert writes_made(proxy) == NO_WRITES
    assert carried(client, pool_id) == dict.fromkeys(subs)


@pytest.mark.mariadb
def test_immutable_attribute_is_set_at_creation_in_a_lower_pool(client, proxy, make_table, configure) -> None:
    pool_id = new_pool(client, "immutable")
    table = make_table(legacy=True)
    people = [person(n) for n in range(5)]
    table.add([(None, f"prod-sub-{n}", p.email) for n, p in enumerate(people)])
    settings = configure(dev=(pool_id, table, False))

    summary = prepare(settings, "dev", create_missing=True)
    assert summary["counts"]["create"] == 5 and summary["counts"]["write"] == 0 and summary["refusals"] == []
    write_all(settings, summary)
    assert by_email(client, pool_id) == ids_of(table)
    assert proxy.calls[CREATE] == 5 and proxy.rejected[CREATE] == 0 and writes_made(proxy)[WRITE] == 0
    assert schema_entry(client, pool_id)["Mutable"] is False

    again = prepare(settings, "dev", run="run-2", create_missing=True)
    assert again["counts"]["done"] == 5 and again["chunks"] == []


# -- pacing, throttling, resuming -------------------------------------------------------------


@pytest.mark.mariadb
def test_a_throttled_run_still_writes_every_user(client, proxy, make_table, configure) -> None:
    pool_id = new_pool(client, "mutable")
    people = [person(n) for n in range(9)]
    subs = create_users(client, pool_id, people)
    table = make_table()
    table.add([(None, sub, p.email) for p, sub in zip(people, subs, strict=True)])
    settings = configure(dev=(pool_id, table, False))
    proxy.quotas[WRITE] = 5  # below our rate of 25: the proxy throttles, the hook backs off and retries

    summary = prepare(settings, "dev")
    (outcome,) = write_all(settings, summary)
    assert outcome.done == 9 and outcome.throttled > 0
    assert outcome.throttled == proxy.throttled[WRITE]
    assert proxy.calls[WRITE] == 9  # each user accepted once
    assert by_email(client, pool_id) == ids_of(table)


@pytest.mark.mariadb
def test_chunks_side_by_side_at_the_default_rate_stay_under_the_quota(client, proxy, make_table, configure) -> None:
    """Four chunks at once, as the mapped tasks run them: each at 20/4 per second, 20 together."""
    pool_id = new_pool(client, "mutable")
    people = [person(n) for n in range(24)]
    subs = create_users(client, pool_id, people)
    table = make_table()
    table.add([(None, sub, p.email) for p, sub in zip(people, subs, strict=True)])
    settings = configure(dev=(pool_id, table, False))
    proxy.quotas[WRITE] = QUOTAS[WRITE]

    summary = prepare(settings, "dev", slots=WRITE_SLOTS)
    assert len(summary["chunks"]) == WRITE_SLOTS
    with ThreadPoolExecutor(WRITE_SLOTS) as pool:
        outcomes = list(
            pool.map(
                lambda chunk: write_chunk_step(settings, chunk, rate=DEFAULT_WRITE_RATE, slots=WRITE_SLOTS),
                summary["chunks"],
            )
        )
    assert [o.done for o in outcomes] == [6] * WRITE_SLOTS
    assert proxy.throttled[WRITE] == 0 and proxy.calls[WRITE] == 24
    accepted = sorted(e.at for e in proxy.events if e.operation == WRITE and e.outcome == "accepted")
    assert accepted[-1] - accepted[0] >= 5 / (DEFAULT_WRITE_RATE / WRITE_SLOTS) - 0.1  # paced: 6 per chunk at 5/s
    assert by_email(client, pool_id) == ids_of(table)


@pytest.mark.mariadb
def test_an_interrupted_run_resumes_and_writes_nothing_twice(client, proxy, make_table, configure) -> None:
    pool_id = new_pool(client, "mutable")
    people = [person(n) for n in range(10)]
    subs = create_users(client, pool_id, people)
    table = make_table(legacy=True)
    table.add([(None, sub, p.email) for p, sub in zip(people, subs, strict=True)])
    settings = configure(dev=(pool_id, table, False))

    first = prepare(settings, "dev", slots=2)
    assert [(c.kind, c.part) for c in first["chunks"]] == [("write", "1/2"), ("write", "2/2")]
    done_chunk = write_chunk_step(settings, first["chunks"][0], rate=RATE, slots=2)
    assert done_chunk.done == 5
    # The second chunk got two of its five writes through, then the run was abandoned.
    crashing = first["chunks"][1]
    frame = RunFiles(crashing.files).read_parquet(crashing.name)
    hook = CognitoHook(aws_conn_id="aws_bf_it")
    for row in frame.iloc[:2].itertuples():
        hook.set_attribute(pool_id, row.username, ATTRIBUTE, row.InternalUserID)
    assert proxy.calls[WRITE] == 7
    rows = table.full()

    second = prepare(settings, "dev", run="run-2", slots=2)
    assert second["counts"]["write"] == 3 and second["counts"]["done"] == 7
    assert second["ids_assigned"] == 0 and second["pending_migrations"] == []
    assert table.full().equals(rows)  # ids are not re-assigned
    resumed = report(settings, "dev", "backfill_plan.csv.gz", run="run-2")
    assert set(resumed["sub"]) == set(frame["sub"].iloc[2:])
    write_all(settings, second, slots=2)

    assert proxy.calls[WRITE] == 10  # the 3 remaining: each user written exactly once
    assert by_email(client, pool_id) == ids_of(table)
    assert verify_step(settings, "dev").with_valid_id == 10


@pytest.mark.mariadb
def test_a_user_deleted_after_planning_is_skipped(client, proxy, make_table, configure) -> None:
    pool_id = new_pool(client, "mutable")
    people = [person(n) for n in range(3)]
    subs = create_users(client, pool_id, people)
    table = make_table()
    table.add([(None, sub, p.email) for p, sub in zip(people, subs, strict=True)])
    settings = configure(dev=(pool_id, table, False))

    summary = prepare(settings, "dev")
    (chunk,) = summary["chunks"]
    gone = RunFiles(chunk.files).read_parquet(chunk.name).iloc[1]
    client.admin_delete_user(UserPoolId=pool_id, Username=gone["username"])
    outcome = write_chunk_step(settings, chunk, rate=RATE, slots=1)
    assert (outcome.done, outcome.user_gone) == (2, 1)
    assert set(carried(client, pool_id)) == set(subs) - {gone["sub"]}
    assert all(carried(client, pool_id).values())


# -- dry run and migrations -------------------------------------------------------------------


@pytest.mark.mariadb
def test_dry_run_changes_nothing_anywhere_and_reports_billable_mau(client, proxy, make_table, configure) -> None:
    pool_id = new_pool(client, None)
    people = [person(n) for n in range(5)]
    create_users(client, pool_id, people)
    table = make_table(legacy=True)
    table.add([(None, f"old-{n}", p.email) for n, p in enumerate(people)])
    table.add([(None, None, "missing@example.com"), (None, None, "missing2@example.com")])
    before_rows, before_users = table.full(), pool_users(client, pool_id)
    settings = configure(dev=(pool_id, table, False))

    summary = prepare(settings, "dev", dry_run=True, apply_migration=False, create_missing=True)
    assert summary["billable_mau_writes"] == 5
    assert summary["counts"]["write"] == 5 and summary["counts"]["create"] == 2
    assert summary["pending_migrations"] == [m.script for m in MIGRATIONS]
    assert summary["ids_to_assign"] == 7 and summary["attribute_to_add"] is True
    assert summary["chunks"] == [] and "ids_assigned" not in summary
    assert any(V1 in refusal for refusal in summary["refusals"])  # what the real run would refuse

    assert table.full().equals(before_rows)
    assert pool_users(client, pool_id) == before_users
    assert schema_entry(client, pool_id) is None
    assert writes_made(proxy) == NO_WRITES
    assert len(report(settings, "dev", "backfill_plan.csv.gz")) == 7  # the report of what would happen


@pytest.mark.parametrize("kind", ["mariadb", "sqlite"])
def test_pending_migrations_are_refused_by_name_and_applied_when_asked(
    kind, client, proxy, make_table, configure
) -> None:
    pool_id = new_pool(client, None)
    people = [person(n) for n in range(3)]
    subs = create_users(client, pool_id, people)
    table = make_table(kind, legacy=True)
    table.add([(None, sub, p.email) for p, sub in zip(people, subs, strict=True)])
    before = table.full()
    settings = configure(dev=(pool_id, table, False))

    with pytest.raises(RefusedError) as refused:
        prepare(settings, "dev", apply_migration=False)
    assert V1 in str(refused.value) and V2 in str(refused.value) and "apply_migration" in str(refused.value)
    assert table.full().equals(before) and writes_made(proxy) == NO_WRITES

    # With V1 already run by Flyway, only V2 is named.
    for sql in migration_statements(MIGRATIONS[0].script, table.dialect, table.name):
        table.execute(sql)
    with pytest.raises(RefusedError) as refused:
        prepare(settings, "dev", apply_migration=False)
    assert V2 in str(refused.value) and V1 not in str(refused.value)
    assert table.pending() == [MIGRATIONS[1].script]

    summary = prepare(settings, "dev", apply_migration=True)
    assert summary["pending_migrations"] == [MIGRATIONS[1].script] and summary["ids_assigned"] == 3
    assert table.pending() == []
    rows = table.full()
    assert "InternalUserID" in rows.columns
    for value in rows["InternalUserID"]:
        assert_lower_case_uuid4(value)
    with pytest.raises(Exception, match=r"(?i)duplicate|unique"):  # the unique index is there
        table.execute(
            f"UPDATE {table.dialect.identifier(table.name)} SET InternalUserID = "
            f"{table.dialect.placeholder} WHERE UserID = 2",
            (rows["InternalUserID"][0],),
        )
    write_all(settings, summary)
    assert carried(client, pool_id) == dict(zip(rows["CognitoID"], rows["InternalUserID"], strict=True))


# -- assign_missing_ids -----------------------------------------------------------------------


def seed_mixed_ids(table: TableUnderTest) -> list[str | None]:
    ids = [iid(1), None, None, iid(4).upper(), None, None, None, iid(8)]
    table.insert([(value, f"sub-{n}", f"u{n}@example.com") for n, value in enumerate(ids)])
    return ids


def id_column(table: TableUnderTest) -> list[str | None]:
    return [None if pd.isna(v) else v for v in table.rows()["InternalUserID"]]


def test_assign_missing_ids_fills_only_nulls_in_committed_batches(any_table: TableUnderTest) -> None:
    ids = seed_mixed_ids(any_table)
    users = any_table.users_table()
    try:
        assert users.assign_missing_ids(batch_size=2) == 5
    finally:
        users.connection.close()
    after = id_column(any_table)  # read on a connection of its own: every batch was committed
    for before, now in zip(ids, after, strict=True):
        if before is None:
            assert_lower_case_uuid4(now)
        else:
            assert now == before  # never touched, not even re-cased
    assert len(set(after)) == len(after)

    users = any_table.users_table()
    try:
        assert users.assign_missing_ids(batch_size=2) == 0
    finally:
        users.connection.close()
    assert id_column(any_table) == after


def test_assign_missing_ids_dying_half_way_keeps_committed_batches_and_resumes(
    any_table: TableUnderTest, monkeypatch: pytest.MonkeyPatch
) -> None:
    import identity_sync.table as table_module

    ids = seed_mixed_ids(any_table)
    made = 0
    real = table_module.new_internal_id

    def dying() -> str:
        nonlocal made
        made += 1
        if made == 5:  # the third batch of two
            raise RuntimeError("worker died")
        return real()

    monkeypatch.setattr(table_module, "new_internal_id", dying)
    users = any_table.users_table()
    try:
        with pytest.raises(RuntimeError, match="worker died"):
            users.assign_missing_ids(batch_size=2)
    finally:
        users.connection.close()
    partial = id_column(any_table)
    assert sum(v is None for v in partial) == 1  # two batches of two committed
    assert [p for p, b in zip(partial, ids, strict=True) if b is not None] == [b for b in ids if b is not None]

    monkeypatch.setattr(table_module, "new_internal_id", real)
    users = any_table.users_table()
    try:
        assert users.assign_missing_ids(batch_size=2) == 1
    finally:
        users.connection.close()
    final = id_column(any_table)
    assert [f for f, p in zip(final, partial, strict=True) if p is not None] == [p for p in partial if p is not None]
    assert all(v is not None for v in final)


# -- the backfill attacked (issue 7): concurrent writers, collisions, kills, 5xx storms, app clients ----


def chunk_frame_of(chunk: Any) -> pd.DataFrame:
    return RunFiles(chunk.files).read_parquet(chunk.name)


@pytest.mark.mariadb
def test_rows_changed_by_a_concurrent_sync_or_app_after_the_plan_are_skipped_and_reported(
    client, proxy, make_table, configure
) -> None:
    """Between plan and write: a sync links a row by e-mail (still the same person: written), an app relinks
    a row to another user and someone fixes a row's id (both skipped, reported); the rest is written."""
    pool_id = new_pool(client, "mutable")
    people = [person(n) for n in range(5)]
    subs = create_users(client, pool_id, people)
    table = make_table()
    table.add([(iid(0), subs[0], people[0].email), (iid(1), "stale-1", people[1].email)])  # row 2: by e-mail
    table.add([(iid(n), subs[n], people[n].email) for n in range(2, 5)])
    settings = configure(dev=(pool_id, table, False))
    summary = prepare(settings, "dev")
    assert summary["counts"]["write"] == 5

    # The sync's own write path (plan_changes + UsersTable.apply, under the environment's lock): its e-mail
    # fallback links row 2 to its user's sub.
    env = settings.environment("dev")
    with UsersTable.open(env) as users:
        sync_plan = plan_changes(extract_pool(env), users.read())
        assert sync_plan.counts["email_fallback"] == 1
        users.apply(sync_plan)
    table.execute(f"UPDATE {table.dialect.identifier(table.name)} SET CognitoID = 'someone-else' WHERE UserID = 3")
    table.execute(f"UPDATE {table.dialect.identifier(table.name)} SET InternalUserID = %s WHERE UserID = 4", (iid(40),))

    (outcome,) = write_all(settings, summary)
    assert (outcome.done, outcome.row_changed) == (3, 2)
    after = carried(client, pool_id)
    assert after == {subs[0]: iid(0), subs[1]: iid(1), subs[2]: None, subs[3]: None, subs[4]: iid(4)}
    chunk = summary["chunks"][0]
    issues = read_csv_gz(RunFiles(chunk.files), f"{chunk.name}.issues.csv.gz")
    assert outcome.issues == f"{chunk.files}/{chunk.name}.issues.csv.gz"
    assert sorted(issues["UserID"].astype(int)) == [3, 4] and set(issues["category"]) == {"row_changed"}
    assert all("changed after the plan" in reason for reason in issues["reason"])

    again = prepare(settings, "dev", run="run-2")  # the next run re-plans from what the table holds now
    write_all(settings, again)
    assert again["counts"]["write"] == 2  # row 3 by its (verified) e-mail now, row 4 with its new id
    assert carried(client, pool_id) == {subs[0]: iid(0), subs[1]: iid(1), subs[2]: iid(2), subs[3]: iid(40)} | {
        subs[4]: iid(4)
    }


@pytest.mark.mariadb
def test_a_creation_that_meets_a_user_created_meanwhile_is_reported_and_the_rest_go_on(
    client, proxy, make_table, configure
) -> None:
    pool_id = new_pool(client, "mutable")
    table = make_table()
    table.add([(iid(n), None, f"new{n}@example.com") for n in range(5)])
    settings = configure(dev=(pool_id, table, False))
    summary = prepare(settings, "dev", create_missing=True)
    assert summary["counts"]["create"] == 5

    # Meanwhile: a stranger signs up with row 2's address; row 3's user was created by an earlier try (our id).
    create_users(client, pool_id, [PoolUser("new1@example.com", None, "Sign", "Up", verified=False)])
    create_users(client, pool_id, [PoolUser("new2@example.com", iid(2), "First", "Last")])
    (outcome,) = write_all(settings, summary)
    assert (outcome.done, outcome.already_done, outcome.collided) == (3, 1, 1)
    users = {str(a["email"]).lower(): a.get(ATTRIBUTE) for a in pool_users(client, pool_id).values()}
    assert users == {f"new{n}@example.com": (None if n == 1 else iid(n)) for n in range(5)}  # the stranger kept
    chunk = summary["chunks"][0]
    issues = read_csv_gz(RunFiles(chunk.files), f"{chunk.name}.issues.csv.gz")
    assert list(issues["UserID"]) == ["2"] and list(issues["category"]) == ["collided"]

    creates = proxy.calls[CREATE]
    again = prepare(settings, "dev", run="run-2", create_missing=True)  # converges: nothing left to create
    assert again["chunks"] == [] and proxy.calls[CREATE] == creates
    assert issues_by(settings, "dev", "UserID", run="run-2")[2] == ("missing_user", REASON["email_taken"])


def _write_in_a_child(settings: Settings, chunk: Any, rate: float) -> None:
    write_chunk_step(settings, chunk, rate=rate, slots=1)


@pytest.mark.mariadb
def test_a_chunk_killed_mid_way_resumes_from_its_checkpoint(client, proxy, make_table, configure, monkeypatch) -> None:
    """SIGKILL (no cleanup at all) in the middle of a chunk: its retry repeats fewer than CHECKPOINT_EVERY writes."""
    monkeypatch.setattr(backfill_writes, "CHECKPOINT_EVERY", 4)
    pool_id = new_pool(client, "mutable")
    people = [person(n) for n in range(20)]
    subs = create_users(client, pool_id, people)
    table = make_table()
    table.add([(iid(n), sub, p.email) for n, (p, sub) in enumerate(zip(people, subs, strict=True))])
    settings = configure(dev=(pool_id, table, False))
    (chunk,) = prepare(settings, "dev")["chunks"]

    child = multiprocessing.get_context("fork").Process(target=_write_in_a_child, args=(settings, chunk, 5.0))
    child.start()
    deadline = time.monotonic() + 60
    while proxy.calls[WRITE] < 10 and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(child.pid, signal.SIGKILL)
    child.join()
    killed_at = proxy.calls[WRITE]
    assert 10 <= killed_at < 20
    saved = ChunkProgress.load(RunFiles(chunk.files), chunk.progress_name).next_row
    assert killed_at - 4 < saved <= killed_at

    retried = write_chunk_step(settings, chunk, rate=RATE, slots=1)  # Airflow's retry of the task
    assert retried.resumed_at == saved and retried.done == 20
    assert proxy.calls[WRITE] == killed_at + 20 - saved  # at most 3 writes repeated, none skipped
    assert carried(client, pool_id) == {sub: iid(n) for n, sub in enumerate(subs)}


@pytest.mark.mariadb
def test_a_5xx_storm_mid_write_loses_nothing_and_a_lost_answer_to_a_creation_is_recognised(
    client, proxy, make_table, configure
) -> None:
    pool_id = new_pool(client, "mutable")
    people = [person(n) for n in range(6)]
    subs = create_users(client, pool_id, people)
    table = make_table()
    table.add([(iid(n), sub, p.email) for n, (p, sub) in enumerate(zip(people, subs, strict=True))])
    table.add([(iid(10 + n), None, f"create{n}@example.com") for n in range(4)])
    settings = configure(dev=(pool_id, table, False))
    summary = prepare(settings, "dev", create_missing=True)
    for operation in (WRITE, CREATE):
        proxy.inject(operation, "server_error", times=2)
        proxy.inject(operation, "hang_up", times=1)
        proxy.inject(operation, "lose_answer", times=1)  # it took effect; botocore retries it

    outcomes = {o.kind: o for o in write_all(settings, summary)}
    assert outcomes["write"].done == 6
    created = outcomes["create"]
    assert (created.done, created.already_done, created.collided) == (3, 1, 0)  # the retry found its own user
    assert proxy.faulted[WRITE] == proxy.faulted[CREATE] == 4
    assert by_email(client, pool_id) == ids_of(table)


@pytest.mark.mariadb
def test_an_app_client_that_may_write_the_attribute_is_refused_before_any_write(
    client, proxy, make_table, configure
) -> None:
    pool_id = new_pool(client, "mutable")
    subs = create_users(client, pool_id, [person(0)])
    client.create_user_pool_client(UserPoolId=pool_id, ClientName="rogue", WriteAttributes=["email", ATTRIBUTE])
    table = make_table()
    table.add([(None, subs[0], person(0).email)])
    settings = configure(dev=(pool_id, table, False))
    before = table.full()
    with pytest.raises(RefusedError, match=r"app client\(s\) \w+ \(rogue\) can write custom:internal_user_id"):
        prepare(settings, "dev")
    assert table.full().equals(before) and writes_made(proxy) == NO_WRITES


@pytest.mark.mariadb
def test_the_attribute_step_checks_the_app_clients_after_adding_the_attribute(
    client, proxy, make_table, configure
) -> None:
    """A client given the attribute before it existed (moto accepts it) can write it the moment it is added."""
    pool_id = new_pool(client, None)
    subs = create_users(client, pool_id, [person(0)])
    client.create_user_pool_client(UserPoolId=pool_id, ClientName="early", WriteAttributes=[ATTRIBUTE])
    table = make_table()
    table.add([(None, subs[0], person(0).email)])
    settings = configure(dev=(pool_id, table, False))
    with pytest.raises(RefusedError, match=r"\(early\) can write .*no Cognito user was written"):
        prepare(settings, "dev")
    assert proxy.calls["AddCustomAttributes"] == 1 and proxy.calls[WRITE] == 0
