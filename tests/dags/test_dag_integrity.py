"""The DAG files import cleanly, and their schedule, params and retries are what operators rely on."""

from __future__ import annotations

from pathlib import Path

import pytest
from airflow.dag_processing.dagbag import DagBag
from airflow.sdk import AssetOrTimeSchedule
from airflow.sdk.definitions.param import ParamValidationError

from devtools.local_airflow import PROJECT_ROOT

DAGS = PROJECT_ROOT / "dags"


@pytest.fixture(scope="module")
def dagbag() -> DagBag:
    return DagBag(dag_folder=DAGS)


def test_every_dag_file_imports_without_errors(dagbag: DagBag) -> None:
    assert dagbag.import_errors == {}
    assert "cognito_user_sync" in dagbag.dag_ids


def test_sync_dag_is_nightly_or_asset_triggered_one_run_at_a_time(dagbag: DagBag) -> None:
    dag = dagbag.dags["cognito_user_sync"]
    assert isinstance(dag.timetable, AssetOrTimeSchedule) or "AssetOrTime" in type(dag.timetable).__name__
    assert dag.max_active_runs == 1
    assert dag.catchup is False
    assert dag.doc_md and "after_restore" in dag.doc_md
    assert {t.task_id for t in dag.tasks} == {"environments", "extract", "plan", "apply", "report"}
    for task in dag.tasks:
        assert task.retries == 3
        assert task.retry_exponential_backoff == 2.0


def test_sync_params_defaults_and_choices(dagbag: DagBag) -> None:
    params = dagbag.dags["cognito_user_sync"].params
    assert params["environments"] == []
    assert params["dry_run"] is False
    assert params["after_restore"] is False
    assert params["allow_mass_change"] is False
    assert params["reason"] == ""
    choices = params.get_param("environments").schema["items"]["enum"]
    assert choices == ["dev", "qa", "prod"]


@pytest.mark.parametrize(
    ("name", "value"),
    [("environments", ["staging"]), ("dry_run", "yes"), ("after_restore", 1), ("reason", "x" * 501)],
)
def test_sync_params_reject_bad_values(dagbag: DagBag, name: str, value: object) -> None:
    param = dagbag.dags["cognito_user_sync"].params.get_param(name)
    with pytest.raises(ParamValidationError):
        param.resolve(value)
    param.resolve(param.value)  # the default itself is valid


def test_a_bad_config_fails_the_import_naming_environment_and_key(tmp_path: Path, monkeypatch) -> None:
    bad = tmp_path / "environments.yaml"
    bad.write_text("environments:\n  dev:\n    aws_conn_id: aws_dev\n    user_pool_id: us-east-2_X1\n    db_conn: d\n")
    monkeypatch.setenv("COGNITO_SYNC_CONFIG", str(bad))
    errors = DagBag(dag_folder=DAGS / "cognito_user_sync.py").import_errors
    assert len(errors) == 1
    (message,) = errors.values()
    assert "environment 'dev'" in message and "'db_conn'" in message
