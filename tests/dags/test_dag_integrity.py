"""Every DAG in the DagBag imports cleanly and carries what operators rely on: owner, tags, docs, retries,
params whose defaults are valid and never block the trigger form, the schedule, the asset names, the
approval task, and the backfill's safe defaults.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from airflow.dag_processing.dagbag import DagBag
from airflow.providers.standard.operators.hitl import HITLOperator
from airflow.sdk import Asset, AssetOrTimeSchedule, CronTriggerTimetable
from airflow.sdk.definitions.mappedoperator import MappedOperator
from airflow.sdk.definitions.param import ParamValidationError

from devtools.local_airflow import PROJECT_ROOT
from identity_sync import schedule
from identity_sync.ratelimit import QUOTAS

DAGS = PROJECT_ROOT / "dags"
DAG_IDS = ["cognito_user_backfill", "cognito_user_sync"]


@pytest.fixture(scope="module")
def dagbag() -> DagBag:
    return DagBag(dag_folder=DAGS)


def _operator_class(task) -> type:
    return task.operator_class if isinstance(task, MappedOperator) else type(task)


def _retries(task) -> int:
    return task.partial_kwargs.get("retries", task.retries) if isinstance(task, MappedOperator) else task.retries


def _asks_a_person(task) -> bool:
    return issubclass(_operator_class(task), HITLOperator)


def test_every_dag_file_imports_without_errors(dagbag: DagBag) -> None:
    assert dagbag.import_errors == {}
    assert sorted(dagbag.dag_ids) == DAG_IDS


@pytest.mark.parametrize("dag_id", DAG_IDS)
def test_every_dag_has_docs_tags_an_owner_and_one_run_at_a_time(dagbag: DagBag, dag_id: str) -> None:
    dag = dagbag.dags[dag_id]
    assert dag.doc_md and len(dag.doc_md) > 500
    assert "cognito" in dag.tags and "identity" in dag.tags
    assert dag.max_active_runs == 1 and dag.catchup is False
    for task in dag.tasks:
        assert task.owner == schedule.OWNER, task.task_id


@pytest.mark.parametrize("dag_id", DAG_IDS)
def test_tasks_retry_transient_faults_and_a_question_to_a_person_is_asked_once(dagbag: DagBag, dag_id: str) -> None:
    for task in dagbag.dags[dag_id].tasks:
        if _asks_a_person(task):
            assert _retries(task) == 0, task.task_id  # a retry would ask again, and wait again
        else:
            assert _retries(task) == schedule.RETRY_ARGS["retries"], task.task_id
            assert task.retry_exponential_backoff == schedule.RETRY_ARGS["retry_exponential_backoff"]


@pytest.mark.parametrize("dag_id", DAG_IDS)
def test_every_param_is_described_and_its_default_is_valid(dagbag: DagBag, dag_id: str) -> None:
    params = dagbag.dags[dag_id].params
    params.validate()  # raises on a default its own schema rejects
    for name in params:
        param = params.get_param(name)
        assert param.description and len(param.description) > 20, name
        assert param.schema.get("title"), name


@pytest.mark.parametrize("dag_id", DAG_IDS)
def test_no_param_blocks_trigger_with_its_default_or_when_cleared(dagbag: DagBag, dag_id: str) -> None:
    """The form renders a param required unless its type admits null, and "" or null in a required field
    disables Trigger: so every param that can be empty must admit null, and null must be valid."""
    params = dagbag.dags[dag_id].params
    for name in params:
        param = params.get_param(name)
        types = param.schema["type"] if isinstance(param.schema["type"], list) else [param.schema["type"]]
        if param.value in ("", None, []) or {"string", "array"} & set(types):
            assert "null" in types, name
            copy.deepcopy(param).resolve(None)  # resolve() keeps the value: never on the shared DagBag's param


def test_environments_is_a_multi_select_of_the_configured_names(dagbag: DagBag) -> None:
    for dag_id in DAG_IDS:
        schema = dagbag.dags[dag_id].params.get_param("environments").schema
        assert schema["examples"] == schema["items"]["enum"] == ["dev", "qa", "prod"]  # examples: the form's options
        assert dagbag.dags[dag_id].params["environments"] == []


def test_sync_params_defaults_mean_all_environments_not_dry_not_after_restore(dagbag: DagBag) -> None:
    params = dagbag.dags["cognito_user_sync"].params
    assert dict(params) == {
        "environments": [],
        "dry_run": False,
        "after_restore": False,
        "allow_mass_change": False,
        "reason": "",
        "approval_timeout_hours": 12.0,
    }


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("environments", ["staging"]),
        ("environments", ["dev", "dev"]),
        ("dry_run", "yes"),
        ("after_restore", 1),
        ("reason", "x" * 501),
        ("approval_timeout_hours", 0),
        ("approval_timeout_hours", 73),
    ],
)
def test_sync_params_reject_bad_values(dagbag: DagBag, name: str, value: object) -> None:
    param = dagbag.dags["cognito_user_sync"].params.get_param(name)
    with pytest.raises(ParamValidationError):
        param.resolve(value)


def test_sync_runs_nightly_or_on_the_restore_asset_and_emits_the_synced_asset(dagbag: DagBag) -> None:
    dag = dagbag.dags["cognito_user_sync"]
    assert isinstance(dag.timetable, AssetOrTimeSchedule)
    cron = dag.timetable.timetable
    assert isinstance(cron, CronTriggerTimetable) and cron.expression == "30 2 * * *"
    assert dag.timetable.asset_condition == Asset("users_db_restored")
    assert dag.get_task("apply").outlets == [Asset("cognito_identity_synced")]


def test_sync_tasks_and_the_approval_named_by_environment(dagbag: DagBag) -> None:
    dag = dagbag.dags["cognito_user_sync"]
    assert [t.task_id for t in dag.tasks] == ["environments", "extract", "plan", "approve", "apply", "report"]
    approve = dag.get_task("approve")
    assert _asks_a_person(approve) and isinstance(approve, MappedOperator)
    assert approve.partial_kwargs["map_index_template"] == "{{ task.planned.environment }}"
    assert dag.get_task("report").is_teardown  # always runs; the run's state is that of the work before it
    for task in dag.tasks:
        assert task.on_failure_callback, task.task_id  # the failure alert


def test_backfill_is_dry_by_default_and_its_rate_stays_within_the_write_quota(dagbag: DagBag) -> None:
    params = dagbag.dags["cognito_user_backfill"].params
    assert params["dry_run"] is True
    rate = params.get_param("rate")
    assert rate.schema["maximum"] == QUOTAS["AdminUpdateUserAttributes"] == 25
    assert rate.schema["exclusiveMinimum"] == 0
    for bad in (0, -1, 26):
        with pytest.raises(ParamValidationError):
            rate.resolve(bad)
    assert dagbag.dags["cognito_user_backfill"].schedule is None  # one-off: never on a timer


def test_a_bad_config_fails_the_import_naming_environment_and_key(tmp_path: Path, monkeypatch) -> None:
    bad = tmp_path / "environments.yaml"
    bad.write_text("environments:\n  dev:\n    aws_conn_id: aws_dev\n    user_pool_id: us-east-2_X1\n    db_conn: d\n")
    monkeypatch.setenv("COGNITO_SYNC_CONFIG", str(bad))
    errors = DagBag(dag_folder=DAGS / "cognito_user_sync.py").import_errors
    assert len(errors) == 1
    (message,) = errors.values()
    assert "environment 'dev'" in message and "'db_conn'" in message
