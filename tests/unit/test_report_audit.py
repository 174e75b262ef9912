"""audit: the run record (run.json + summary.md): trigger, effective params, mode, counts, writes, reports."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import pytest

from identity_sync.audit import (
    ApplyRecord,
    AssetEventRecord,
    RunAudit,
    RunMode,
    TriggerRecord,
    load_run_record,
    markdown_text,
    record_apply,
    record_outcome,
    summary_markdown,
    write_run_record,
)
from identity_sync.reconcile import CATEGORIES
from identity_sync.runfiles import RunFiles

RUN_ID = "asset_triggered__2026-11-20T10:00:00+00:00"


def _asset_context() -> dict:
    event = SimpleNamespace(
        asset=SimpleNamespace(name="users_db_restored", uri="users_db_restored"),
        extra={"environment": "dev", "reason": "restore from prod 2026-11-20"},
        source_dag_id="restore_dev",
        source_run_id="manual__1",
        source_task_id="restore",
        source_map_index=-1,
        timestamp=datetime(2026, 11, 20, 10, tzinfo=UTC),
    )
    dag_run = SimpleNamespace(
        run_type=SimpleNamespace(value="asset_triggered"), triggering_user_name=None, conf={}, run_id=RUN_ID
    )
    return {"dag_run": dag_run, "triggering_asset_events": {"users_db_restored": [event]}}


def _audit(trigger: TriggerRecord, **changes) -> RunAudit:
    values = dict(
        dag_id="cognito_user_sync",
        run_id=RUN_ID,
        environment="dev",
        trigger=trigger,
        params={"environments": ["dev", "qa"], "dry_run": False, "after_restore": False, "reason": ""},
        reason=trigger.reason(""),
        mode=RunMode(dry_run=False, after_restore=True),
        counts={"relink": 46, "unchanged": 3},
        metrics={"pool_users": 49, "table_rows": 49},
        listing={"complete": True, "listed": 49, "estimated": 49},
        reports={"plan": "file:///s/plan.csv.gz"},
    )
    return RunAudit(**values | changes)


def test_an_asset_triggered_run_records_the_event_and_takes_its_reason_from_the_extra() -> None:
    """Issue 8: asset-triggered runs had no user, empty conf and an empty run_reason."""
    trigger = TriggerRecord.from_context(_asset_context())

    assert trigger.run_type == "asset_triggered"
    assert trigger.user is None
    assert trigger.asset_events == (
        AssetEventRecord(
            asset="users_db_restored",
            extra={"environment": "dev", "reason": "restore from prod 2026-11-20"},
            source_dag_id="restore_dev",
            source_run_id="manual__1",
            source_task_id="restore",
            source_map_index=-1,
            timestamp="2026-11-20T10:00:00+00:00",
        ),
    )
    assert trigger.reason("") == "restore from prod 2026-11-20"
    assert trigger.reason("typed by a person") == "typed by a person"


def test_a_manual_run_records_its_user_and_conf() -> None:
    dag_run = SimpleNamespace(run_type="manual", triggering_user_name="alice", conf={"dry_run": True})

    trigger = TriggerRecord.from_context({"dag_run": dag_run})

    assert trigger == TriggerRecord(run_type="manual", user="alice", conf={"dry_run": True})
    assert trigger.reason(None) == ""


def test_the_run_record_round_trips_and_accumulates_every_apply_try(tmp_path: Path) -> None:
    files = RunFiles.for_run(f"file://{tmp_path}", "cognito_user_sync", RUN_ID, "dev")
    audit = _audit(TriggerRecord.from_context(_asset_context()))

    paths = write_run_record(files, audit)
    assert load_run_record(files) == audit
    assert paths == {"record": f"{files.base}/run.json", "summary": f"{files.base}/summary.md"}

    applied = {"rows_updated": 46, "rows_inserted": 0, "cognito_ids_set": 46, "emails_set": 0}
    first = ApplyRecord(1, "2026-11-20T10:05:00+00:00", applied, 46, 0, f"{files.base}/changes.try-1.csv.gz")
    record_apply(files, first)
    nothing = dict.fromkeys(applied, 0)
    record_apply(
        files, ApplyRecord(2, "2026-11-20T10:09:00+00:00", nothing, 0, 0, f"{files.base}/changes.try-2.csv.gz")
    )

    record = load_run_record(files)
    assert [a.try_number for a in record.applies] == [1, 2]
    assert record.rows_written == 46  # the retry that wrote nothing did not erase the first try's writes
    assert record.outcome == "applied: 46 rows written"
    assert set(record.reports) == {"plan", "changes (try 1)", "changes (try 2)"}
    assert '"rows_written": 46' in files.read_text("run.json")


def test_a_rejected_run_says_so_and_who_rejected(tmp_path: Path) -> None:
    files = RunFiles(f"file://{tmp_path}/run/dev")
    write_run_record(files, _audit(TriggerRecord(run_type="scheduled")))

    rejected = RunMode(dry_run=False, after_restore=False, approval="rejected", approved_by="bob")
    record_outcome(files, "rejected: nothing written", rejected)

    record = load_run_record(files)
    assert record.outcome == "rejected: nothing written"
    assert record.mode.approved_by == "bob"
    assert "rejected by bob" in files.read_text("summary.md")


def test_summary_lists_every_category_mode_trigger_and_reports() -> None:
    text = summary_markdown(_audit(TriggerRecord.from_context(_asset_context()), refusals=("mass change",)))

    for category in CATEGORIES:
        assert f"| {category} |" in text
    assert "| relink | 46 |" in text
    assert "after restore True" in text
    assert "- asset event: `users_db_restored` from `restore_dev/manual__1/restore`" in text
    assert "- reason: `restore from prod 2026-11-20`" in text
    assert "- triggered: `asset_triggered`, by no user" in text
    assert "- plan: [`file:///s/plan.csv.gz`](file:///s/plan.csv.gz)" in text
    assert "Guards:" in text


@pytest.mark.parametrize(
    "hostile",
    ["[click](http://evil.example)", "<img src=x onerror=alert(1)>", "line\nbreak\u202e", "`code` *bold* # h"],
)
def test_free_text_cannot_inject_markdown(hostile: str) -> None:
    """A user name, reason or event extra is shown as text, never as a link, HTML or a new line."""
    text = markdown_text(hostile)

    assert "\n" not in text and "\u202e" not in text
    assert text.startswith("`") and text.endswith("`") and text.count("`") == 2  # one code span: shown as typed
