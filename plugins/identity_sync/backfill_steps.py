"""The steps of cognito_user_backfill, one function per task, runnable without a scheduler.

inspect (read only: pool schema and users, table schema and rows; the plan a dry run
shows) -> review (every refusal, for every environment, before anything is written; the
approval request) -> prerequisites (migrations, ids, the pool attribute, the app-client
check) -> plan_writes (the chunks) -> write_chunk (backfill_writes) -> verify -> report.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any

import pandas as pd

from identity_sync.approval import ASK, DEFAULT_TIMEOUT_HOURS, PROCEED, STOP, ApprovalRequest
from identity_sync.backfill import (
    BACKFILL_CATEGORIES,
    BackfillPlan,
    chunk_frame,
    id_coverage,
    plan_backfill,
    simulate_missing_ids,
)
from identity_sync.backfill_records import Chunk, ChunkOutcome, Coverage, Inspection, Prerequisites
from identity_sync.backfill_writes import write_chunk
from identity_sync.cognito import CognitoHook, schema_attribute
from identity_sync.config import ConfigError, Environment, Settings
from identity_sync.extract import extract_pool
from identity_sync.guards import RefusedError
from identity_sync.migrations import MIGRATIONS, apply_migrations, pending_migrations
from identity_sync.pool_checks import attribute_writers
from identity_sync.ratelimit import RateLimiter, collector_paused, share_of_rate
from identity_sync.report import RunFiles, counts_table, write_frame_report
from identity_sync.runfiles import report_links_markdown
from identity_sync.table import UsersTable

log = logging.getLogger(__name__)

ID_LENGTH = 36  # a UUID's canonical text form
OPERATIONS = {"write": "AdminUpdateUserAttributes", "create": "AdminCreateUser"}
REPORT_COLUMNS = ["action", "sub", "username", "UserID", "InternalUserID", "matched_by"]
ACTIONS = {"write": "write attribute", "create": "create user"}  # a chunk's kind -> the reports' action
PLAN_REPORT, ISSUES_REPORT = "backfill_plan.csv.gz", "backfill_issues.csv.gz"


def select_environments(settings: Settings, requested: Iterable[str] | None, create_missing: bool) -> list[str]:
    """The environments to backfill (all when none named); creating users in a protected one is refused."""
    try:
        names = [env.name for env in settings.select(list(requested or []))]
    except ConfigError as exc:
        raise RefusedError(str(exc)) from exc
    protected = [name for name in names if settings.environment(name).protected]
    if create_missing and protected:
        raise RefusedError(
            f"create_missing_users is refused for protected environment(s) {', '.join(protected)}: "
            "users are created only in lower environments. Nothing was written."
        )
    return names


def write_plan_reports(files: RunFiles, plan: BackfillPlan) -> dict[str, str]:
    """What the run would write (``backfill_plan.csv.gz``: a plan, not a record of writes) and its issues."""
    planned = pd.concat(
        [plan.writes.assign(action=ACTIONS["write"]), plan.creates.assign(action=ACTIONS["create"])], ignore_index=True
    )
    return {
        "plan": write_frame_report(files, PLAN_REPORT, planned.reindex(columns=REPORT_COLUMNS)),
        "issues": write_frame_report(files, ISSUES_REPORT, plan.issues),
    }


def inspect_step(settings: Settings, environment: str, files: RunFiles, *, create_missing: bool) -> Inspection:
    """Read both sides and plan against the ids the rows would get; write nothing but the run's files."""
    env = settings.environment(environment)
    hook = CognitoHook(aws_conn_id=env.aws_conn_id)
    schema_entry = schema_attribute(hook.describe_user_pool(env.user_pool_id), env.attribute)
    pool = extract_pool(env, hook)
    files.write_parquet("pool.parquet", pool)
    with UsersTable.open(env) as table:
        pending = pending_migrations(table)
        rows = table.read_for_backfill(has_id_column=MIGRATIONS[0] not in pending)
    plan = plan_backfill(pool, simulate_missing_ids(rows), create_missing=create_missing)
    reports = write_plan_reports(files, plan)
    inspection = Inspection(
        environment=environment,
        files=files.base,
        pending_migrations=[m.script for m in pending],
        ids_to_assign=int(rows["InternalUserID"].isna().sum()),
        attribute_to_add=schema_entry is None,
        counts=plan.counts,
        billable_mau_writes=plan.billable_writes,
        refusals=[
            *_immutable_refusal(environment, env.attribute, schema_entry, plan.counts["write"]),
            *(writer_refusals(env, hook) if schema_entry else []),
        ],
        reports=reports,
    )
    extra = {"ids_to_assign": inspection.ids_to_assign, "billable_mau_writes": inspection.billable_mau_writes}
    log.info("backfill plan:\n%s", counts_table(environment, plan.counts, extra, categories=BACKFILL_CATEGORIES))
    return inspection


def _immutable_refusal(environment: str, attribute: str, schema_entry: Any, writes: int) -> list[str]:
    """Cognito never lets an immutable attribute be written after creation: refused before any write."""
    if schema_entry is None or schema_entry.get("Mutable", True) or not writes:
        return []
    return [
        f"environment {environment!r}: {attribute} is immutable in the pool, and {writes} existing users would "
        "need a value; Cognito never lets an immutable attribute be written after creation. Use a mutable "
        "attribute (set `attribute` to a new, mutable one, kept out of every app client's WriteAttributes), or, "
        "in a lower environment, recreate the users with create_missing_users"
    ]


def refusals(settings: Settings, inspection: Inspection, apply_migration: bool) -> list[str]:
    """Why the real run must not write to this environment (empty when it may)."""
    reasons = list(inspection.refusals)
    if inspection.pending_migrations and not apply_migration:
        env = settings.environment(inspection.environment)
        lacks = " and ".join(m.what for m in MIGRATIONS if m.script in inspection.pending_migrations)
        scripts = ", ".join(f"include/sql/migrations/{script}" for script in inspection.pending_migrations)
        reasons.insert(
            0,
            f"environment {env.name!r}: {env.users_table} lacks {lacks}: run {scripts} through Flyway, or trigger "
            "with apply_migration=true",
        )
    return reasons


def approval_markdown(inspections: Sequence[Inspection], timeout_hours: float) -> str:
    """The dry-run summary a person approves: per environment, what the run will write and what it costs."""
    lines = [
        "**The backfill's plan. Nothing has been written yet.**",
        "",
        "**Approve** migrates (if asked), assigns the ids, adds the attribute and writes what follows; "
        f"**Reject**, or no answer within {timeout_hours:g} h, ends the run with nothing written.",
        "",
        "| environment | attribute writes | billable MAU | users to create | ids to assign | migrations "
        "| attribute to add | conflicts | unlinked | rows without a user |",
        "|---|---:|---:|---:|---:|---|---|---:|---:|---:|",
    ]
    for i in inspections:
        c = i.counts
        lines.append(
            f"| {i.environment} | {c['write']:,} | {i.billable_mau_writes:,} | {c['create']:,} | {i.ids_to_assign:,} "
            f"| {', '.join(i.pending_migrations) or 'none'} | {'yes' if i.attribute_to_add else 'no'} "
            f"| {c['conflict']:,} | {c['unlinked']:,} | {c['missing_user']:,} |"
        )
    lines += ["", "Each attribute write makes that user a billable monthly active user (MAU) this month.", ""]
    lines += ["Full plan (every write and creation) and issues, per environment:"]
    lines += [report_links_markdown({f"{i.environment} {k}": v for k, v in i.reports.items()}) for i in inspections]
    return "\n".join(lines)


def review_step(
    settings: Settings,
    inspections: Sequence[Inspection],
    *,
    dry_run: bool,
    apply_migration: bool,
    approved: bool,
    timeout_hours: float = DEFAULT_TIMEOUT_HOURS,
) -> ApprovalRequest:
    """Refuse (for every environment at once, before any write), or say whether to ask a person."""
    reasons = [reason for i in inspections for reason in refusals(settings, i, apply_migration)]
    for reason in reasons:
        log.warning("%s: %s", "a real run would refuse" if dry_run else "refused", reason)
    if reasons and not dry_run:
        raise RefusedError(" ".join(f"{reason}." for reason in reasons) + " Nothing was written.")
    body = approval_markdown(inspections, timeout_hours)
    writes = sum(i.counts["write"] for i in inspections)
    creates = sum(i.counts["create"] for i in inspections)
    names = ", ".join(i.environment for i in inspections)
    subject = f"cognito_user_backfill: write ids in {names}? ({writes:,} writes = billable MAU, {creates:,} creations)"
    if dry_run:
        return ApprovalRequest(STOP, subject, body, "dry run: the plan is written, nothing else")
    if approved:
        return ApprovalRequest(PROCEED, subject, body, "approved beforehand (param approved=true)")
    return ApprovalRequest(ASK, subject, body, timeout_hours=timeout_hours)


def writer_refusals(env: Environment, hook: CognitoHook) -> list[str]:
    """The sync trusts the attribute: an app client that may write it lets any signed-in user claim any id."""
    writers = attribute_writers(list(hook.app_clients(env.user_pool_id)), env.attribute)
    if not writers:
        return []
    named = ", ".join(f"{c['ClientId']} ({c.get('ClientName') or 'no name'})" for c in writers)
    return [
        f"environment {env.name!r}: app client(s) {named} can write {env.attribute} (it is in their "
        "WriteAttributes): any signed-in user could set it to another person's id. Remove it from every app "
        "client's WriteAttributes"
    ]


def prerequisites_step(settings: Settings, inspection: Inspection, *, apply_migration: bool) -> Prerequisites:
    """Migrations (if asked), ids for rows without one, the pool attribute; then no app client may write it."""
    env = settings.environment(inspection.environment)
    hook = CognitoHook(aws_conn_id=env.aws_conn_id)
    schema_entry = schema_attribute(hook.describe_user_pool(env.user_pool_id), env.attribute)
    with UsersTable.open(env) as table:
        pending = pending_migrations(table)
        now = replace(inspection, pending_migrations=[m.script for m in pending])
        still = refusals(settings, now, apply_migration)
        still += _immutable_refusal(env.name, env.attribute, schema_entry, inspection.counts["write"])
        if still:  # the table or the pool changed while the run waited
            raise RefusedError(" ".join(f"{reason}." for reason in dict.fromkeys(still)) + " Nothing was written.")
        apply_migrations(table, pending)
        assigned = table.assign_missing_ids()
    if schema_entry is None:
        hook.add_string_attribute(env.user_pool_id, env.attribute, ID_LENGTH)
        log.info("environment %s: added %s (mutable String, %d chars) to the pool", env.name, env.attribute, ID_LENGTH)
    if reasons := writer_refusals(env, hook):
        after = "The table's ids and the pool's attribute are in place; no Cognito user was written."
        raise RefusedError(f"{reasons[0]}. {after}")
    return Prerequisites(env.name, inspection.files, [m.script for m in pending], assigned, schema_entry is None)


def plan_writes_step(settings: Settings, prepared: Prerequisites, *, create_missing: bool, slots: int) -> list[Chunk]:
    """The plan against the ids the rows now have, as chunk files for the mapped writes."""
    env = settings.environment(prepared.environment)
    files = RunFiles(prepared.files)
    with UsersTable.open(env) as table:
        rows = table.read_for_backfill()
    plan = plan_backfill(files.read_parquet("pool.parquet"), rows, create_missing=create_missing)
    write_plan_reports(files, plan)
    log.info("backfill plan:\n%s", counts_table(env.name, plan.counts, categories=BACKFILL_CATEGORIES))
    chunks = []
    for kind, frame in (("write", plan.writes), ("create", plan.creates)):
        parts = chunk_frame(frame, slots)
        for index, part in enumerate(parts):
            name = f"{kind}s/chunk-{index:03d}.parquet"
            files.write_parquet(name, part)
            chunks.append(Chunk(env.name, files.base, kind, name, f"{index + 1}/{len(parts)}"))
    return chunks


def write_chunk_step(settings: Settings, chunk: Chunk, *, rate: float, slots: int) -> ChunkOutcome:
    """One chunk of writes or creations, at this chunk's share of the rate."""
    env = settings.environment(chunk.environment)
    limiter = RateLimiter(share_of_rate(rate, slots, OPERATIONS[chunk.kind]))
    hook = CognitoHook(aws_conn_id=env.aws_conn_id)
    with collector_paused():
        outcome = write_chunk(env, hook, chunk, limiter)
    log.info("%s: %s", chunk.label, outcome)
    return outcome


def verify_step(settings: Settings, environment: str) -> Coverage:
    """Re-list the pool: the share of its users that carry a valid id."""
    env = settings.environment(environment)
    coverage = Coverage(environment=environment, **id_coverage(extract_pool(env)))
    log.info(
        "environment %s: %d of %d pool users (%.1f%%) carry a valid %s",
        environment,
        coverage.with_valid_id,
        coverage.pool_users,
        100 * coverage.share,
        env.attribute,
    )
    return coverage
