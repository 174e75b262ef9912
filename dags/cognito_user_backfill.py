"""
### cognito_user_backfill

One-off: gives every existing user an `InternalUserID`, in the `Users` table and in the
Cognito attribute `custom:internal_user_id` of each environment's pool, so that
`cognito_user_sync` can link them.

**Steps:** `inspect` (per environment, read only: the pool's schema and users, the
table's schema and rows, and the plan: writes, creations, billable MAU) → `review`
(every refusal for every environment, before anything is written; the summary to
approve) → `approval` (waits in *Required Actions* for Approve/Reject, unless
`dry_run` or `approved`) → `prerequisites` (migrations with `apply_migration`, a
random UUID for each row without one, the pool attribute if missing, and a check that
no app client may write it) → `plan_writes` → `write_chunk` (mapped, at most 4 at once,
each at `rate / 4`; rows re-read just before they are written; resumable) → `verify`
(the share of pool users carrying a valid id) → `report`.

**Never:** overwrites a user's different id (a conflict); links by e-mail a user whose
e-mail is not verified, or who is not CONFIRMED or is disabled; writes an immutable
attribute (refused up front); creates users in a `protected` environment.

**Params:** `environments` (empty: all), `dry_run` (default **true**), `approved` (skip the
approval: for automation that has reviewed a dry run), `approval_timeout_hours` (12),
`apply_migration`, `create_missing_users`, `rate` (writes per second, at most 25).
**Reject, or no answer in time:** nothing is written, and `report` says so.

Files per environment: `<snapshot_base>/cognito_user_backfill/<run>/<env>/`
(`backfill_plan.csv.gz`, `backfill_issues.csv.gz`, `backfill_changes.csv.gz`,
`backfill_write_issues.csv.gz`, `backfill_summary.json`). Safe to run again.
"""

from __future__ import annotations

from typing import Any

import pendulum
from airflow.sdk import TriggerRule, dag, get_current_context, task

from identity_sync import backfill_steps, schedule
from identity_sync.approval import DEFAULT_TIMEOUT_HOURS
from identity_sync.backfill_approval import BackfillApproval, recorded_outcome
from identity_sync.backfill_records import Chunk, ChunkOutcome, Coverage, Inspection, Prerequisites
from identity_sync.backfill_report import report_environment
from identity_sync.config import load_settings
from identity_sync.notify import FAILED, WAITING, SyncAlert
from identity_sync.params import environments_param, flag_param, number_param, selected_names
from identity_sync.ratelimit import QUOTAS
from identity_sync.report import RunFiles

SETTINGS = load_settings()


@dag(
    dag_id="cognito_user_backfill",
    schedule=None,
    start_date=pendulum.parse(schedule.START_DATE_ISO),
    catchup=False,
    max_active_runs=1,
    default_args={**schedule.TASK_DEFAULTS, "on_failure_callback": SyncAlert(FAILED)},
    doc_md=__doc__,
    tags=["cognito", "identity", "one-off"],
    params={
        "environments": environments_param(SETTINGS, "backfill"),
        "dry_run": flag_param(
            True,
            "Read both sides and write the plan (writes, creations, billable MAU); change nothing anywhere.",
            title="Dry run",
        ),
        "approved": flag_param(
            False,
            "Write without waiting for a person's approval in Required Actions (for automation that has reviewed a "
            "dry run).",
            title="Approved beforehand",
        ),
        "approval_timeout_hours": number_param(
            DEFAULT_TIMEOUT_HOURS,
            "How long a real run waits for a person's Approve/Reject; no answer in time counts as Reject.",
            title="Approval timeout (hours)",
            minimum=0,
        ),
        "apply_migration": flag_param(
            False,
            "Add the InternalUserID column and its unique index (include/sql/migrations) if the table lacks them; "
            "otherwise the run refuses, naming the script.",
            title="Apply the migrations",
        ),
        "create_missing_users": flag_param(
            False,
            "Create the users a lower environment's pool lacks (AdminCreateUser, no invitation, the row's id set "
            "at creation). Refused for protected environments.",
            title="Create missing users",
        ),
        "rate": number_param(
            schedule.DEFAULT_WRITE_RATE,
            "Cognito writes per second for the whole run; at most the account's AdminUpdateUserAttributes quota.",
            title="Writes per second",
            minimum=0,
            maximum=QUOTAS["AdminUpdateUserAttributes"],
        ),
    },
)
def cognito_user_backfill() -> None:
    @task
    def environments(params: dict[str, Any]) -> list[str]:
        requested = selected_names(params["environments"])
        return backfill_steps.select_environments(load_settings(), requested, params["create_missing_users"])

    @task(pool=schedule.LIST_USERS_POOL, map_index_template="{{ task.op_kwargs['environment'] }}")
    def inspect(environment: str, params: dict[str, Any]) -> Inspection:
        return backfill_steps.inspect_step(
            load_settings(),
            environment,
            RunFiles.for_context(environment),
            create_missing=params["create_missing_users"],
        )

    @task
    def review(inspections: list[Inspection], params: dict[str, Any]) -> Any:
        return backfill_steps.review_step(
            load_settings(),
            inspections[:],  # one request for all, not a probe per item
            dry_run=params["dry_run"],
            apply_migration=params["apply_migration"],
            approved=params["approved"],
            timeout_hours=params["approval_timeout_hours"],
        )

    @task(map_index_template="{{ task.op_kwargs['inspection'].environment }}")
    def prerequisites(inspection: Inspection, params: dict[str, Any]) -> Prerequisites:
        return backfill_steps.prerequisites_step(load_settings(), inspection, apply_migration=params["apply_migration"])

    @task(map_index_template="{{ task.op_kwargs['prepared'].environment }}")
    def plan_writes(prepared: Prerequisites, params: dict[str, Any]) -> list[Chunk]:
        return backfill_steps.plan_writes_step(
            load_settings(), prepared, create_missing=params["create_missing_users"], slots=schedule.WRITE_SLOTS
        )

    @task
    def chunks(planned: list[list[Chunk]]) -> list[Chunk]:
        return [chunk for part in planned for chunk in part]

    @task(
        max_active_tis_per_dagrun=schedule.WRITE_SLOTS,
        map_index_template="{{ task.op_kwargs['chunk'].label }}",
    )
    def write_chunk(chunk: Chunk, params: dict[str, Any]) -> ChunkOutcome:
        return backfill_steps.write_chunk_step(load_settings(), chunk, rate=params["rate"], slots=schedule.WRITE_SLOTS)

    @task(pool=schedule.LIST_USERS_POOL, trigger_rule=TriggerRule.NONE_FAILED)
    def verify(names: list[str], written: list[ChunkOutcome] | None, params: dict[str, Any]) -> list[Coverage]:
        if params["dry_run"]:
            return []
        settings = load_settings()
        return [backfill_steps.verify_step(settings, name) for name in names]

    @task(trigger_rule=TriggerRule.NONE_FAILED)
    def report(
        inspections: list[Inspection],
        planned: list[Chunk] | None,
        written: list[ChunkOutcome] | None,
        coverages: list[Coverage],
        params: dict[str, Any],
    ) -> dict[str, dict[str, int]]:
        ti = get_current_context()["ti"]
        outcome = recorded_outcome(ti, dry_run=params["dry_run"])
        mode = {"dry_run": params["dry_run"], "outcome": outcome, "params": dict(params)}
        by_env = {c.environment: c for c in coverages}
        chunks_, outcomes = list(planned or []), list(written[:] if written else [])
        summaries = [report_environment(i, chunks_, outcomes, by_env.get(i.environment), mode) for i in inspections[:]]
        return {s["environment"]: s["written"] for s in summaries}

    names = environments()
    inspected = inspect.expand(environment=names)
    approval = BackfillApproval(task_id="approval", request_task_id="review", notifiers=[SyncAlert(WAITING)])
    review(inspected) >> approval
    prepared = prerequisites.expand(inspection=inspected)
    approval >> prepared
    planned = chunks(plan_writes.expand(prepared=prepared))
    written = write_chunk.expand(chunk=planned)
    report(inspected, planned, written, verify(names, written))


cognito_user_backfill()
