"""The steps of cognito_user_backfill, one function per task, runnable without a scheduler.

Everything read-only comes first (pool schema, users, table schema, rows) and every
refusal is decided on it, so a refused run has written nothing anywhere.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from typing import Any

import pandas as pd

from identity_sync.backfill import (
    BACKFILL_CATEGORIES,
    BackfillPlan,
    chunk_frame,
    create_users,
    id_coverage,
    plan_backfill,
    simulate_missing_ids,
    write_attributes,
)
from identity_sync.cognito import CognitoHook, schema_attribute
from identity_sync.config import Settings
from identity_sync.extract import extract_pool
from identity_sync.migrations import apply_migrations, pending_migrations
from identity_sync.ratelimit import RateLimiter, collector_paused, share_of_rate
from identity_sync.report import RunFiles, counts_table
from identity_sync.guards import RefusedError
from identity_sync.table import UsersTable

log = logging.getLogger(__name__)

ID_LENGTH = 36  # a UUID's canonical text form
OPERATIONS = {"write": "AdminUpdateUserAttributes", "create": "AdminCreateUser"}


def refuse_protected_creation(settings: Settings, names: Iterable[str], create_missing: bool) -> None:
    """Creating users is for lower environments; a protected one (prod) refuses before anything runs."""
    protected = [name for name in names if settings.environment(name).protected]
    if create_missing and protected:
        raise RefusedError(
            f"create_missing_users is refused for protected environment(s) {', '.join(protected)}: "
            "users are created only in lower environments. Nothing was written."
        )


def _immutable_refusal(env_name: str, attribute: str, writes: int) -> str:
    return (
        f"environment {env_name!r}: {attribute} is immutable in the pool, and {writes} existing users would need a "
        "value; Cognito never lets an immutable attribute be written after creation. Use a mutable attribute "
        "(set `attribute` to a new, mutable one, kept out of every app client's WriteAttributes), or, in a lower "
        "environment, recreate the users with create_missing_users. Nothing was written."
    )


def prepare_step(
    settings: Settings,
    environment: str,
    files: RunFiles,
    *,
    dry_run: bool,
    apply_migration: bool,
    create_missing: bool,
    slots: int,
) -> dict[str, Any]:
    """Check, then (unless dry run) migrate, assign ids, add the attribute; plan the Cognito writes in chunks."""
    env = settings.environment(environment)
    hook = CognitoHook(aws_conn_id=env.aws_conn_id)
    schema_entry = schema_attribute(hook.describe_user_pool(env.user_pool_id), env.attribute)
    pool = extract_pool(env, hook)
    with UsersTable.open(env) as table:
        pending = pending_migrations(table)
        has_column = not pending or pending[0].script.startswith("V2")
        rows = table.read_for_backfill(has_id_column=has_column)
        missing_ids = int(rows["InternalUserID"].isna().sum())
        plan = plan_backfill(pool, simulate_missing_ids(rows), create_missing=create_missing)

        refusals = []
        if pending and not apply_migration:
            scripts = ", ".join(f"include/sql/migrations/{m.script}" for m in pending)
            refusals.append(
                f"environment {environment!r}: {env.users_table} lacks {' and '.join(m.what for m in pending)}: "
                f"run {scripts} through Flyway, or trigger with apply_migration=true"
            )
        if schema_entry is not None and not schema_entry.get("Mutable", True) and plan.counts["write"]:
            refusals.append(_immutable_refusal(environment, env.attribute, plan.counts["write"]))
        summary = {
            "environment": environment,
            "dry_run": dry_run,
            "pending_migrations": [m.script for m in pending],
            "ids_to_assign": missing_ids,
            "attribute_to_add": schema_entry is None,
            "billable_mau_writes": plan.billable_writes,
            "refusals": refusals,
        }
        if dry_run:
            return _finish_plan(files, plan, summary, slots, chunks=False)
        if refusals:
            raise RefusedError(" ".join(refusals))

        apply_migrations(table, pending)
        summary["ids_assigned"] = table.assign_missing_ids()
        rows = table.read_for_backfill()
    if schema_entry is None:
        hook.add_string_attribute(env.user_pool_id, env.attribute, ID_LENGTH)
        log.info(
            "environment %s: added %s (mutable String, %d chars) to the pool", environment, env.attribute, ID_LENGTH
        )
    plan = plan_backfill(pool, rows, create_missing=create_missing)
    return _finish_plan(files, plan, summary, slots, chunks=True)


def _finish_plan(
    files: RunFiles, plan: BackfillPlan, summary: dict[str, Any], slots: int, *, chunks: bool
) -> dict[str, Any]:
    environment = summary["environment"]
    report = pd.concat(
        [
            plan.writes.assign(action="write attribute"),
            plan.creates.assign(action="create user"),
        ],
        ignore_index=True,
    )
    summary["reports"] = {
        "changes": files.write_text("backfill_changes.csv", report.to_csv(index=False)),
        "issues": files.write_text("backfill_issues.csv", plan.issues.to_csv(index=False)),
    }
    summary["counts"] = plan.counts
    files.write_text("backfill_summary.json", json.dumps(summary, default=str))
    extra = {k: summary[k] for k in ("ids_to_assign", "billable_mau_writes")}
    table = counts_table(environment, plan.counts, extra, categories=BACKFILL_CATEGORIES)
    log.info("backfill plan%s:\n%s", " (dry run)" if summary["dry_run"] else "", table)
    for refusal in summary["refusals"]:
        log.warning("would refuse: %s" if summary["dry_run"] else "refused: %s", refusal)
    summary["chunks"] = []
    if chunks:
        for kind, frame in (("write", plan.writes), ("create", plan.creates)):
            parts = chunk_frame(frame, slots)
            for index, part in enumerate(parts):
                name = f"{kind}s/chunk-{index:03d}.parquet"
                files.write_parquet(name, part)
                part_of = f"{index + 1}/{len(parts)}"
                summary["chunks"].append(
                    {"environment": environment, "kind": kind, "files": files.base, "name": name, "part": part_of}
                )
    return summary


def write_chunk_step(settings: Settings, chunk: dict[str, Any], *, rate: float, slots: int) -> dict[str, Any]:
    """One chunk of writes or creations, at this chunk's share of the rate."""
    env = settings.environment(chunk["environment"])
    frame = RunFiles(chunk["files"]).read_parquet(chunk["name"])
    operation = OPERATIONS[chunk["kind"]]
    limiter = RateLimiter(share_of_rate(rate, slots, operation))
    hook = CognitoHook(aws_conn_id=env.aws_conn_id)
    label = f"{env.name} {chunk['kind']}s, chunk {chunk['part']}"
    run = write_attributes if chunk["kind"] == "write" else create_users
    with collector_paused():
        outcome = run(hook, env.user_pool_id, env.attribute, frame, limiter, label)
    log.info("%s: %s (throttled and retried: %d)", label, outcome, hook.throttled)
    return {"environment": env.name, "kind": chunk["kind"], **outcome, "throttled": hook.throttled}


def verify_step(settings: Settings, environment: str) -> dict[str, Any]:
    """Re-list the pool: the share of its users that carry a valid id."""
    env = settings.environment(environment)
    coverage = id_coverage(extract_pool(env))
    log.info(
        "environment %s: %d of %d pool users (%.1f%%) carry a valid %s",
        environment,
        coverage["with_valid_id"],
        coverage["pool_users"],
        100 * coverage["share"],
        env.attribute,
    )
    return {"environment": environment, **coverage}
