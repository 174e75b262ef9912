"""Refusals before writing: a wrong pool id or a wrong database must not rewrite an environment."""

from __future__ import annotations

from airflow.sdk.exceptions import AirflowFailException

from identity_sync.config import Environment
from identity_sync.reconcile import Plan


class RefusedError(AirflowFailException):
    """A refusal, not a fault: fail the task at once, without retries, having written nothing."""


MIN_MATCH_SHARE = 0.5  # below this share of pool users matching a row, pool and table look unrelated


def guard_refusals(plan: Plan, env: Environment, *, after_restore: bool, allow_mass_change: bool) -> list[str]:
    """Why this plan must not be applied without a person's approval (empty when it may be)."""
    return [] if allow_mass_change else tripped_guards(plan, env, after_restore=after_restore)


def tripped_guards(plan: Plan, env: Environment, *, after_restore: bool) -> list[str]:
    """Every guard this plan trips, whether or not allow_mass_change lifts them (for the audit record)."""
    refusals = []
    m = plan.metrics
    rows, changes = m["table_rows"], m["cognito_id_changes"]
    if not after_restore and rows and changes / rows > env.max_change_ratio:
        refusals.append(
            f"environment {env.name!r}: {changes} of {rows} rows ({changes / rows:.1%}) would change CognitoID, "
            f"above max_change_ratio {env.max_change_ratio:.1%}. If the database was just restored, trigger with "
            "after_restore=true; if this is intended, with allow_mass_change=true"
        )
    pool, matched = m["pool_users"], m["matched_pool_users"]
    if (pool or rows) and (not pool or matched / pool < MIN_MATCH_SHARE):
        share = matched / pool if pool else 0.0
        refusals.append(
            f"environment {env.name!r}: only {matched} of {pool} pool users ({share:.1%}) match a row of "
            f"{env.users_table} ({rows} rows); the pool and the table look unrelated: check user_pool_id and "
            "db_conn_id, or trigger with allow_mass_change=true"
        )
    return refusals
