"""runfiles: one folder per run id, the task context, retention, and links to the reports."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from identity_sync.runfiles import RunFiles, enforce_retention, folder_name, report_links_markdown, report_url

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


def test_two_run_ids_never_share_a_folder() -> None:
    """Issue 7 item 7: `restore dev/2026-11-20` and `restore_dev_2026-11-20` mapped to one folder."""
    ids = [
        "restore dev/2026-11-20",
        "restore_dev_2026-11-20",
        "restore:dev/2026-11-20",
        "manual__2026-11-20T10:00:00+00:00",
        "manual__2026-11-20T10_00_00_00_00",
        ".",
        "..",
        "",
        "-rf",
        "a" * 300,
        "a" * 301,
    ]

    folders = [folder_name(run_id) for run_id in ids]

    assert len(set(folders)) == len(ids)
    assert all(f and f not in (".", "..") and "/" not in f and len(f) <= 113 for f in folders)
    assert folder_name("restore_dev_2026-11-20") == "restore_dev_2026-11-20"  # clean names stay readable
    assert folder_name("restore dev/2026-11-20").startswith("restore_dev_2026-11-20~")


def test_folder_names_are_stable() -> None:
    assert folder_name("manual__2026-11-20T10:00:00+00:00") == folder_name("manual__2026-11-20T10:00:00+00:00")


def test_for_run_keeps_clean_dag_and_environment_names(tmp_path: Path) -> None:
    files = RunFiles.for_run(f"file://{tmp_path}/", "cognito_user_sync", "scheduled__2026-11-20", "dev")

    assert files.base == f"file://{tmp_path}/cognito_user_sync/scheduled__2026-11-20/dev"
    assert files.run_folder == f"file://{tmp_path}/cognito_user_sync/scheduled__2026-11-20"


def test_for_context_builds_the_same_files_as_for_run(tmp_path: Path) -> None:
    """Issue 10 item 4: both DAG files rebuilt RunFiles.for_run(context...)."""
    context = {"dag": SimpleNamespace(dag_id="cognito_user_sync"), "run_id": "manual__2026-11-20T10:00:00+00:00"}

    files = RunFiles.for_context("qa", context, snapshot_base=f"file://{tmp_path}")

    assert files == RunFiles.for_run(f"file://{tmp_path}", "cognito_user_sync", context["run_id"], "qa")


def _run(base: Path, dag: str, run_id: str, age_days: float) -> Path:
    files = RunFiles.for_run(f"file://{base}", dag, run_id, "dev")
    files.write_text("pool.parquet", "pii")
    folder = Path(files.path("x").parent.path).parent
    stamp = (NOW - timedelta(days=age_days)).timestamp()
    for path in [*folder.rglob("*"), folder]:
        os.utime(path, (stamp, stamp))
    return folder


def test_retention_deletes_only_old_run_folders_of_that_dag(tmp_path: Path) -> None:
    """Issue 7 item 14: snapshots full of PII were kept for ever."""
    old = _run(tmp_path, "cognito_user_sync", "old run", 31)
    recent = _run(tmp_path, "cognito_user_sync", "recent", 29)
    current = _run(tmp_path, "cognito_user_sync", "current run", 400)  # e.g. a long-waiting approval
    other_dag = _run(tmp_path, "cognito_user_backfill", "old", 400)
    stray = tmp_path / "cognito_user_sync.csv"
    stray.write_text("not a run folder")
    os.utime(stray, (0, 0))

    deleted = enforce_retention(f"file://{tmp_path}", "cognito_user_sync", 30, NOW, current_run_id="current run")

    assert deleted == [f"file://{tmp_path}/cognito_user_sync/{old.name}"]
    assert not old.exists()
    assert recent.exists() and current.exists() and other_dag.exists() and stray.exists()


def test_retention_keeps_a_folder_with_one_recent_file(tmp_path: Path) -> None:
    folder = _run(tmp_path, "dag", "resumed", 90)
    fresh = folder / "dev" / "changes.try-2.csv.gz"
    fresh.write_text("written yesterday")
    os.utime(fresh, ((NOW - timedelta(days=1)).timestamp(),) * 2)

    assert enforce_retention(f"file://{tmp_path}", "dag", 30, NOW) == []
    assert folder.exists()


def test_retention_never_follows_a_link_out_of_the_dag_folder(tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "keep.txt").write_text("not ours")
    os.utime(outside / "keep.txt", (0, 0))
    dag_folder = tmp_path / "base" / "dag"
    dag_folder.mkdir(parents=True)
    (dag_folder / "linked").symlink_to(outside, target_is_directory=True)

    assert enforce_retention(f"file://{tmp_path}/base", "dag", 1, NOW) == []
    assert (outside / "keep.txt").exists()


def test_retention_of_a_dag_without_runs_is_a_no_op(tmp_path: Path) -> None:
    assert enforce_retention(f"file://{tmp_path}", "never_ran", 30, NOW) == []


@pytest.mark.parametrize("days", [0, -1, 1.5, True, "30"])
def test_retention_refuses_a_period_that_is_not_whole_days(tmp_path: Path, days: object) -> None:
    with pytest.raises(ValueError, match="snapshot_retention_days"):
        enforce_retention(f"file://{tmp_path}", "dag", days, NOW)  # type: ignore[arg-type]


def test_report_url_of_s3_is_the_console_page() -> None:
    assert (
        report_url("s3://acme-sync/snapshots/cognito_user_sync/run~ab/dev/plan.csv.gz", region="eu-west-1")
        == "https://s3.console.aws.amazon.com/s3/object/acme-sync?prefix=snapshots/cognito_user_sync/run~ab/dev/"
        "plan.csv.gz&region=eu-west-1"
    )
    assert (
        report_url("s3://acme-sync/snapshots/run/dev/")
        == "https://s3.console.aws.amazon.com/s3/buckets/acme-sync?prefix=snapshots/run/dev/"
    )


def test_report_url_of_a_local_file_is_the_location(tmp_path: Path) -> None:
    assert report_url(f"file://{tmp_path}/plan.csv.gz") == f"file://{tmp_path}/plan.csv.gz"


def test_report_links_markdown() -> None:
    text = report_links_markdown({"plan": "s3://b/k/plan.csv.gz", "issues": "file:///x/issues.csv.gz"})

    assert text.splitlines() == [
        "- plan: [`s3://b/k/plan.csv.gz`](https://s3.console.aws.amazon.com/s3/object/b?prefix=k/plan.csv.gz)",
        "- issues: [`file:///x/issues.csv.gz`](file:///x/issues.csv.gz)",
    ]


def test_for_run_gives_two_run_ids_two_folders(tmp_path: Path) -> None:
    one = RunFiles.for_run(f"file://{tmp_path}", "cognito_user_sync", "restore dev/2026-11-20", "dev")
    other = RunFiles.for_run(f"file://{tmp_path}", "cognito_user_sync", "restore_dev_2026-11-20", "dev")

    assert one.base != other.base


def test_snapshots_are_not_readable_by_others(tmp_path: Path) -> None:
    files = RunFiles.for_run(f"file://{tmp_path}/snapshots", "cognito_user_sync", "run-1", "dev")

    files.write_text("notes.txt", "x")
    files.write_parquet("pool.parquet", pd.DataFrame({"email": ["a@x.io"]}))

    for path in (tmp_path / "snapshots").rglob("*"):
        assert path.stat().st_mode & 0o077 == 0, path
