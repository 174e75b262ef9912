"""cognito_user_backfill end to end through dag.test(): moto behind the strict layer, and MariaDB.

A prod pool and table from before the backfill (no attribute, no column), then a dev pool
after a restore: the backfill, then the sync, leave every matching user linked.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import yaml
from airflow.dag_processing.dagbag import DagBag

from devtools.emulator import aws_client
from devtools.local_airflow import (
    PROJECT_ROOT,
    aws_connection,
    connection_variable,
    mysql_connection,
)
from devtools.population import ATTRIBUTE, PoolUser, create_pool, create_users
from identity_sync.cognito import user_attributes
from identity_sync.identity import normalise_internal_ids
from identity_sync.sql import MYSQL, schema_statement, statement
from tests.conftest import MYSQL_SETTINGS, TableUnderTest, mysql_connect

pytestmark = pytest.mark.airflow


class LegacyTable(TableUnderTest):
    """A Users table as it was before the backfill: no InternalUserID column."""

    def __init__(self, name: str) -> None:
        self.connect, self.dialect, self.name, self.lock_name = mysql_connect, MYSQL, name, f"test.{name}"
        self._admin = mysql_connect()
        self.execute(schema_statement(MYSQL, name, legacy=True))

    def insert_legacy(self, rows: list[tuple[str | None, str | None]]) -> None:
        cursor = self._admin.cursor()
        cursor.executemany(
            statement("insert_legacy_user", MYSQL, self.name), [(sub, email, "First", "Last") for sub, email in rows]
        )
        self._admin.commit()
        cursor.close()

    def full(self) -> pd.DataFrame:
        connection = self.connect()
        try:
            return pd.read_sql(f"SELECT * FROM `{self.name}` ORDER BY UserID", connection)
        finally:
            connection.close()


@pytest.fixture
def legacy_tables() -> Iterator[dict[str, LegacyTable]]:
    tables = {env: LegacyTable(f"Users_{env}_{uuid.uuid4().hex[:10]}") for env in ("prod", "dev")}
    yield tables
    for table in tables.values():
        table.drop()


@pytest.fixture
def world(cognito, legacy_tables, tmp_path: Path, monkeypatch):
    """prod: 40 users, rows linked by sub (30) or only by e-mail (10), 3 rows without a user, 1 conflict."""
    moto_url, proxy = cognito
    client = aws_client("cognito-idp", moto_url)
    suffix = uuid.uuid4().hex[:8]
    pools = {env: create_pool(client, f"{env}-{suffix}", attribute=None) for env in ("prod", "dev")}
    people = [PoolUser(f"person{n}@example.com", None, "P", f"N{n}") for n in range(40)]
    subs = create_users(client, pools["prod"], people)
    prod = legacy_tables["prod"]
    prod.insert_legacy([(sub, p.email) for p, sub in zip(people[:30], subs[:30], strict=True)])
    prod.insert_legacy([(f"old-sub-{n}", p.email.upper()) for n, p in enumerate(people[30:])])  # by e-mail only
    prod.insert_legacy([(f"gone-{n}", f"gone{n}@example.com") for n in range(3)])
    monkeypatch.setenv(connection_variable("aws_bf"), aws_connection(proxy.url))
    environments = {}
    for env, table in legacy_tables.items():
        conn_id = f"users_db_bf_{env}"
        monkeypatch.setenv(
            connection_variable(conn_id),
            mysql_connection(MYSQL_SETTINGS["host"], MYSQL_SETTINGS["port"], MYSQL_SETTINGS["database"]),
        )
        environments[env] = {
            "aws_conn_id": "aws_bf",
            "user_pool_id": pools[env],
            "db_conn_id": conn_id,
            "users_table": table.name,
            "protected": env == "prod",
        }
    config = tmp_path / "environments.yaml"
    config.write_text(yaml.safe_dump({"snapshot_base": f"file://{tmp_path / 'runs'}", "environments": environments}))
    monkeypatch.setenv("COGNITO_SYNC_CONFIG", str(config))
    dagbag = DagBag(dag_folder=PROJECT_ROOT / "dags")
    return {
        "client": client,
        "proxy": proxy,
        "pools": pools,
        "people": people,
        "subs": subs,
        "tables": legacy_tables,
        "backfill": dagbag.dags["cognito_user_backfill"],
        "sync": dagbag.dags["cognito_user_sync"],
        "runs": tmp_path / "runs",
    }


def pool_ids(client, pool_id: str) -> dict[str, str | None]:
    """sub -> the attribute's value (None when missing)."""
    users = client.list_users(UserPoolId=pool_id, Limit=60)["Users"]
    return {user_attributes(u)["sub"]: user_attributes(u).get(ATTRIBUTE) for u in users}


def summary(runs: Path, dag_id: str, run_id: str, env: str) -> dict:
    folder = runs / dag_id / run_id.replace(":", "_").replace("+", "_") / env
    return {
        "changes": pd.read_csv(folder / "backfill_changes.csv"),
        "issues": pd.read_csv(folder / "backfill_issues.csv"),
    }


def test_dry_run_by_default_writes_nothing_anywhere(world) -> None:
    prod = world["tables"]["prod"]
    before = prod.full()
    run = world["backfill"].test(run_conf={"environments": ["prod"]})
    assert run.state == "success"
    assert prod.full().equals(before)  # no column added, no id assigned
    schema = world["client"].describe_user_pool(UserPoolId=world["pools"]["prod"])["UserPool"]["SchemaAttributes"]
    assert ATTRIBUTE not in {a["Name"] for a in schema}
    assert world["proxy"].calls["AdminUpdateUserAttributes"] == 0
    plan = summary(world["runs"], "cognito_user_backfill", run.run_id, "prod")
    assert len(plan["changes"]) == 40  # every user would get its row's id: 40 billable MAU
    assert (plan["issues"]["category"] == "missing_user").sum() == 3


def test_missing_column_is_refused_naming_the_script_unless_apply_migration(world) -> None:
    prod = world["tables"]["prod"]
    before = prod.full()
    run = world["backfill"].test(run_conf={"environments": ["prod"], "dry_run": False})
    assert run.state == "failed"
    assert prod.full().equals(before)
    assert world["proxy"].calls["AddCustomAttributes"] == 0


def test_prod_backfill_then_restored_dev_backfill_and_sync_link_everyone(world) -> None:
    client, pools, prod = world["client"], world["pools"], world["tables"]["prod"]
    conf = {"environments": ["prod"], "dry_run": False, "apply_migration": True, "rate": 25}
    run = world["backfill"].test(run_conf=conf)
    assert run.state == "success"
    rows = prod.full()
    assert rows["InternalUserID"].notna().all()
    assert (normalise_internal_ids(rows["InternalUserID"]) == rows["InternalUserID"]).all()  # lower-case UUIDs
    carried = pool_ids(client, pools["prod"])
    by_sub = dict(zip(rows["CognitoID"], rows["InternalUserID"], strict=True))
    by_email = dict(zip(rows["Email"].str.lower(), rows["InternalUserID"], strict=True))
    for person, sub in zip(world["people"], world["subs"], strict=True):
        expected = by_sub.get(sub) or by_email[person.email]
        assert carried[sub] == expected

    writes = world["proxy"].calls["AdminUpdateUserAttributes"]
    again = world["backfill"].test(run_conf=conf)
    assert again.state == "success"
    assert world["proxy"].calls["AdminUpdateUserAttributes"] == writes  # nothing left to write
    assert prod.full().equals(rows)

    # dev is restored from prod's snapshot; its pool has none of these users yet.
    dev = world["tables"]["dev"]
    dev.execute(f"DROP TABLE `{dev.name}`")
    dev.execute(f"CREATE TABLE `{dev.name}` LIKE `{prod.name}`")
    dev.execute(f"INSERT INTO `{dev.name}` SELECT * FROM `{prod.name}`")
    refused = world["backfill"].test(
        run_conf={"environments": ["prod"], "dry_run": False, "create_missing_users": True}
    )
    assert refused.state == "failed"  # prod is protected
    created = world["backfill"].test(
        run_conf={"environments": ["dev"], "dry_run": False, "create_missing_users": True, "apply_migration": True}
    )
    assert created.state == "success"
    dev_ids = pool_ids(client, pools["dev"])
    assert sorted(v for v in dev_ids.values() if v) == sorted(rows["InternalUserID"])  # every row has a dev user

    synced = world["sync"].test(run_conf={"environments": ["dev"], "after_restore": True})
    assert synced.state == "success"
    linked = dev.full()
    dev_users = {iid: sub for sub, iid in dev_ids.items()}
    assert all(linked["CognitoID"] == linked["InternalUserID"].map(dev_users))
