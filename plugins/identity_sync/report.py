"""Where a run's files live, and what a person reads afterwards: counts and the change report.

Every run leaves, per environment, under ``<snapshot_base>/<dag_id>/<run_id>/<env>/``:
``pool.parquet`` and ``table.parquet`` (the snapshots), ``plan/`` (what apply reads),
``changes.csv`` (InternalUserID, column, old, new, category, reason) and ``issues.csv``
(conflicts, unlinked users, stale rows kept). Logs and XCom get counts and paths only.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

import pandas as pd

from identity_sync.reconcile import CATEGORIES, CHANGE_COLUMNS, INSERT_COLUMNS, ISSUE_COLUMNS, Plan

CHANGE_REPORT_COLUMNS = ["InternalUserID", "UserID", "column", "old", "new", "category", "reason"]


def _safe(part: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", part)


@dataclass(frozen=True)
class RunFiles:
    """The files of one run and environment, on any ObjectStoragePath backend."""

    base: str

    @classmethod
    def for_run(cls, snapshot_base: str, dag_id: str, run_id: str, environment: str) -> RunFiles:
        return cls(f"{snapshot_base.rstrip('/')}/{_safe(dag_id)}/{_safe(run_id)}/{_safe(environment)}")

    def path(self, name: str):  # -> ObjectStoragePath (imported lazily: it loads Airflow's IO stack)
        from airflow.sdk import ObjectStoragePath

        return ObjectStoragePath(f"{self.base}/{name}")

    def write_parquet(self, name: str, frame: pd.DataFrame) -> str:
        target = self.path(name)
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("wb") as handle:
            frame.to_parquet(handle, index=False)
        return str(target)

    def read_parquet(self, name: str) -> pd.DataFrame:
        with self.path(name).open("rb") as handle:
            return pd.read_parquet(handle)

    def write_text(self, name: str, text: str) -> str:
        target = self.path(name)
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("w") as handle:
            handle.write(text)
        return str(target)

    def read_text(self, name: str) -> str:
        with self.path(name).open("r") as handle:
            return handle.read()

    def save_plan(self, plan: Plan) -> None:
        self.write_parquet("plan/changes.parquet", plan.changes)
        self.write_parquet("plan/inserts.parquet", plan.inserts)
        self.write_parquet("plan/issues.parquet", plan.issues)
        self.write_text("plan/counts.json", json.dumps({"counts": plan.counts, "metrics": plan.metrics}))

    def load_plan(self) -> Plan:
        summary = json.loads(self.read_text("plan/counts.json"))
        return Plan(
            changes=self.read_parquet("plan/changes.parquet").reindex(columns=CHANGE_COLUMNS),
            inserts=self.read_parquet("plan/inserts.parquet").reindex(columns=INSERT_COLUMNS),
            issues=self.read_parquet("plan/issues.parquet").reindex(columns=ISSUE_COLUMNS),
            counts=summary["counts"],
            metrics=summary["metrics"],
        )

    def write_reports(self, plan: Plan, reason: str) -> dict[str, str]:
        """changes.csv and issues.csv: the audit trail a person reads after the run."""
        changes = change_report(plan).assign(run_reason=reason)
        return {
            "changes": self.write_text("changes.csv", changes.to_csv(index=False)),
            "issues": self.write_text("issues.csv", plan.issues.to_csv(index=False)),
        }


def change_report(plan: Plan) -> pd.DataFrame:
    """Every value the run writes: old, new and why, per InternalUserID (inserts as one line per column)."""
    updates = plan.changes[CHANGE_REPORT_COLUMNS]
    inserted = plan.inserts.melt(
        id_vars=["InternalUserID"],
        value_vars=["CognitoID", "Email", "FirstName", "LastName"],
        var_name="column",
        value_name="new",
    ).assign(UserID=pd.NA, old=pd.NA, category="insert", reason="InternalUserID not in the table")
    parts = [frame for frame in (updates, inserted[CHANGE_REPORT_COLUMNS]) if len(frame)]
    if not parts:
        return pd.DataFrame(columns=CHANGE_REPORT_COLUMNS)
    return pd.concat(parts, ignore_index=True).sort_values(["InternalUserID", "column"], kind="stable")


def counts_table(
    environment: str,
    counts: dict[str, int],
    extra: dict[str, int] | None = None,
    categories: tuple[str, ...] = CATEGORIES,
) -> str:
    """A fixed-width table for the task log: categories first, then the other figures."""
    rows = [(category, counts.get(category, 0)) for category in categories]
    rows += list((extra or {}).items())
    title = f"environment {environment}"
    width = max(len(title), *(len(name) for name, _ in rows))
    lines = [f"{title:<{width}}  {'count':>9}", "-" * (width + 11)]
    lines += [f"{name:<{width}}  {value:>9,}" for name, value in rows]
    return "\n".join(lines)
