"""The backfill's last word per environment: what was written, what was not and why, in the run's folder.

``backfill_changes.csv.gz`` lists only what was written (each chunk's users up to where it
got, less the users it skipped), never the plan: the plan is ``backfill_plan.csv.gz``.
``backfill_write_issues.csv.gz`` lists the users a chunk skipped (row changed, user gone,
collision). ``backfill_summary.json`` holds the mode, the approval, the counts and the
paths. The log gets counts only.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import pandas as pd

from identity_sync.backfill import BACKFILL_ISSUE_COLUMNS
from identity_sync.backfill_records import Chunk, ChunkOutcome, Coverage, Inspection
from identity_sync.backfill_steps import ACTIONS, REPORT_COLUMNS
from identity_sync.backfill_writes import ChunkProgress
from identity_sync.report import RunFiles, write_frame_report

log = logging.getLogger(__name__)


def _written(chunk: Chunk) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The users a chunk wrote or created, and those it skipped (from its file and its checkpoint)."""
    files = RunFiles(chunk.files)
    progress = ChunkProgress.load(files, chunk.progress_name)
    reached = files.read_parquet(chunk.name).iloc[: progress.next_row]
    skipped = pd.DataFrame(progress.issues, columns=BACKFILL_ISSUE_COLUMNS)
    written = reached[~reached["UserID"].isin(skipped["UserID"])].assign(action=ACTIONS[chunk.kind])
    return written.reindex(columns=REPORT_COLUMNS), skipped


def report_environment(
    inspection: Inspection,
    chunks: Sequence[Chunk],
    outcomes: Sequence[ChunkOutcome],
    coverage: Coverage | None,
    mode: dict[str, Any],
) -> dict[str, Any]:
    """Write the environment's record of the run and return its summary (counts and paths)."""
    files = RunFiles(inspection.files)
    mine = [chunk for chunk in chunks if chunk.environment == inspection.environment]
    parts = [_written(chunk) for chunk in mine]
    written = pd.concat([w for w, _ in parts], ignore_index=True) if parts else pd.DataFrame(columns=REPORT_COLUMNS)
    skipped = [s for _, s in parts if len(s)]
    summary = {
        **mode,
        "environment": inspection.environment,
        "planned": inspection.counts,
        "billable_mau_writes": inspection.billable_mau_writes,
        "ids_to_assign": inspection.ids_to_assign,
        "pending_migrations": inspection.pending_migrations,
        "attribute_to_add": inspection.attribute_to_add,
        "written": {action: int((written["action"] == action).sum()) for action in ACTIONS.values()},
        "chunks": [asdict(o) for o in outcomes if o.environment == inspection.environment],
        "coverage": asdict(coverage) if coverage else None,
        "reports": dict(inspection.reports),
    }
    if mine:
        summary["reports"]["changes"] = write_frame_report(files, "backfill_changes.csv.gz", written)
    if skipped:
        frame = pd.concat(skipped, ignore_index=True)
        summary["reports"]["write_issues"] = write_frame_report(files, "backfill_write_issues.csv.gz", frame)
    files.write_text("backfill_summary.json", json.dumps(summary, default=str, indent=1))
    log.info(
        "environment %s: %s; written %s; reports %s",
        inspection.environment,
        mode["outcome"],
        summary["written"],
        summary["reports"],
    )
    return summary
