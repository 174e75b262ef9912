"""cognito_user_sync end to end through dag.test(): moto (behind the strict layer) and a real MariaDB.

The same connection code as production: an AWS connection whose cognito-idp endpoint
is the emulator, and a MySQL connection, both given as AIRFLOW_CONN_* variables. A
dag.test() run is a manual run, so a guard that trips makes it wait for a person: the
``approver`` fixture answers through the api-server's own HITL handler.
"""

from __future__ import annotations

import json
import uuid
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
)
from devtools.population import build_scenario, create_pool, create_users
from identity_sync.audit import RunAudit, load_run_record
from identity_sync.identity import normalise_internal_ids
from identity_sync.report import read_csv_gz
from identity_sync.runfiles import RunFiles
from tests.conftest import TableUnderTest, mysql_airflow_connection

pytestmark = [pytest.mark.airflow, pytest.mark.mariadb]
DAG_ID = "cognito_user_sync"


@pytest.fixture
def restored_dev(cognito, mariadb_table: TableUnderTest, tmp_path: Path, monkeypatch):
    """A dev pool with every case, and a dev table restored from prod (prod's subs in CognitoID)."""
    moto_url, proxy = cognito
    client = aws_client("cognito-idp", moto_url)
    scenario = build_scenario(prod_users=300, seed=11)
    suffix = uuid.uuid4().hex[:8]
    prod_pool, dev_pool = create_pool(client, f"prod-{suffix}"), create_pool(client, f"dev-{suffix}")
    prod_subs = create_users(client, prod_pool, scenario.prod_users())
    dev_subs = create_users(client, dev_pool, scenario.dev_users)
    mariadb_table.insert([(p.internal_id, sub, p.email) for p, sub in zip(scenario.prod, prod_subs, strict=True)])

    config = tmp_path / "environments.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "snapshot_base": f"file://{tmp_path / 'runs'}",
                "environments": {
                    "dev": {
                        "aws_conn_id": "aws_e2e",
                        "user_pool_id": dev_pool,
                        "db_conn_id": "users_db_e2e",
                        "users_table": mariadb_table.name,
                    }
                },
            }
        )
    )
    monkeypatch.setenv("COGNITO_SYNC_CONFIG", str(config))
    monkeypatch.delenv("COGNITO_SYNC_SNAPSHOT_BASE", raising=False)
    monkeypatch.setenv(connection_variable("aws_e2e"), aws_connection(proxy.url))
    monkeypatch.setenv(
        connection_variable("users_db_e2e"),
        mysql_airflow_connection(),
    )
    dag = DagBag(dag_folder=PROJECT_ROOT / "dags" / "cognito_user_sync.py").dags[DAG_ID]
    return dag, scenario, dev_subs, tmp_path / "runs"


def _files(runs: Path, run_id: str, environment: str = "dev") -> RunFiles:
    return RunFiles.for_run(f"file://{runs}", DAG_ID, run_id, environment)


def _plan_summary(runs: Path, run_id: str) -> dict:
    return json.loads(_files(runs, run_id).read_text("plan/counts.json"))


def _record(runs: Path, run_id: str) -> RunAudit:
    return load_run_record(_files(runs, run_id))


def _changes_records(runs: Path, run_id: str) -> list[str]:
    return sorted(p.name for p in Path(_files(runs, run_id).path(".").path).glob("changes.try-*"))


def _states(run) -> dict[str, str]:
    return {ti.task_id: ti.state for ti in run.get_task_instances()}


def _run(dag, **conf):
    return dag.test(run_conf={"environments": ["dev"], **conf})


def _synced_events(run_id: str) -> list[dict]:
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        query = (
            select(AssetEvent.extra)
            .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .where(AssetModel.name == "cognito_identity_synced", AssetEvent.source_run_id == run_id)
        )
        return [dict(extra) for extra in session.scalars(query)]


def _xcom_keys(run_id: str) -> list[tuple[str, int, str]]:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.execute(
            select(XComModel.task_id, XComModel.map_index, XComModel.key).where(
                XComModel.dag_id == DAG_ID, XComModel.run_id == run_id
            )
        )
        return sorted(tuple(row) for row in rows)


def _xcom_value(run_id: str, task_id: str, key: str, map_index: int = -1):
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        (value,) = session.scalars(
            select(XComModel.value).where(
                XComModel.dag_id == DAG_ID,
                XComModel.run_id == run_id,
                XComModel.task_id == task_id,
                XComModel.key == key,
                XComModel.map_index == map_index,
            )
        ).all()
    return value  # the column is JSON: the link is stored as the string itself


def test_restore_relinks_every_case_and_a_second_run_changes_nothing(restored_dev, mariadb_table) -> None:
    dag, scenario, dev_subs, runs = restored_dev
    run = _run(dag, after_restore=True, reason="restore test")
    assert run.state == "success"
    first = _plan_summary(runs, run.run_id)
    assert first["counts"] == scenario.expected_dev

    rows = mariadb_table.rows()
    by_id = rows.assign(iid=normalise_internal_ids(rows["InternalUserID"])).set_index("iid")["CognitoID"]
    by_email = rows.assign(email=rows["Email"].str.lower()).set_index("email")["CognitoID"]
    ids = pd.Series([u.internal_id for u in scenario.dev_users], dtype="string")
    shared = set(ids[ids.duplicated(keep=False)].dropna())
    emails = pd.Series([u.email.lower() for u in scenario.dev_users if u.email]).value_counts()

    def unique(email: str) -> bool:
        return emails[email.lower()] == 1

    linked = fallback = 0
    for user, sub in zip(scenario.dev_users, dev_subs, strict=True):
        if user.internal_id and user.internal_id in by_id.index and user.internal_id not in shared:
            assert by_id[user.internal_id] == sub  # linked by InternalUserID
            linked += 1
        elif (
            user.internal_id is None
            and user.verified
            and user.enabled
            and not user.signed_up  # only a verified, confirmed, enabled user may be linked by e-mail
            and user.email
            and user.email.lower() in by_email.index
            and unique(user.email)
        ):
            assert by_email[user.email.lower()] == sub  # linked by the e-mail fallback
            fallback += 1
    assert linked == scenario.expected_dev["relink"] + scenario.expected_dev["insert"]
    assert fallback == scenario.expected_dev["email_fallback"]
    assert len(rows) == len(scenario.prod) + scenario.expected_dev["insert"]

    again = _run(dag, after_restore=True, reason="second run")
    assert again.state == "success"
    second = _plan_summary(runs, again.run_id)
    assert second["metrics"]["rows_to_write"] == 0
    pd.testing.assert_frame_equal(mariadb_table.rows(), rows)
    assert _record(runs, again.run_id).rows_written == 0


def test_a_run_records_who_what_and_how_and_emits_the_synced_event(restored_dev) -> None:
    dag, _, _, runs = restored_dev
    run = _run(dag, after_restore=True, reason="restore 2026-11-20")
    assert run.state == "success"

    record, plan = _record(runs, run.run_id), _plan_summary(runs, run.run_id)
    written = plan["metrics"]["rows_to_write"]
    assert record.trigger.run_type == "manual" and record.trigger.user == "dag_test"
    assert record.trigger.conf == {"environments": ["dev"], "after_restore": True, "reason": "restore 2026-11-20"}
    assert record.params == {  # the effective params: the defaults that applied are recorded too
        "environments": ["dev"],
        "dry_run": False,
        "after_restore": True,
        "allow_mass_change": False,
        "reason": "restore 2026-11-20",
        "approval_timeout_hours": 12.0,
    }
    assert (record.mode.dry_run, record.mode.after_restore, record.mode.approval) == (False, True, "not needed")
    assert record.counts == plan["counts"] and record.rows_written == written > 0
    assert record.outcome == f"applied: {written:,} rows written"
    assert {"plan", "issues", "changes (try 1)"} <= set(record.reports)

    changes = read_csv_gz(_files(runs, run.run_id), "changes.try-1.csv.gz")
    assert changes["InternalUserID"].nunique() == written
    assert set(changes["run_reason"]) == {"restore 2026-11-20"}

    (event,) = _synced_events(run.run_id)
    assert event == {"environment": "dev", "rows_written": written, "counts": plan["counts"]}

    keys = _xcom_keys(run.run_id)  # typed records, one per task instance: nothing fanned out key by key
    assert [k for k in keys if k[2] == "return_value"] == [
        ("apply", 0, "return_value"),
        ("approve", 0, "return_value"),
        ("environments", -1, "return_value"),
        ("extract", 0, "return_value"),
        ("plan", 0, "return_value"),
        ("report", -1, "return_value"),
    ]
    files = _files(runs, run.run_id)  # the links the UI shows: reachable from the tasks
    assert _xcom_value(run.run_id, "approve", "_link_PlanReportLink", 0) == f"{files.base}/plan.csv.gz"
    assert _xcom_value(run.run_id, "approve", "_link_RunRecordLink", 0) == f"{files.base}/summary.md"
    assert _xcom_value(run.run_id, "report", "_link_RunFolderLink") == f"{files.run_folder}/"
    assert {k[2] for k in keys} == {
        "return_value",
        "_link_PlanReportLink",
        "_link_RunRecordLink",
        "_link_RunFolderLink",
    }


def test_a_mass_change_waits_for_a_person_and_reject_writes_nothing(restored_dev, mariadb_table, approver) -> None:
    dag, _, _, runs = restored_dev
    before = mariadb_table.rows()
    person = approver(DAG_ID, "Reject", user="alice")
    person.start()

    run = _run(dag)

    (asked,) = person.asked
    assert (asked.task_id, asked.environment, asked.options) == ("approve", "dev", ["Approve", "Reject"])
    plan = _plan_summary(runs, run.run_id)["metrics"]
    share = f"{plan['cognito_id_changes']:,} of {plan['table_rows']:,} rows"
    assert share in asked.subject and share in asked.body
    assert "max_change_ratio" in asked.body and "after_restore=true" in asked.body  # why the guard tripped
    assert _files(runs, run.run_id).path("plan.csv.gz").path in asked.body  # where the full plan is
    assert "| relink |" in asked.body and "Reject" in asked.body

    assert _states(run) == {
        "environments": "success",
        "extract": "success",
        "plan": "success",
        "approve": "success",
        "apply": "skipped",
        "report": "success",
    }
    pd.testing.assert_frame_equal(mariadb_table.rows(), before)
    record = _record(runs, run.run_id)
    assert record.outcome == "rejected by alice: nothing was written"
    assert (record.mode.approval, record.mode.approved_by, record.rows_written) == ("rejected", "alice", 0)
    assert _changes_records(runs, run.run_id) == []  # a plan that was not applied leaves no record of writes
    assert _synced_events(run.run_id) == []


def test_no_answer_within_the_timeout_ends_with_nothing_written(restored_dev, mariadb_table, approver) -> None:
    dag, _, _, runs = restored_dev
    before = mariadb_table.rows()
    nobody = approver(DAG_ID, None, sweep_timeouts=True)  # looks, never answers; the scheduler's sweep runs
    nobody.start()

    run = _run(dag, approval_timeout_hours=0.0005)  # 1.8 s

    assert len(nobody.asked) == 1 and "no answer within 0.0005 h" in nobody.asked[0].body
    assert (_states(run)["approve"], _states(run)["apply"]) == ("success", "skipped")
    pd.testing.assert_frame_equal(mariadb_table.rows(), before)
    record = _record(runs, run.run_id)
    assert record.outcome == "no answer before the approval timed out: nothing was written"
    assert (record.mode.approval, record.mode.approved_by, record.rows_written) == ("timed out", None, 0)
    assert _changes_records(runs, run.run_id) == []


def test_an_approved_mass_change_applies_exactly_the_plan_shown(restored_dev, mariadb_table, approver) -> None:
    dag, _, _, runs = restored_dev
    person = approver(DAG_ID, "Approve", user="bob")
    person.start()

    run = _run(dag, reason="dev restored by hand")

    assert run.state == "success" and len(person.asked) == 1
    plan = _plan_summary(runs, run.run_id)["metrics"]
    record = _record(runs, run.run_id)
    assert (record.mode.approval, record.mode.approved_by) == ("approved", "bob")
    assert record.rows_written == plan["rows_to_write"] > 0
    assert _changes_records(runs, run.run_id) == ["changes.try-1.csv.gz"]
    assert _synced_events(run.run_id)[0]["rows_written"] == plan["rows_to_write"]
    again = _plan_summary(runs, _run(dag, after_restore=True).run_id)
    assert again["metrics"]["rows_to_write"] == 0  # what was approved is what was written


def test_dry_run_stops_after_the_plan_and_leaves_no_record_of_writes(restored_dev, mariadb_table) -> None:
    dag, scenario, _, runs = restored_dev
    before = mariadb_table.rows()
    run = _run(dag, after_restore=True, dry_run=True)
    assert run.state == "success"
    assert _plan_summary(runs, run.run_id)["counts"] == scenario.expected_dev
    states = _states(run)
    assert (states["approve"], states["apply"], states["report"]) == ("skipped", "skipped", "success")
    pd.testing.assert_frame_equal(mariadb_table.rows(), before)
    record = _record(runs, run.run_id)
    assert record.mode.dry_run and record.outcome == "dry run: plan only, nothing written"
    assert _files(runs, run.run_id).exists("plan.csv.gz") and _changes_records(runs, run.run_id) == []
