"""The run record: who or what started a run, with which settings, and what it planned and wrote.

Per environment the run folder holds ``run.json`` (the ``RunAudit`` below, for tools) and
``summary.md`` (the same for people, small enough for a run note or an approval's body).
The plan step writes the record; every apply try appends an ``ApplyRecord`` to it
(``record_apply``), so a retry adds to the history instead of replacing it. The record
holds ids, counts, settings and locations; the only free text is what the person or the
asset event supplied (user name, reason, event extra), and it is escaped for Markdown.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from typing import Any

from identity_sync.reconcile import CATEGORIES
from identity_sync.report import CONTROL_CHARACTERS
from identity_sync.runfiles import RunFiles, report_links_markdown

RUN_RECORD = "run.json"
RUN_SUMMARY = "summary.md"
REASON_KEY = "reason"  # the asset event's extra key that carries the reason of an asset-triggered run


@dataclass(frozen=True)
class AssetEventRecord:
    """One triggering asset event: which asset, its extra, and the task that emitted it."""

    asset: str
    extra: dict[str, Any] = field(default_factory=dict)
    source_dag_id: str | None = None
    source_run_id: str | None = None
    source_task_id: str | None = None
    source_map_index: int | None = None
    timestamp: str | None = None


@dataclass(frozen=True)
class TriggerRecord:
    """Who or what started the run: ``run_type`` is Airflow's (manual, scheduled, asset_triggered, ...)."""

    run_type: str
    user: str | None = None
    conf: dict[str, Any] = field(default_factory=dict)  # what the trigger passed, before defaults
    asset_events: tuple[AssetEventRecord, ...] = ()

    @classmethod
    def from_context(cls, context: Mapping[str, Any]) -> TriggerRecord:
        """From an Airflow 3 task context (``dag_run`` and ``triggering_asset_events``)."""
        dag_run = context["dag_run"]
        events = context.get("triggering_asset_events") or {}
        return cls(
            run_type=str(getattr(dag_run.run_type, "value", dag_run.run_type)),
            user=getattr(dag_run, "triggering_user_name", None),
            conf=dict(getattr(dag_run, "conf", None) or {}),
            asset_events=tuple(_event_record(e) for group in events.values() for e in group),
        )

    def reason(self, given: str | None) -> str:
        """The run's reason: the one given, else the first asset event's ``extra["reason"]``, else ''."""
        if given:
            return given
        return next((str(e.extra[REASON_KEY]) for e in self.asset_events if e.extra.get(REASON_KEY)), "")


def _event_record(event: Any) -> AssetEventRecord:
    asset = getattr(event, "asset", None)
    stamp = getattr(event, "timestamp", None)
    return AssetEventRecord(
        asset=str(getattr(asset, "name", None) or getattr(asset, "uri", None) or asset),
        extra=dict(getattr(event, "extra", None) or {}),
        source_dag_id=getattr(event, "source_dag_id", None),
        source_run_id=getattr(event, "source_run_id", None),
        source_task_id=getattr(event, "source_task_id", None),
        source_map_index=getattr(event, "source_map_index", None),
        timestamp=stamp.isoformat() if isinstance(stamp, datetime) else stamp,
    )


@dataclass(frozen=True)
class RunMode:
    """How the run was allowed to write. ``approval``: 'not needed', 'approved', 'rejected' or 'timed out'."""

    dry_run: bool
    after_restore: bool
    allow_mass_change: bool = False
    approval: str = "not needed"
    approved_by: str | None = None


@dataclass(frozen=True)
class ApplyRecord:
    """What one apply try committed. ``rows_written`` = rows updated + rows inserted."""

    try_number: int
    finished_at: str
    applied: dict[str, int]
    rows_written: int
    conflicts_at_apply: int = 0
    changes_report: str | None = None


@dataclass(frozen=True)
class RunAudit:
    """The run record of one environment; ``outcome`` says in words what happened to the table."""

    dag_id: str
    run_id: str
    environment: str
    trigger: TriggerRecord
    params: dict[str, Any]  # effective params, defaults included
    reason: str
    mode: RunMode
    counts: dict[str, int]
    metrics: dict[str, int] = field(default_factory=dict)
    listing: dict[str, Any] = field(default_factory=dict)  # e.g. {"complete": true, "listed": n, "estimated": n}
    refusals: tuple[str, ...] = ()
    reports: dict[str, str] = field(default_factory=dict)
    outcome: str = "planned, nothing written yet"
    applies: tuple[ApplyRecord, ...] = ()

    @property
    def rows_written(self) -> int:
        return sum(a.rows_written for a in self.applies)

    def to_json(self) -> str:
        return json.dumps(asdict(self) | {"rows_written": self.rows_written}, indent=2, sort_keys=True, default=str)

    @classmethod
    def from_json(cls, text: str) -> RunAudit:
        raw = json.loads(text)
        raw.pop("rows_written", None)
        trigger = raw.pop("trigger")
        trigger["asset_events"] = tuple(AssetEventRecord(**e) for e in trigger["asset_events"])
        return cls(
            **raw
            | {
                "trigger": TriggerRecord(**trigger),
                "mode": RunMode(**raw["mode"]),
                "refusals": tuple(raw["refusals"]),
                "applies": tuple(ApplyRecord(**a) for a in raw["applies"]),
            }
        )


def write_run_record(files: RunFiles, audit: RunAudit) -> dict[str, str]:
    """Write (replace) ``run.json`` and ``summary.md``; returns their locations."""
    return {
        "record": files.write_text(RUN_RECORD, audit.to_json()),
        "summary": files.write_text(RUN_SUMMARY, summary_markdown(audit)),
    }


def load_run_record(files: RunFiles) -> RunAudit:
    return RunAudit.from_json(files.read_text(RUN_RECORD))


def record_apply(files: RunFiles, applied: ApplyRecord, outcome: str | None = None) -> RunAudit:
    """Append one apply try to the run record (after its commit) and rewrite both files."""
    audit = load_run_record(files)
    reports = dict(audit.reports)
    if applied.changes_report:
        reports[f"changes (try {applied.try_number})"] = applied.changes_report
    written = audit.rows_written + applied.rows_written
    updated = replace(
        audit,
        applies=(*audit.applies, applied),
        reports=reports,
        outcome=outcome or f"applied: {written:,} rows written",
    )
    write_run_record(files, updated)
    return updated


def record_outcome(files: RunFiles, outcome: str, mode: RunMode | None = None) -> RunAudit:
    """Set the outcome (and the mode, e.g. after an approval or rejection) of the run record."""
    audit = load_run_record(files)
    updated = replace(audit, outcome=outcome, mode=mode or audit.mode)
    write_run_record(files, updated)
    return updated


def markdown_text(text: Any) -> str:
    """Text from outside (ids, a user name, a reason, an event's extra) as one inline code span: shown as
    typed, never as a link, HTML, heading or a new line (backticks become quotes, control characters spaces)."""
    return "`" + CONTROL_CHARACTERS.sub(" ", str(text)).replace("`", "'") + "`"


def _rows(pairs: Iterable[tuple[str, Any]]) -> list[str]:
    return [f"| {name} | {value:,} |" for name, value in pairs]  # our own category and metric names


def _trigger_lines(trigger: TriggerRecord) -> list[str]:
    user = markdown_text(trigger.user) if trigger.user else "no user"
    lines = [f"- triggered: {markdown_text(trigger.run_type)}, by {user}"]
    for event in trigger.asset_events:
        source = "/".join(str(p) for p in (event.source_dag_id, event.source_run_id, event.source_task_id) if p)
        lines.append(
            f"- asset event: {markdown_text(event.asset)} from {markdown_text(source) if source else 'an API call'}, "
            f"extra {markdown_text(json.dumps(event.extra, sort_keys=True, default=str))}"
        )
    return lines


def summary_markdown(audit: RunAudit) -> str:
    """The run record for people: trigger, mode, counts, writes, refusals and where the reports are."""
    mode = audit.mode
    approval = mode.approval + (f" by {mode.approved_by}" if mode.approved_by else "")
    lines = [
        f"### {audit.dag_id} · {audit.environment}",  # names validated by Airflow and the config
        "",
        f"**{audit.outcome}**",  # written by this project's code
        "",
        f"- run: {markdown_text(audit.run_id)}",
        *_trigger_lines(audit.trigger),
        f"- reason: {markdown_text(audit.reason) if audit.reason else 'none given'}",
        f"- mode: dry run {mode.dry_run}, after restore {mode.after_restore}, "
        f"allow mass change {mode.allow_mass_change}, approval {markdown_text(approval)}",
        f"- params: {markdown_text(json.dumps(audit.params, sort_keys=True, default=str))}",
        f"- listing: {markdown_text(json.dumps(audit.listing, sort_keys=True, default=str))}",
        f"- rows written: {audit.rows_written:,} in {len(audit.applies)} apply tr(ies); "
        f"conflicts found at apply: {sum(a.conflicts_at_apply for a in audit.applies):,}",
        "",
        "| category | count |",
        "|---|---:|",
        *_rows((c, audit.counts.get(c, 0)) for c in CATEGORIES),
        *_rows(audit.metrics.items()),
    ]
    if audit.refusals:
        lines += ["", "Guards:", *(f"- {r}" for r in audit.refusals)]  # the guards' own words
    if audit.reports:
        lines += ["", "Reports:", report_links_markdown(audit.reports)]
    return "\n".join(lines) + "\n"
