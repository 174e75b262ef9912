"""What the tasks of cognito_user_sync hand each other through XCom: small typed records.

Each is a frozen dataclass of counts, ids, settings and locations (never an e-mail
address: Airflow logs every return value). They are returned whole, never fanned out
with ``multiple_outputs``, so a run stores one XCom row per task instance. The classes
are registered for XCom deserialisation in every process that imports this module
(which every task does, through the DAG file).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from airflow.sdk.serde import allow_class

from identity_sync.audit import RunMode, TriggerRecord


@dataclass(frozen=True)
class Snapshot:
    """``extract``: both sides saved under ``files``; ``listing``: how complete the pool's listing is known to be."""

    environment: str
    files: str
    pool_users: int
    table_rows: int
    listing: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Planned:
    """``plan``: the plan saved under ``files``, its digest, its counts, and the guards it trips."""

    environment: str
    files: str
    digest: str  # sha256 of the saved plan: what an approval approves, checked again by apply
    counts: dict[str, int]
    metrics: dict[str, int]
    refusals: list[str]  # guards that need a person's approval (empty with allow_mass_change)
    tripped: list[str]  # every guard tripped, lifted or not (for the record)
    reports: dict[str, str]  # name -> location (plan, issues, record, summary)


@dataclass(frozen=True)
class Approved:
    """``approve``: the plan ``digest`` may be applied; ``approval`` says on what grounds, and by whom."""

    environment: str
    files: str
    digest: str
    approval: str  # "not needed", "approved", "lifted by allow_mass_change"
    approved_by: str | None = None


@dataclass(frozen=True)
class Applied:
    """``apply``: what one environment's transaction committed, and where the record of it is."""

    environment: str
    rows_written: int
    rows_updated: int
    rows_inserted: int
    conflicts_at_apply: int
    changes_report: str
    counts: dict[str, int] = field(default_factory=dict)  # the plan's, per category

    def event_extra(self) -> dict[str, Any]:
        """The ``extra`` of the cognito_identity_synced asset event."""
        return {"environment": self.environment, "rows_written": self.rows_written, "counts": dict(self.counts)}


@dataclass(frozen=True)
class RunSummary:
    """``report``: one line per environment, and where the run's files are (shown in the UI's XCom tab)."""

    run_folder: str
    outcomes: dict[str, str]
    rows_written: int


@dataclass(frozen=True)
class RunContext:
    """Who started the run and what it was asked to do, read from the task context (not passed through XCom)."""

    dag_id: str
    run_id: str
    trigger: TriggerRecord
    params: dict[str, Any]  # effective: defaults included

    @classmethod
    def from_context(cls, context: Mapping[str, Any]) -> RunContext:
        return cls(
            dag_id=context["dag"].dag_id,
            run_id=context["run_id"],
            trigger=TriggerRecord.from_context(context),
            params=dict(context["params"]),
        )

    @property
    def mode(self) -> RunMode:
        """An asset event (a restore pipeline) implies after_restore for the environments it names."""
        return RunMode(
            dry_run=bool(self.params.get("dry_run")),
            after_restore=bool(self.params.get("after_restore")) or bool(self.trigger.asset_events),
            allow_mass_change=bool(self.params.get("allow_mass_change")),
        )

    @property
    def reason(self) -> str:
        return self.trigger.reason(self.params.get("reason"))

    @property
    def attended(self) -> bool:
        """Started by a person (by hand or through the REST API): someone can answer an approval."""
        return self.trigger.run_type == "manual"


for _record in (Snapshot, Planned, Approved, Applied, RunSummary):
    allow_class(_record)
