"""Which environments a run covers, by hand or from restore events; what `approve` does and shows."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from identity_sync.approval import ASK, PROCEED, REFUSE, STOP
from identity_sync.audit import AssetEventRecord, RunAudit, TriggerRecord, load_run_record, write_run_record
from identity_sync.config import parse_settings
from identity_sync.guards import RefusedError
from identity_sync.reconcile import CHANGE_COLUMNS, INSERT_COLUMNS, SYNC_ISSUE_COLUMNS, Plan
from identity_sync.runfiles import RunFiles
from identity_sync.sync import apply_step, plan_digest, select_environments
from identity_sync.sync_approval import PlanApproval, approval_request
from identity_sync.sync_records import Approved, Planned, RunContext

SETTINGS = parse_settings(
    {
        "snapshot_base": "file:///tmp/x",
        "environments": {
            name: {"aws_conn_id": f"aws_{name}", "user_pool_id": "us-east-2_Abc", "db_conn_id": f"db_{name}"}
            for name in ("dev", "qa", "prod")
        },
    },
    Path("test.yaml"),
)


def event(**extra: str) -> SimpleNamespace:
    return SimpleNamespace(extra=extra)


def test_no_names_means_every_environment() -> None:
    assert select_environments(SETTINGS, []) == ["dev", "qa", "prod"]


def test_requested_names_in_order_without_duplicates() -> None:
    assert select_environments(SETTINGS, ["qa", "dev", "qa"]) == ["qa", "dev"]


def test_restore_events_name_their_environments() -> None:
    assert select_environments(SETTINGS, [], [event(environment="qa")]) == ["qa"]


def test_an_event_without_environment_is_refused_rather_than_restoring_everything() -> None:
    with pytest.raises(RefusedError, match="environment"):
        select_environments(SETTINGS, [], [event(source="nightly-restore")])


def test_an_unknown_environment_is_refused_naming_it() -> None:
    with pytest.raises(RefusedError, match="'staging'"):
        select_environments(SETTINGS, ["staging"])


# --- the approval: what `approve` does for each kind of run, and what the person reads ---

PLANNED = Planned(
    environment="qa",
    files="file:///runs/cognito_user_sync/run/qa",
    digest="ab" * 32,
    counts={"relink": 120, "insert": 3, "unchanged": 7},
    metrics={"table_rows": 130, "cognito_id_changes": 120, "rows_to_write": 123, "pool_users": 130},
    refusals=["environment 'qa': 120 of 130 rows (92.3%) would change CognitoID, above max_change_ratio 5.0%"],
    tripped=["environment 'qa': 120 of 130 rows (92.3%) would change CognitoID, above max_change_ratio 5.0%"],
    reports={"plan": "s3://audit/sync/run/qa/plan.csv.gz", "issues": "s3://audit/sync/run/qa/issues.csv.gz"},
)
PARAMS = {"dry_run": False, "after_restore": False, "allow_mass_change": False, "approval_timeout_hours": 12.0}


def run_of(run_type: str, **params: object) -> RunContext:
    trigger = TriggerRecord(run_type=run_type, user="alice" if run_type == "manual" else None)
    return RunContext("cognito_user_sync", "run", trigger, {**PARAMS, **params})


def test_a_tripped_guard_in_a_manual_run_asks_a_person_with_the_timeout_param() -> None:
    request = approval_request(PLANNED, run_of("manual", approval_timeout_hours=2.5), "SUMMARY")

    assert request.action == ASK and request.timeout_hours == 2.5
    assert "qa" in request.subject and "120 of 130 rows (92.3%)" in request.subject


def test_the_body_shows_why_the_share_the_digest_what_each_answer_does_and_the_full_plan() -> None:
    body = approval_request(PLANNED, run_of("manual"), "SUMMARY").body

    assert PLANNED.refusals[0] in body  # why the guard tripped
    assert "**120 of 130 rows (92.3%)**" in body and "**123**" in body  # share of links, rows to write
    assert "`abababababab`" in body  # the plan approved is the plan applied
    assert "no answer within 12 h" in body and "nothing written" in body
    assert "s3://audit/sync/run/qa/plan.csv.gz" in body  # where the full plan is, and a link to open it
    assert "(https://s3.console.aws.amazon.com/s3/object/audit?prefix=sync/run/qa/plan.csv.gz)" in body
    assert body.endswith("SUMMARY")  # the run record's counts table, trigger and reports follow


@pytest.mark.parametrize("run_type", ["scheduled", "asset_triggered", "backfill", "operator_triggered"])
def test_a_run_nobody_started_by_hand_refuses_at_once_instead_of_holding_the_run_slot(run_type: str) -> None:
    request = approval_request(PLANNED, run_of(run_type))

    assert request.action == REFUSE
    assert PLANNED.refusals[0] in request.note and f"A {run_type} run does not wait" in request.note
    assert "nothing was written" in request.note and "by hand" in request.note


def test_no_tripped_guard_proceeds_without_asking() -> None:
    clean = replace(PLANNED, refusals=[], tripped=[])

    assert approval_request(clean, run_of("scheduled")).action == PROCEED
    assert approval_request(clean, run_of("manual")).action == PROCEED


def test_allow_mass_change_proceeds_and_says_the_guards_were_lifted() -> None:
    lifted = replace(PLANNED, refusals=[])

    request = approval_request(lifted, run_of("scheduled", allow_mass_change=True))

    assert request.action == PROCEED and "lifted by allow_mass_change" in request.note


def test_a_dry_run_stops_before_the_approval_even_when_a_guard_trips() -> None:
    assert approval_request(PLANNED, run_of("manual", dry_run=True)).action == STOP


def test_an_asset_event_implies_after_restore_and_gives_the_reason() -> None:
    event = AssetEventRecord(asset="users_db_restored", extra={"environment": "dev", "reason": "restore 11-20"})
    run = RunContext("d", "r", TriggerRecord("asset_triggered", asset_events=(event,)), {**PARAMS, "reason": None})

    assert run.mode.after_restore and run.reason == "restore 11-20" and not run.attended


def test_records_go_through_xcom_serialisation_whole() -> None:
    from airflow.sdk.serde import deserialize, serialize

    assert deserialize(serialize(PLANNED)) == PLANNED


# --- the operator and the apply, on real run files: a refusal is recorded, a changed plan is never applied ---


def _context(run_type: str, **params: object) -> dict:
    dag_run = SimpleNamespace(run_type=run_type, triggering_user_name=None, conf={}, run_id="scheduled__1")
    return {
        "dag": SimpleNamespace(dag_id="cognito_user_sync"),
        "run_id": "scheduled__1",
        "dag_run": dag_run,
        "params": {**PARAMS, "reason": "", "environments": [], **params},
        "triggering_asset_events": {},
    }


def _saved_plan(tmp_path: Path) -> tuple[RunFiles, Planned]:
    files = RunFiles(f"file://{tmp_path}/run/qa")
    plan = Plan(
        changes=pd.DataFrame(columns=CHANGE_COLUMNS),
        inserts=pd.DataFrame(columns=INSERT_COLUMNS),
        issues=pd.DataFrame(columns=SYNC_ISSUE_COLUMNS),
        counts=PLANNED.counts,
        metrics=PLANNED.metrics,
    )
    files.save_plan(plan)
    run = RunContext.from_context(_context("scheduled"))
    audit = RunAudit("cognito_user_sync", "scheduled__1", "qa", run.trigger, run.params, "", run.mode, plan.counts)
    write_run_record(files, audit)
    return files, replace(PLANNED, files=files.base, digest=plan_digest(files))


def test_a_scheduled_run_whose_guard_trips_fails_at_once_and_records_the_refusal(tmp_path: Path) -> None:
    files, planned = _saved_plan(tmp_path)

    with pytest.raises(RefusedError, match="A scheduled run does not wait for a person"):
        PlanApproval(task_id="approve", planned=planned).execute(_context("scheduled"))

    record = load_run_record(files)
    assert record.mode.approval == "refused" and record.outcome.startswith("refused: environment 'qa'")


def test_apply_refuses_a_plan_that_is_not_the_one_approved(tmp_path: Path) -> None:
    files, planned = _saved_plan(tmp_path)
    approved = Approved("qa", files.base, planned.digest, "approved", "alice")
    files.write_text("plan/counts.json", files.read_text("plan/counts.json").replace("120", "121"))

    with pytest.raises(RefusedError, match="not the one 'approved' was given for"):
        apply_step(SETTINGS, approved, RunContext.from_context(_context("manual")), try_number=1)
