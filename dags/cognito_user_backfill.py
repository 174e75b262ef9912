"""
### cognito_user_backfill

One-off: gives every existing user an `InternalUserID`, in the `Users` table and in the
Cognito attribute `custom:internal_user_id` of each environment's pool, so that
`cognito_user_sync` can link them.

**Steps, per environment:** `prepare` reads the pool's schema and users and the table,
checks the schema (migrations `include/sql/migrations/V*__*.sql`), and decides every
refusal before any write; then, unless `dry_run`, applies the migrations (only with
`apply_migration`), gives rows without an id a random UUID, adds the attribute to the
pool if missing (mutable String, 36 characters), and plans the writes. `write_chunk`
(mapped, at most 4 at once, each at `rate / 4`) writes the attribute where it is
missing (AdminUpdateUserAttributes) and, with `create_missing_users`, creates the
users a lower pool lacks (AdminCreateUser, no invitation, id set at creation).
`verify` re-lists each pool and reports the share of users carrying a valid id.

**Never:** overwrites a user's different id (reported as a conflict); writes to an
immutable attribute (refused up front, with what to do); creates users in a
`protected` environment (refused at once).

**Params:** `environments`, `dry_run` (default **true**: reports what would be written,
including the users that would become billable MAU, and changes nothing anywhere),
`apply_migration`, `create_missing_users`, `rate` (writes per second, at most 25).

Safe to run again: a run that died half way skips what is done.
"""

from __future__ import annotations

from typing import Any

import pendulum
from airflow.sdk import Param, TriggerRule, dag, get_current_context, task

from identity_sync import backfill_steps, schedule, sync
from identity_sync.config import load_settings
from identity_sync.params import environments_param
from identity_sync.ratelimit import QUOTAS
from identity_sync.report import RunFiles

SETTINGS = load_settings()


@dag(
    dag_id="cognito_user_backfill",
    schedule=None,
    start_date=pendulum.parse(schedule.START_DATE_ISO),
    catchup=False,
    max_active_runs=1,
    default_args=schedule.RETRY_ARGS,
    doc_md=__doc__,
    tags=["cognito", "identity", "one-off"],
    params={
        "environments": environments_param(SETTINGS, "backfill"),
        "dry_run": Param(True, type="boolean", description="Report what would be written; change nothing anywhere."),
        "apply_migration": Param(
            False, type="boolean", description="Add the InternalUserID column and index if missing."
        ),
        "create_missing_users": Param(
            False, type="boolean", description="Create users missing from a lower pool (refused for protected ones)."
        ),
        "rate": Param(
            schedule.DEFAULT_WRITE_RATE,
            type="number",
            exclusiveMinimum=0,
            maximum=QUOTAS["AdminUpdateUserAttributes"],
            description="Cognito writes per second for the whole run.",
        ),
    },
)
def cognito_user_backfill() -> None:
    @task
    def environments(params: dict[str, Any]) -> list[str]:
        settings = load_settings()
        names = sync.select_environments(settings, params["environments"])
        backfill_steps.refuse_protected_creation(settings, names, params["create_missing_users"])
        return names

    @task(pool=schedule.LIST_USERS_POOL, map_index_template="{{ task.op_kwargs['environment'] }}")
    def prepare(environment: str, params: dict[str, Any]) -> dict[str, Any]:
        settings = load_settings()
        context = get_current_context()
        return backfill_steps.prepare_step(
            settings,
            environment,
            RunFiles.for_run(settings.snapshot_base, context["dag"].dag_id, context["run_id"], environment),
            dry_run=params["dry_run"],
            apply_migration=params["apply_migration"],
            create_missing=params["create_missing_users"],
            slots=schedule.WRITE_SLOTS,
        )

    @task
    def chunks(prepared: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [chunk for summary in prepared[:] for chunk in summary["chunks"]]

    @task(
        max_active_tis_per_dagrun=schedule.WRITE_SLOTS,
        map_index_template="{{ task.op_kwargs['chunk']['environment'] }} {{ task.op_kwargs['chunk']['kind'] }}s "
        "{{ task.op_kwargs['chunk']['part'] }}",
    )
    def write_chunk(chunk: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
        return backfill_steps.write_chunk_step(load_settings(), chunk, rate=params["rate"], slots=schedule.WRITE_SLOTS)

    @task(pool=schedule.LIST_USERS_POOL, trigger_rule=TriggerRule.NONE_FAILED)
    def verify(names: list[str], written: list[dict[str, Any]]) -> list[dict[str, Any]]:
        settings = load_settings()
        return [backfill_steps.verify_step(settings, name) for name in names]

    names = environments()
    prepared = prepare.expand(environment=names)
    verify(names, write_chunk.expand(chunk=chunks(prepared)))


cognito_user_backfill()
