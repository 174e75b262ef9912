"""The steps of cognito_user_sync, one function per task, runnable without a scheduler.

Each step reads what the previous one wrote under the run's folder and returns only
counts and paths, because Airflow logs and stores every return value.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from identity_sync.config import ConfigError, Settings
from identity_sync.extract import extract_pool
from identity_sync.guards import RefusedError, guard_refusals
from identity_sync.reconcile import plan_changes
from identity_sync.report import RunFiles, counts_table
from identity_sync.table import UsersTable

log = logging.getLogger(__name__)


def select_environments(settings: Settings, requested: Iterable[str] | None, asset_events: Any = None) -> list[str]:
    """Names to run: those requested plus those named by restore events; all when neither names any.

    A restore event must name its environment: after_restore lifts the mass-change guard,
    so an event that names none must not lift it for every environment, prod included.
    """
    names = list(requested or [])
    for event in asset_events or []:
        environment = (getattr(event, "extra", None) or {}).get("environment")
        if not environment:
            raise RefusedError(
                'a restore event without extra={"environment": "<name>"}; refusing to treat every environment '
                "as restored"
            )
        names.append(environment)
    try:
        return [env.name for env in settings.select(names)]
    except ConfigError as exc:
        raise RefusedError(str(exc)) from exc


def extract_step(settings: Settings, environment: str, files: RunFiles) -> dict[str, Any]:
    """Snapshot both sides: the pool's users and the table's keys."""
    env = settings.environment(environment)
    pool = extract_pool(env)
    with UsersTable.open(env) as table:
        rows = table.read()
    files.write_parquet("pool.parquet", pool)
    files.write_parquet("table.parquet", rows)
    log.info("environment %s: extracted %d pool users and %d table rows", environment, len(pool), len(rows))
    return {"environment": environment, "pool_users": len(pool), "table_rows": len(rows), "files": files.base}


def plan_step(
    settings: Settings, environment: str, files: RunFiles, *, reason: str, after_restore: bool, allow_mass_change: bool
) -> dict[str, Any]:
    """Diff the snapshots, save the plan and its change report, and say whether the guards allow it."""
    env = settings.environment(environment)
    plan = plan_changes(files.read_parquet("pool.parquet"), files.read_parquet("table.parquet"), env.stale_cognito_ids)
    files.save_plan(plan)
    reports = files.write_reports(plan, reason)
    refusals = guard_refusals(plan, env, after_restore=after_restore, allow_mass_change=allow_mass_change)
    log.info("plan:\n%s", counts_table(environment, plan.counts, plan.metrics))
    for refusal in refusals:
        log.warning("guard: %s", refusal)
    log.info("change report: %s; issues: %s", reports["changes"], reports["issues"])
    return {
        "environment": environment,
        "counts": plan.counts,
        "metrics": plan.metrics,
        "refusals": refusals,
        "reports": reports,
        "files": files.base,
    }


def apply_step(
    settings: Settings, environment: str, files: RunFiles, *, after_restore: bool, allow_mass_change: bool
) -> dict[str, Any]:
    """Apply the saved plan in one transaction, unless a guard refuses it."""
    env = settings.environment(environment)
    plan = files.load_plan()
    refusals = guard_refusals(plan, env, after_restore=after_restore, allow_mass_change=allow_mass_change)
    if refusals:
        raise RefusedError("; ".join(refusals) + ". Nothing was written.")
    with UsersTable.open(env) as table:
        result = table.apply(plan)
    log.info(
        "environment %s: applied %d updated rows (%d CognitoIDs, %d e-mails) and %d inserted rows in one transaction",
        environment,
        result.rows_updated,
        result.cognito_ids_set,
        result.emails_set,
        result.rows_inserted,
    )
    return {"environment": environment, "applied": result.as_dict(), "counts": plan.counts}


def summary_table(plans: Iterable[Mapping[str, Any]], applied: Iterable[Mapping[str, Any] | None]) -> str:
    """All environments side by side, for the last task's log."""
    by_env = {a["environment"]: a["applied"] for a in applied if a}
    blocks = []
    for plan in plans:
        extra = dict(plan["metrics"])
        written = by_env.get(plan["environment"])
        extra["rows_written"] = (written["rows_updated"] + written["rows_inserted"]) if written else 0
        blocks.append(counts_table(plan["environment"], plan["counts"], extra))
    return "\n\n".join(blocks)
