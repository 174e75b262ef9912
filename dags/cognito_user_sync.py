"""
### cognito_user_sync

Re-links every row of each environment's `Users` table to that environment's Cognito
user pool, keyed on the stable `InternalUserID` (Cognito attribute
`custom:internal_user_id`), in one transaction per environment.

**When it runs:** nightly at 02:30 UTC; by hand after a restore (set `after_restore`);
and on an Asset event `users_db_restored` whose `extra` names the environment
(`{"environment": "dev"}`), which implies `after_restore`.

**Steps, per environment (mapped):** `extract` snapshots the pool and the table to
Parquet, `plan` diffs them (relink, email_update, email_fallback, insert, stale,
unlinked, conflict, unchanged) and writes `changes.csv` / `issues.csv`, `apply` writes
the plan in one locked transaction, `report` prints the counts of every environment.

**Params:** `environments` (default all), `dry_run` (stop after the plan),
`after_restore` (lifts the mass-change guard: every CognitoID changes after a restore),
`allow_mass_change` (lifts every guard), `reason` (kept in the change report).

**Guards:** a run not marked `after_restore` refuses to change the CognitoID of more
than `max_change_ratio` of the rows; any run refuses when under half of the pool's
users match a row. A refusal fails at once, without retries, and writes nothing.

Configuration: `include/config/environments.yaml` (or `$COGNITO_SYNC_CONFIG`).
"""

from __future__ import annotations

import logging
from typing import Any

import pendulum
from airflow.sdk import (
    Asset,
    AssetOrTimeSchedule,
    CronTriggerTimetable,
    Param,
    TriggerRule,
    dag,
    get_current_context,
    task,
)
from airflow.sdk.exceptions import AirflowSkipException

from identity_sync import schedule, sync
from identity_sync.config import load_settings
from identity_sync.params import environments_param
from identity_sync.report import RunFiles

log = logging.getLogger(__name__)
SETTINGS = load_settings()


def _files(environment: str) -> RunFiles:
    context = get_current_context()
    return RunFiles.for_run(load_settings().snapshot_base, context["dag"].dag_id, context["run_id"], environment)


def _after_restore() -> bool:
    context = get_current_context()
    return bool(context["params"]["after_restore"] or context.get("triggering_asset_events"))


@dag(
    dag_id="cognito_user_sync",
    schedule=AssetOrTimeSchedule(
        timetable=CronTriggerTimetable(schedule.NIGHTLY_CRON, timezone=schedule.TIMEZONE),
        assets=Asset(schedule.RESTORE_ASSET_NAME),
    ),
    start_date=pendulum.parse(schedule.START_DATE_ISO),
    catchup=False,
    max_active_runs=1,
    default_args=schedule.RETRY_ARGS,
    doc_md=__doc__,
    tags=["cognito", "identity"],
    params={
        "environments": environments_param(SETTINGS, "reconcile"),
        "dry_run": Param(False, type="boolean", description="Stop after the plan: write no row."),
        "after_restore": Param(
            False, type="boolean", description="The database was just restored: every CognitoID may change."
        ),
        "allow_mass_change": Param(
            False, type="boolean", description="Lift the mass-change and unrelated-pool guards."
        ),
        "reason": Param("", type="string", maxLength=500, description="Why this run; kept in the change report."),
    },
)
def cognito_user_sync() -> None:
    @task
    def environments(params: dict[str, Any], triggering_asset_events: Any = None) -> list[str]:
        events = [e for group in (triggering_asset_events or {}).values() for e in group]
        return sync.select_environments(load_settings(), params["environments"], events)

    @task(pool=schedule.LIST_USERS_POOL, map_index_template="{{ task.op_kwargs['environment'] }}")
    def extract(environment: str) -> dict[str, Any]:
        return sync.extract_step(load_settings(), environment, _files(environment))

    @task(map_index_template="{{ task.op_kwargs['snapshot']['environment'] }}")
    def plan(snapshot: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
        return sync.plan_step(
            load_settings(),
            snapshot["environment"],
            RunFiles(snapshot["files"]),
            reason=params["reason"],
            after_restore=_after_restore(),
            allow_mass_change=params["allow_mass_change"],
        )

    @task(map_index_template="{{ task.op_kwargs['planned']['environment'] }}")
    def apply(planned: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
        if params["dry_run"]:
            raise AirflowSkipException(f"dry run: plan for {planned['environment']} written, nothing applied")
        return sync.apply_step(
            load_settings(),
            planned["environment"],
            RunFiles(planned["files"]),
            after_restore=_after_restore(),
            allow_mass_change=params["allow_mass_change"],
        )

    @task(trigger_rule=TriggerRule.NONE_FAILED)
    def report(plans: list[dict[str, Any]], applied: list[dict[str, Any]]) -> dict[str, Any]:
        plans, applied = list(plans[:]), list(applied[:])  # one slice request each, not a probe per item
        log.info("summary\n%s", sync.summary_table(plans, applied))
        return {p["environment"]: p["counts"] for p in plans}

    planned = plan.expand(snapshot=extract.expand(environment=environments()))
    report(planned, apply.expand(planned=planned))


cognito_user_sync()
