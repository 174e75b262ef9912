"""
### cognito_user_sync

Re-links every row of each environment's `Users` table to that environment's Cognito
user pool, keyed on the stable `InternalUserID` (Cognito attribute
`custom:internal_user_id`), in one transaction per environment.

**When it runs:** nightly at 02:30 UTC; by hand (Trigger with the defaults = every
environment, not dry, not after a restore); and on an Asset event `users_db_restored`
from the restore pipeline, whose `extra` names the environment and may give the reason:
`{"environment": "dev", "reason": "restore from prod 2026-11-20"}`. An event implies
`after_restore` for the environment it names; one that names none is refused.

**Steps, per environment (mapped, named by environment):** `extract` (pool and table to
Parquet; one extraction at a time in the deployment, pool `cognito_list_users`) →
`plan` (the diff, `plan.csv.gz` = what the run *would* write, and the run record) →
`approve` (see below) → `apply` (exactly the approved plan, in one locked transaction;
then `changes.try-<n>.csv.gz` = what it *did* write, and an Asset event
`cognito_identity_synced` with `extra` = environment, rows_written, counts) → `report`
(every environment's record in the log, old run folders deleted after
`snapshot_retention_days`).

**Guards and approval.** A plan that changes the CognitoID of more than
`max_change_ratio` of the rows (not lifted by `after_restore`), or whose pool matches
under half of the table (the wrong pool or database), is not applied without a person:
- *a run started by hand* waits in **Required Actions** (`approve`, per environment) for
  Approve/Reject, showing the counts, the share of CognitoIDs that would change, why the
  guard tripped and where the full plan is. Approve applies exactly that plan (its digest
  is checked again; rows that changed since the snapshot are not overwritten). Reject,
  or no answer within `approval_timeout_hours` (default 12), skips that environment's
  `apply`: nothing is written, and the run record says who rejected or that nobody answered.
  The waiting run holds the DAG's only run slot: later runs queue behind it.
- *a scheduled or asset-triggered run* never waits: its `approve` fails at once (the
  failure alert fires), nothing is written in that environment, the others go on, and
  the run slot is free again. Trigger by hand to review and approve.

**Unpausing** creates the latest nightly run at once (`catchup=False`). On an
environment just restored from prod, that run trips the mass-change guard: its
`approve` fails at once with an alert, nothing is written there, and the other
environments are synced. Then trigger by hand with `after_restore` on (or approve).

`allow_mass_change` lifts both guards without asking, for automation; it is recorded.

**Audit trail.** Per environment, under `<snapshot_base>/cognito_user_sync/<run>/<env>/`:
`run.json` and `summary.md` (who or what triggered the run: user, schedule, or the asset
event with its `extra` and source; the effective params, defaults included; the mode:
dry run, after restore, approved by whom; counts; rows written; the reports), the
`plan.csv.gz`, `issues.csv.gz` and `changes.try-<n>.csv.gz`. In the UI: `report`'s log,
its XCom (every environment's outcome, the run folder) and its *Run folder* link, and
the *Plan report* and *Run record* links of each `approve` task.

**Alerts** (a failed task, an approval waiting): Airflow config `[cognito_sync]`
`alert_sns_topic_arn` (+ `alert_aws_conn_id`) and/or `alert_smtp_to` (+
`alert_smtp_conn_id`, `alert_smtp_from`); none by default (logged only).

Configuration: `include/config/environments.yaml` (or `$COGNITO_SYNC_CONFIG`).
"""

from __future__ import annotations

from typing import Any

import pendulum
from airflow.sdk import Asset, AssetOrTimeSchedule, CronTriggerTimetable, dag, get_current_context, task

from identity_sync import schedule, sync
from identity_sync.approval import DEFAULT_TIMEOUT_HOURS
from identity_sync.config import load_settings
from identity_sync.links import RunReport
from identity_sync.notify import FAILED, WAITING, SyncAlert
from identity_sync.params import environments_param, flag_param, number_param, selected_names, text_param
from identity_sync.runfiles import RunFiles
from identity_sync.sync_approval import PlanApproval
from identity_sync.sync_records import Applied, Approved, Planned, RunContext, RunSummary, Snapshot

SETTINGS = load_settings()
SYNCED = Asset(schedule.SYNCED_ASSET_NAME)


def _run() -> RunContext:
    return RunContext.from_context(get_current_context())


def _report(names: list[str]) -> RunSummary:
    return sync.report_step(load_settings(), names, _run(), pendulum.now("UTC"))


@dag(
    dag_id="cognito_user_sync",
    schedule=AssetOrTimeSchedule(
        timetable=CronTriggerTimetable(schedule.NIGHTLY_CRON, timezone=schedule.TIMEZONE),
        assets=Asset(schedule.RESTORE_ASSET_NAME),
    ),
    start_date=pendulum.parse(schedule.START_DATE_ISO),
    catchup=False,
    max_active_runs=1,
    default_args={**schedule.TASK_DEFAULTS, "on_failure_callback": SyncAlert(FAILED)},
    doc_md=__doc__,
    tags=["cognito", "identity"],
    params={
        "environments": environments_param(SETTINGS, "sync"),
        "dry_run": flag_param(
            False, "Plan and write the plan report, then stop: no row is written anywhere.", title="Dry run"
        ),
        "after_restore": flag_param(
            False,
            "The database was just restored from another environment's snapshot, so nearly every CognitoID "
            "changes: lifts the mass-change guard (not the unrelated-pool guard).",
            title="After a restore",
        ),
        "allow_mass_change": flag_param(
            False,
            "Apply even when a guard trips, without asking anyone (for automation). Recorded in the run record.",
            title="Allow a mass change",
        ),
        "reason": text_param(
            "Why this run: kept in the plan and change reports and in the run record.", title="Reason"
        ),
        "approval_timeout_hours": number_param(
            DEFAULT_TIMEOUT_HOURS,
            "When a guard trips in this run, how long to wait for a person's Approve/Reject before giving up "
            "with nothing written.",
            title="Approval timeout (hours)",
            minimum=0,
            maximum=schedule.MAX_APPROVAL_TIMEOUT_HOURS,
        ),
    },
)
def cognito_user_sync() -> None:
    @task
    def environments(params: dict[str, Any], triggering_asset_events: Any = None) -> list[str]:
        events = [e for group in (triggering_asset_events or {}).values() for e in group]
        return sync.select_environments(load_settings(), selected_names(params["environments"]), events)

    @task(pool=schedule.LIST_USERS_POOL, map_index_template="{{ task.op_kwargs['environment'] }}")
    def extract(environment: str) -> Snapshot:
        return sync.extract_step(load_settings(), environment, RunFiles.for_context(environment))

    @task(map_index_template="{{ task.op_kwargs['snapshot'].environment }}")
    def plan(snapshot: Snapshot) -> Planned:
        return sync.plan_step(load_settings(), snapshot, _run())

    approve = PlanApproval.partial(
        task_id="approve",
        map_index_template="{{ task.planned.environment }}",
        notifiers=[SyncAlert(WAITING)],
        retries=0,  # a second try would ask again, or wait again
    )

    @task(outlets=[SYNCED], map_index_template="{{ task.op_kwargs['approved'].environment }}")
    def apply(approved: Approved, outlet_events: Any = None) -> Applied:
        context = get_current_context()
        applied = sync.apply_step(load_settings(), approved, _run(), try_number=context["ti"].try_number)
        outlet_events[SYNCED].extra = applied.event_extra()
        return applied

    names = environments()
    planned = plan.expand(snapshot=extract.expand(environment=names))
    applied = apply.expand(approved=approve.expand(planned=planned).output)
    report = RunReport(task_id="report", python_callable=_report, op_kwargs={"names": names})
    applied >> report.as_teardown()


cognito_user_sync()
