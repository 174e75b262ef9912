"""The steps of cognito_user_sync, one function per task, runnable without a scheduler.

Each step reads what the previous one wrote under the run's folder and returns a small
typed record (``identity_sync.sync_records``) of counts, ids and locations, because
Airflow logs and stores every return value. The run record (``run.json``,
``summary.md``; ``identity_sync.audit``) is written by ``plan`` and brought up to date
by ``approve`` and ``apply``; ``report`` reads it back for every environment.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import asdict, replace
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from identity_sync.audit import (
    ApplyRecord,
    RunAudit,
    load_run_record,
    record_apply,
    write_run_record,
)
from identity_sync.config import ConfigError, Settings
from identity_sync.extract import extract_pool
from identity_sync.guards import RefusedError, guard_refusals, tripped_guards
from identity_sync.identity import ColumnLimit
from identity_sync.matching import POOL_INPUT_COLUMNS
from identity_sync.pool_checks import check_pool
from identity_sync.reconcile import TABLE_COLUMNS, Plan, plan_changes
from identity_sync.report import counts_table, write_changes_report, write_frame_report, write_plan_reports
from identity_sync.runfiles import RunFiles, enforce_retention
from identity_sync.sync_records import Applied, Approved, Planned, RunContext, RunSummary, Snapshot
from identity_sync.table import ApplyResult, UsersTable

log = logging.getLogger(__name__)

PLAN_FILES = ("plan/changes.parquet", "plan/inserts.parquet", "plan/counts.json")
COLUMN_LIMITS_FILE = "table_columns.json"  # what the table's text columns hold, read with the snapshot
DIGEST_CHUNK = 1 << 20


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


def extract_step(settings: Settings, environment: str, files: RunFiles) -> Snapshot:
    """Snapshot both sides: the pool's users and the table's keys (refusing first if the pool's attribute is unsafe)."""
    env = settings.environment(environment)
    check_pool(env)
    pool = extract_pool(env)
    with UsersTable.open(env) as table:
        rows = table.read()
        limits = table.column_limits()
    files.write_parquet("pool.parquet", pool)
    files.write_parquet("table.parquet", rows)
    files.write_text(COLUMN_LIMITS_FILE, json.dumps({name: asdict(limit) for name, limit in limits.items()}))
    log.info("environment %s: extracted %d pool users and %d table rows", environment, len(pool), len(rows))
    return Snapshot(
        environment=environment,
        files=files.base,
        pool_users=len(pool),
        table_rows=len(rows),
        listing=dict(pool.attrs.get("listing", {})),  # how complete the listing is known to be, for the audit
    )


def plan_digest(files: RunFiles) -> str:
    """SHA-256 over the saved plan's files: what a person approves is exactly what apply applies."""
    digest = hashlib.sha256()
    for name in PLAN_FILES:
        digest.update(name.encode())
        with files.path(name).open("rb") as handle:
            while chunk := handle.read(DIGEST_CHUNK):
                digest.update(chunk)
    return digest.hexdigest()


def _return_freed_memory() -> None:
    """Arrow allocates from the C library's malloc in this task, unless ARROW_DEFAULT_MEMORY_POOL chooses.

    Arrow's default pool (mimalloc) keeps the pages the Parquet decoder and the plan's
    hash passes free for reuse; malloc hands large blocks back at once. Same CPU time;
    at 1M post-restore users the plan's peak is 60-90 MB lower. Buffers already made keep
    the pool they came from.
    """
    if "ARROW_DEFAULT_MEMORY_POOL" not in os.environ:
        pa.set_memory_pool(pa.system_memory_pool())


def plan_step(settings: Settings, snapshot: Snapshot, run: RunContext) -> Planned:
    """Diff the snapshots; save the plan, its report (``plan.csv.gz``: not a record of writes) and the run record."""
    env, files, mode = settings.environment(snapshot.environment), RunFiles(snapshot.files), run.mode
    _return_freed_memory()
    limits = {name: ColumnLimit(**limit) for name, limit in json.loads(files.read_text(COLUMN_LIMITS_FILE)).items()}
    pool = files.read_parquet("pool.parquet", columns=POOL_INPUT_COLUMNS)
    table = files.read_parquet("table.parquet", columns=TABLE_COLUMNS)
    plan = plan_changes(pool, table, env.stale_cognito_ids, column_limits=limits)
    del pool, table
    files.save_plan(plan, mode=mode)
    reports = write_plan_reports(files, plan, run.reason)
    tripped = tripped_guards(plan, env, after_restore=mode.after_restore)
    refusals = [] if mode.allow_mass_change else tripped  # what guard_refusals says, without judging twice
    audit = RunAudit(
        dag_id=run.dag_id,
        run_id=run.run_id,
        environment=env.name,
        trigger=run.trigger,
        params=run.params,
        reason=run.reason,
        mode=mode,
        counts=plan.counts,
        metrics=plan.metrics,
        listing=snapshot.listing,
        refusals=tuple(tripped),
        reports=reports,
        outcome="dry run: plan only, nothing written" if mode.dry_run else "planned, nothing written yet",
    )
    reports |= write_run_record(files, audit)
    log.info("plan:\n%s", counts_table(env.name, plan.counts, plan.metrics))
    for refusal in tripped:
        log.warning("guard%s: %s", " (lifted by allow_mass_change)" if not refusals else "", refusal)
    log.info("plan report (what the run would write, not a record of writes): %s", reports["plan"])
    return Planned(
        environment=env.name,
        files=files.base,
        digest=plan_digest(files),
        counts=plan.counts,
        metrics=plan.metrics,
        refusals=refusals,
        tripped=tripped,
        reports=reports,
    )


def committed_plan(plan: Plan, result: ApplyResult) -> Plan:
    """The part of ``plan`` the transaction committed: without the rows the apply found in conflict."""
    if not len(result.conflicts):
        return plan
    held = set(result.conflicts["InternalUserID"].dropna())
    return replace(
        plan,
        changes=plan.changes[~plan.changes["InternalUserID"].isin(held)],
        inserts=plan.inserts[~plan.inserts["InternalUserID"].isin(held)],
    )


def apply_step(settings: Settings, approved: Approved, run: RunContext, *, try_number: int) -> Applied:
    """Apply exactly the plan that was approved (or needed no approval), in one transaction; then record it."""
    env, files, mode = settings.environment(approved.environment), RunFiles(approved.files), run.mode
    if plan_digest(files) != approved.digest:
        raise RefusedError(
            f"environment {env.name!r}: the saved plan is not the one {approved.approval!r} was given for "
            f"(digest {approved.digest[:12]}). Nothing was written."
        )
    plan = files.load_plan(issues=False)  # the apply writes changes and inserts; the issues stay in the report
    refusals = guard_refusals(plan, env, after_restore=mode.after_restore, allow_mass_change=mode.allow_mass_change)
    if refusals and approved.approval != "approved":
        raise RefusedError("; ".join(refusals) + ". Nothing was written.")
    with UsersTable.open(env) as table:
        result = table.apply(plan)
    conflict_count = len(result.conflicts)
    if result.already_applied:
        log.warning("environment %s: the table was already at this plan's target (an earlier try committed)", env.name)
    written = result.rows_updated + result.rows_inserted
    changes = write_changes_report(files, committed_plan(plan, result), try_number=try_number, reason=run.reason)
    if conflict_count:  # rows the apply itself found unwritable: reported like the plan's conflicts, never written
        name = f"conflicts_at_apply.try-{try_number}.csv.gz"
        log.warning("environment %s: %d conflicts found at apply: %s", env.name, conflict_count, name)
        write_frame_report(files, name, result.conflicts)
    record_apply(
        files,
        ApplyRecord(
            try_number=try_number,
            finished_at=datetime.now(UTC).isoformat(),
            applied=result.as_dict(),
            rows_written=written,
            conflicts_at_apply=conflict_count,
            changes_report=changes,
        ),
    )
    log.info(
        "environment %s: %d rows written in one transaction (%d updated: %d CognitoIDs, %d e-mails; %d inserted); "
        "%d conflicts found at apply; record of writes: %s",
        env.name,
        written,
        result.rows_updated,
        result.cognito_ids_set,
        result.emails_set,
        result.rows_inserted,
        conflict_count,
        changes,
    )
    return Applied(env.name, written, result.rows_updated, result.rows_inserted, conflict_count, changes, plan.counts)


def report_step(settings: Settings, names: Iterable[str], run: RunContext, now: datetime) -> RunSummary:
    """The run's summary in the log (every environment's record), then retention of old run folders."""
    records: dict[str, RunAudit | None] = {}
    folder = ""
    for name in names:
        files = RunFiles.for_run(settings.snapshot_base, run.dag_id, run.run_id, name)
        folder = files.run_folder
        records[name] = load_run_record(files) if files.exists("run.json") else None
    log.info("run %s, triggered %s:\n%s", run.run_id, _trigger_line(run), summary_text(records))
    deleted = enforce_retention(
        settings.snapshot_base, run.dag_id, settings.snapshot_retention_days, now, current_run_id=run.run_id
    )
    if deleted:
        log.info("retention: deleted %d run folders older than %d days", len(deleted), settings.snapshot_retention_days)
    return RunSummary(
        run_folder=folder,
        outcomes={
            name: audit.outcome if audit else "no plan (an earlier step failed)" for name, audit in records.items()
        },
        rows_written=sum(audit.rows_written for audit in records.values() if audit),
    )


def _trigger_line(run: RunContext) -> str:
    trigger = run.trigger
    events = "; ".join(f"{e.asset} {e.extra}" for e in trigger.asset_events)
    return f"{trigger.run_type} by {trigger.user or 'no user'}" + (f", asset events: {events}" if events else "")


def summary_text(records: Mapping[str, RunAudit | None]) -> str:
    """Every environment side by side for the log: outcome, mode, counts, rows written, where the record is."""
    blocks = []
    for name, audit in records.items():
        if audit is None:
            blocks.append(f"environment {name}: no plan (an earlier step failed; see its log)")
            continue
        mode = audit.mode
        head = [
            f"environment {name}: {audit.outcome}",
            f"  mode: dry_run={mode.dry_run} after_restore={mode.after_restore} "
            f"allow_mass_change={mode.allow_mass_change} approval={mode.approval}"
            + (f" by {mode.approved_by}" if mode.approved_by else ""),
            f"  reason: {audit.reason or '(none given)'}",
            *(f"  {key}: {location}" for key, location in audit.reports.items()),
        ]
        extra = {**audit.metrics, "rows_written": audit.rows_written}
        blocks.append("\n".join(head) + "\n" + counts_table(name, audit.counts, extra))
    return "\n\n".join(blocks)
