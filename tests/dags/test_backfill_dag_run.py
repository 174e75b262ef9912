"""cognito_user_backfill end to end through dag.test(): moto behind the strict layer, and MariaDB.

A prod pool and table from before the backfill (no attribute, no column), then a dev pool
after a restore: the backfill, then the sync, leave every matching user linked. The
approval is answered by ``approver`` (tests/dags/conftest.py) through the api-server's
own handler; a timeout by the scheduler's own sweep.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from airflow.dag_processing.dagbag import DagBag

from devtools.emulator import aws_client
from devtools.local_airflow import PROJECT_ROOT, aws_connection, connection_variable
from devtools.population import ATTRIBUTE, PoolUser, create_pool, create_users
from identity_sync.cognito import user_attributes
from identity_sync.identity import normalise_internal_ids
from identity_sync.report import RunFiles, read_csv_gz
from identity_sync.sql import MYSQL, schema_statement, statement
from tests.conftest import TableUnderTest, mysql_airflow_connection, mysql_connect

pytestmark = [pytest.mark.airflow, pytest.mark.mariadb]

DAG_ID = "cognito_user_backfill"
WRITE = "AdminUpdateUserAttributes"


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
    """prod: 40 users, rows linked by sub (30) or only by e-mail (10), 3 rows without a user."""
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
            mysql_airflow_connection(),
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
    monkeypatch.delenv("COGNITO_SYNC_SNAPSHOT_BASE", raising=False)
    dagbag = DagBag(dag_folder=PROJECT_ROOT / "dags")
    return {
        "client": client,
        "proxy": proxy,
        "pools": pools,
        "people": people,
        "subs": subs,
        "tables": legacy_tables,
        "backfill": dagbag.dags[DAG_ID],
        "sync": dagbag.dags["cognito_user_sync"],
        "runs": tmp_path / "runs",
        "writes_before": writes_made(proxy),  # the proxy serves the whole module
    }


def pool_ids(client, pool_id: str) -> dict[str, str | None]:
    """sub -> the attribute's value (None when missing)."""
    users = client.list_users(UserPoolId=pool_id, Limit=60)["Users"]
    return {user_attributes(u)["sub"]: user_attributes(u).get(ATTRIBUTE) for u in users}


def run_files(world: dict[str, Any], run_id: str, env: str) -> RunFiles:
    return RunFiles.for_run(f"file://{world['runs']}", DAG_ID, run_id, env)


def task_states(run) -> dict[str, tuple[str | None, int]]:
    """task id (mapped ones once per index: "id[i]") -> (state, try number)."""
    states = {}
    for ti in run.get_task_instances():
        key = ti.task_id if ti.map_index < 0 else f"{ti.task_id}[{ti.map_index}]"
        states[key] = (ti.state, ti.try_number)
    return states


def refusal_of(output: str, task_id: str) -> str:
    """The refusal a task failed with, from what dag.test() printed: the traceback raised in ``task_id``."""
    for failure in output.split("Task failed with exception")[1:]:
        traceback = failure.split("\n\n")[0]
        if re.search(rf"dags/cognito_user_backfill\.py\", line \d+, in {task_id}\n", traceback):
            return re.search(r"identity_sync\.guards\.RefusedError: (.*)", traceback).group(1)
    raise AssertionError(f"no failure of task {task_id} in the output")


def writes_made(proxy) -> dict[str, int]:
    return {op: proxy.calls[op] for op in (WRITE, "AdminCreateUser", "AddCustomAttributes")}


def no_writes(world: dict[str, Any]) -> bool:
    return writes_made(world["proxy"]) == world["writes_before"]


class TimeoutSweeper(threading.Thread):
    """The scheduler's awaiting-input timeout sweep, run as soon as the approval waits, with its deadline passed."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.swept = threading.Event()

    def run(self) -> None:
        from airflow.jobs.scheduler_job_runner import SchedulerJobRunner
        from airflow.models.taskinstance import TaskInstance
        from airflow.sdk import timezone
        from airflow.utils.session import create_session
        from airflow.utils.state import TaskInstanceState
        from sqlalchemy import update

        class Sweeper:
            log = __import__("logging").getLogger("sweeper")

        deadline = time.monotonic() + 120
        while not self.swept.is_set() and time.monotonic() < deadline:
            with create_session() as session:
                parked = session.execute(
                    update(TaskInstance)
                    .where(TaskInstance.dag_id == DAG_ID, TaskInstance.state == TaskInstanceState.AWAITING_INPUT)
                    .values(trigger_timeout=timezone.utcnow() - pd.Timedelta(seconds=1))
                ).rowcount
            if parked:
                SchedulerJobRunner.check_awaiting_input_timeouts(Sweeper())  # type: ignore[arg-type]
                self.swept.set()
            time.sleep(0.3)


def test_dry_run_by_default_writes_nothing_anywhere(world) -> None:
    prod = world["tables"]["prod"]
    before = prod.full()
    run = world["backfill"].test(run_conf={"environments": ["prod"]})
    assert run.state == "success"
    states = task_states(run)
    assert states["approval"][0] == "skipped" and states["prerequisites"][0] == "skipped"
    assert states["report"][0] == "success"
    assert prod.full().equals(before)  # no column added, no id assigned
    schema = world["client"].describe_user_pool(UserPoolId=world["pools"]["prod"])["UserPool"]["SchemaAttributes"]
    assert ATTRIBUTE not in {a["Name"] for a in schema}
    assert no_writes(world)
    files = run_files(world, run.run_id, "prod")
    plan = read_csv_gz(files, "backfill_plan.csv.gz")
    assert len(plan) == 40  # every user would get its row's id: 40 billable MAU
    issues = read_csv_gz(files, "backfill_issues.csv.gz")
    assert (issues["category"] == "missing_user").sum() == 3
    assert not files.exists("backfill_changes.csv.gz")  # a plan is never mistaken for a record of writes
    summary = yaml.safe_load(files.read_text("backfill_summary.json"))
    assert summary["outcome"] == "dry run: nothing written" and summary["billable_mau_writes"] == 40


def test_missing_column_is_refused_naming_the_script_unless_apply_migration(world, capsys) -> None:
    prod = world["tables"]["prod"]
    before = prod.full()
    run = world["backfill"].test(run_conf={"environments": ["prod"], "dry_run": False})
    assert run.state == "failed"
    states = task_states(run)
    assert states["review"] == ("failed", 1)  # a refusal is not retried
    assert states["approval"][0] == "upstream_failed" and states["prerequisites"][0] == "upstream_failed"
    message = refusal_of(capsys.readouterr().out, "review")
    assert "include/sql/migrations/V1__add_internal_user_id_column.sql" in message
    assert "include/sql/migrations/V2__add_internal_user_id_unique_index.sql" in message
    assert "apply_migration=true" in message and "Nothing was written" in message
    assert prod.full().equals(before)
    assert no_writes(world)


def test_creating_users_in_prod_is_refused_naming_the_environment(world, capsys) -> None:
    conf = {"environments": ["prod"], "dry_run": False, "create_missing_users": True, "approved": True}
    run = world["backfill"].test(run_conf=conf)
    assert run.state == "failed"
    assert task_states(run)["environments"] == ("failed", 1)
    message = refusal_of(capsys.readouterr().out, "environments")
    assert "create_missing_users is refused for protected environment(s) prod" in message
    assert no_writes(world)


def test_the_real_run_waits_for_approval_and_reject_writes_nothing(world, approver) -> None:
    prod = world["tables"]["prod"]
    before = prod.full()
    person = approver(DAG_ID, "Reject", user="bob")
    person.start()
    run = world["backfill"].test(run_conf={"environments": ["prod"], "dry_run": False, "apply_migration": True})
    person.stop()

    (asked,) = person.asked
    assert asked.task_id == "approval" and asked.options == ["Approve", "Reject"]
    body = asked.body
    assert "| prod | 40 | 40 | 0 | 43 |" in body  # writes, billable MAU, creations, ids to assign
    assert "billable monthly active user" in body and "backfill_plan.csv.gz" in body
    states = task_states(run)
    assert states["approval"][0] == "success" and states["prerequisites"][0] == "skipped"
    assert states["report"][0] == "success"
    assert prod.full().equals(before)  # no migration, no id
    assert no_writes(world)
    summary = yaml.safe_load(run_files(world, run.run_id, "prod").read_text("backfill_summary.json"))
    assert summary["outcome"] == "rejected by bob: nothing was written"


def test_no_answer_before_the_timeout_writes_nothing(world) -> None:
    prod = world["tables"]["prod"]
    before = prod.full()
    sweeper = TimeoutSweeper()
    sweeper.start()
    run = world["backfill"].test(run_conf={"environments": ["prod"], "dry_run": False, "apply_migration": True})
    sweeper.join(timeout=5)
    assert sweeper.swept.is_set()
    assert task_states(run)["prerequisites"][0] == "skipped"
    assert prod.full().equals(before) and no_writes(world)
    summary = yaml.safe_load(run_files(world, run.run_id, "prod").read_text("backfill_summary.json"))
    assert summary["outcome"] == "no answer before the approval timed out: nothing was written"


def test_prod_backfill_then_restored_dev_backfill_and_sync_link_everyone(world, approver) -> None:
    client, pools, prod = world["client"], world["pools"], world["tables"]["prod"]
    person = approver(DAG_ID, "Approve")
    person.start()
    conf = {"environments": ["prod"], "dry_run": False, "apply_migration": True, "rate": 25}
    run = world["backfill"].test(run_conf=conf)
    assert run.state == "success"
    assert [a.task_id for a in person.asked] == ["approval"]
    rows = prod.full()
    assert rows["InternalUserID"].notna().all()
    assert (normalise_internal_ids(rows["InternalUserID"]) == rows["InternalUserID"]).all()  # lower-case UUIDs
    carried = pool_ids(client, pools["prod"])
    by_sub = dict(zip(rows["CognitoID"], rows["InternalUserID"], strict=True))
    by_email = dict(zip(rows["Email"].str.lower(), rows["InternalUserID"], strict=True))
    for user, sub in zip(world["people"], world["subs"], strict=True):
        assert carried[sub] == (by_sub.get(sub) or by_email[user.email])
    files = run_files(world, run.run_id, "prod")
    assert len(read_csv_gz(files, "backfill_changes.csv.gz")) == 40  # the record of what was written
    summary = yaml.safe_load(files.read_text("backfill_summary.json"))
    assert summary["outcome"] == "approved by alice" and summary["coverage"]["share"] == 1.0

    writes = world["proxy"].calls[WRITE]
    again = world["backfill"].test(run_conf=conf | {"approved": True})  # approved beforehand: nobody is asked
    assert again.state == "success"
    assert len(person.asked) == 1
    assert world["proxy"].calls[WRITE] == writes  # nothing left to write
    second = yaml.safe_load(run_files(world, again.run_id, "prod").read_text("backfill_summary.json"))
    assert second["outcome"] == "approved beforehand (param approved=true)"
    assert second["written"] == {"write attribute": 0, "create user": 0}
    assert prod.full().equals(rows)

    # dev is restored from prod's snapshot; its pool has none of these users yet.
    dev = world["tables"]["dev"]
    dev.execute(f"DROP TABLE `{dev.name}`")
    dev.execute(f"CREATE TABLE `{dev.name}` LIKE `{prod.name}`")
    dev.execute(f"INSERT INTO `{dev.name}` SELECT * FROM `{prod.name}`")
    created = world["backfill"].test(
        run_conf={"environments": ["dev"], "dry_run": False, "create_missing_users": True, "approved": True}
    )
    assert created.state == "success"
    dev_ids = pool_ids(client, pools["dev"])
    assert sorted(v for v in dev_ids.values() if v) == sorted(rows["InternalUserID"])  # every row has a dev user

    synced = world["sync"].test(run_conf={"environments": ["dev"], "after_restore": True})
    assert synced.state == "success"
    linked = dev.full()
    dev_users = {iid: sub for sub, iid in dev_ids.items()}
    assert all(linked["CognitoID"] == linked["InternalUserID"].map(dev_users))
