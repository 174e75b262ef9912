"""cognito_user_sync end to end through dag.test(): moto (behind the strict layer) and a real MariaDB.

The same connection code as production: an AWS connection whose cognito-idp endpoint
is the emulator, and a MySQL connection, both given as AIRFLOW_CONN_* variables.
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
    mysql_connection,
)
from devtools.population import build_scenario, create_pool, create_users
from identity_sync.identity import normalise_internal_ids
from tests.conftest import MYSQL_SETTINGS, TableUnderTest

pytestmark = pytest.mark.airflow


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
        mysql_connection(MYSQL_SETTINGS["host"], MYSQL_SETTINGS["port"], MYSQL_SETTINGS["database"]),
    )
    dag = DagBag(dag_folder=PROJECT_ROOT / "dags" / "cognito_user_sync.py").dags["cognito_user_sync"]
    return dag, scenario, dev_subs, tmp_path / "runs"


def _plan_summary(runs: Path, run_id: str) -> dict:
    folder = runs / "cognito_user_sync" / run_id.replace(":", "_").replace("+", "_") / "dev"
    return json.loads((folder / "plan" / "counts.json").read_text())


def _run(dag, **conf):
    return dag.test(run_conf={"environments": ["dev"], **conf})


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
        elif user.internal_id is None and user.email and user.email.lower() in by_email.index and unique(user.email):
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


def test_mass_change_without_after_restore_is_refused_at_once_and_writes_nothing(restored_dev, mariadb_table) -> None:
    dag, _, _, _ = restored_dev
    before = mariadb_table.rows()
    run = _run(dag)
    assert run.state == "failed"
    states = {(ti.task_id, ti.state, ti.try_number) for ti in run.get_task_instances()}
    assert ("apply", "failed", 1) in states  # a refusal is not retried
    pd.testing.assert_frame_equal(mariadb_table.rows(), before)


def test_dry_run_stops_after_the_plan(restored_dev, mariadb_table) -> None:
    dag, scenario, _, runs = restored_dev
    before = mariadb_table.rows()
    run = _run(dag, after_restore=True, dry_run=True)
    assert run.state == "success"
    assert _plan_summary(runs, run.run_id)["counts"] == scenario.expected_dev
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert states["apply"] == "skipped"
    assert states["report"] == "success"
    pd.testing.assert_frame_equal(mariadb_table.rows(), before)
