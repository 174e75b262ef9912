"""report: the plan and change reports, the counts table, and the plan files on an ObjectStoragePath."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from identity_sync.audit import RunMode
from identity_sync.reconcile import CATEGORIES, SYNC_REASON, Plan, plan_changes
from identity_sync.report import CHANGE_REPORT_COLUMNS, RunFiles, change_report, counts_table

U1, U2, U3, U4 = (f"{n:08x}-0000-4000-8000-{n:012x}" for n in range(1, 5))


def _pool(users: list[tuple[str, str | None, str | None]]) -> pd.DataFrame:
    frame = pd.DataFrame.from_records(users, columns=["sub", "email", "internal_user_id"])
    frame["username"] = "user-" + frame["sub"]
    frame["status"] = "CONFIRMED"
    frame["enabled"] = True
    frame["email_verified"] = True  # matching.POOL_COLUMNS: only verified users link by e-mail
    frame["given_name"] = "Ada"
    frame["family_name"] = "Lovelace"
    frame["email_norm"] = frame["email"].str.strip().str.lower()
    for column in ["sub", "username", "email", "email_norm", "internal_user_id", "status", "given_name", "family_name"]:
        frame[column] = frame[column].astype("string")
    return frame


def _table(rows: list[tuple[int, str | None, str | None, str | None]]) -> pd.DataFrame:
    frame = pd.DataFrame.from_records(rows, columns=["UserID", "InternalUserID", "CognitoID", "Email"])
    return frame.astype({"UserID": "int64", "InternalUserID": "string", "CognitoID": "string", "Email": "string"})


@pytest.fixture
def plan() -> Plan:
    """A relink with an e-mail update, a fallback, an insert, a stale row cleared and a conflict."""
    return plan_changes(
        _pool(
            [
                ("sub-1", "new@x.io", U1),
                ("sub-2", "fallback@x.io", None),
                ("sub-3", "inserted@x.io", U3),
                ("sub-9", "bad@x.io", "not-a-uuid"),
            ]
        ),
        _table(
            [
                (1, U1, "prod-1", "old@x.io"),
                (2, None, "prod-2", "Fallback@x.io"),
                (4, U4, "prod-4", "gone@x.io"),
            ]
        ),
        stale_policy="clear",
    )


def _none(value: Any) -> Any:
    return None if value is None or value is pd.NA or (isinstance(value, float) and pd.isna(value)) else value


def _lines(frame: pd.DataFrame) -> list[tuple[Any, ...]]:
    return sorted(
        (tuple(_none(v) for v in row) for row in frame[CHANGE_REPORT_COLUMNS].itertuples(index=False, name=None)),
        key=repr,
    )


def _records(frame: pd.DataFrame) -> list[tuple[Any, ...]]:
    return [tuple(_none(v) for v in row) for row in frame.itertuples(index=False, name=None)]


def test_change_report_has_one_line_per_changed_value(plan: Plan) -> None:
    report = change_report(plan)

    assert list(report.columns) == CHANGE_REPORT_COLUMNS
    insert = SYNC_REASON["insert"]
    assert _lines(report) == sorted(
        [
            (U1, 1, "CognitoID", "prod-1", "sub-1", "relink", SYNC_REASON["relink"]),
            (U1, 1, "Email", "old@x.io", "new@x.io", "email_update", SYNC_REASON["email_update"]),
            (None, 2, "CognitoID", "prod-2", "sub-2", "email_fallback", SYNC_REASON["email_fallback"]),
            (U4, 4, "CognitoID", "prod-4", None, "stale", SYNC_REASON["stale_clear"]),
            (U3, None, "CognitoID", None, "sub-3", "insert", insert),
            (U3, None, "Email", None, "inserted@x.io", "insert", insert),
            (U3, None, "FirstName", None, "Ada", "insert", insert),
            (U3, None, "LastName", None, "Lovelace", "insert", insert),
        ],
        key=repr,
    )
    # Nothing in conflict is reported as a change.
    assert "sub-9" not in set(plan.changes["sub"].dropna())


def test_change_report_is_sorted_by_internal_user_id_and_column(plan: Plan) -> None:
    report = change_report(plan)
    keys = list(zip(report["InternalUserID"].fillna("~"), report["column"], strict=True))

    assert keys == sorted(keys)


def test_change_report_of_an_empty_plan_has_the_columns_only() -> None:
    empty = plan_changes(_pool([]), _table([]))

    report = change_report(empty)

    assert report.empty
    assert list(report.columns) == CHANGE_REPORT_COLUMNS


def test_change_report_of_inserts_only() -> None:
    only_inserts = plan_changes(_pool([("sub-1", "a@x.io", U1)]), _table([]))

    assert _lines(change_report(only_inserts)) == [
        (U1, None, "CognitoID", None, "sub-1", "insert", SYNC_REASON["insert"]),
        (U1, None, "Email", None, "a@x.io", "insert", SYNC_REASON["insert"]),
        (U1, None, "FirstName", None, "Ada", "insert", SYNC_REASON["insert"]),
        (U1, None, "LastName", None, "Lovelace", "insert", SYNC_REASON["insert"]),
    ]


def test_counts_table_lists_every_category(plan: Plan) -> None:
    text = counts_table("dev", plan.counts, {"pool_users": 1234567})
    lines = text.splitlines()

    assert lines[0].startswith("environment dev")
    assert lines[0].rstrip().endswith("count")
    assert set(lines[1]) == {"-"}
    body = [line.split() for line in lines[2:]]
    assert [name for name, _ in body] == [*CATEGORIES, "pool_users"]
    assert dict(body) == {
        "relink": "1",
        "email_update": "1",
        "email_fallback": "1",
        "insert": "1",
        "stale": "1",
        "unlinked": "0",
        "conflict": "1",
        "unchanged": "0",
        "pool_users": "1,234,567",
    }
    assert len({len(line) for line in lines[1:]}) == 1  # fixed width below the header


def test_counts_table_fills_missing_categories_with_zero() -> None:
    body = [line.split() for line in counts_table("qa", {"relink": 7}).splitlines()[2:]]

    assert dict(body) == {**dict.fromkeys(CATEGORIES, "0"), "relink": "7"}


def test_save_and_load_plan_round_trip(tmp_path: Path, plan: Plan) -> None:
    files = RunFiles.for_run(f"file://{tmp_path}", "cognito_user_sync", "scheduled__2024-05-01T00:00:00+00:00", "dev")

    files.save_plan(plan, RunMode(dry_run=True, after_restore=True))
    loaded = files.load_plan()

    run_dir = Path(files.path("plan").path)
    assert sorted(p.name for p in run_dir.iterdir()) == [
        "changes.parquet",
        "counts.json",
        "inserts.parquet",
        "issues.parquet",
    ]
    pd.testing.assert_frame_equal(loaded.changes, plan.changes)
    pd.testing.assert_frame_equal(loaded.inserts, plan.inserts)
    # Issues mix ids and missing values in object columns; parquet may retype them, the values stay.
    assert list(loaded.issues.columns) == list(plan.issues.columns)
    assert _records(loaded.issues) == _records(plan.issues)
    assert loaded.counts == plan.counts
    assert loaded.metrics == plan.metrics
    assert loaded.rows_to_write == plan.rows_to_write
    saved = json.loads((run_dir / "counts.json").read_text())
    assert saved == {"counts": plan.counts, "metrics": plan.metrics, "mode": saved["mode"]}
    # issue 8: counts.json records how the run was allowed to write.
    assert saved["mode"]["dry_run"] is True
    assert saved["mode"]["after_restore"] is True
    assert files.load_mode()["after_restore"] is True


def test_save_and_load_an_empty_plan(tmp_path: Path) -> None:
    empty = plan_changes(_pool([]), _table([]))
    files = RunFiles(f"file://{tmp_path}/run")

    files.save_plan(empty)
    loaded = files.load_plan()

    assert loaded.changes.empty
    assert loaded.inserts.empty
    assert loaded.issues.empty
    assert loaded.counts == dict.fromkeys(CATEGORIES, 0)
    assert loaded.rows_to_write == 0


def test_load_plan_for_the_apply_leaves_the_issues_unread(tmp_path: Path, plan: Plan) -> None:
    files = RunFiles(f"file://{tmp_path}/run")
    files.save_plan(plan)
    Path(files.path("plan/issues.parquet").path).unlink()  # the apply must not need it

    loaded = files.load_plan(issues=False)

    pd.testing.assert_frame_equal(loaded.changes, plan.changes)
    pd.testing.assert_frame_equal(loaded.inserts, plan.inserts)
    assert loaded.issues.empty
    assert list(loaded.issues.columns) == list(plan.issues.columns)
    assert loaded.counts == plan.counts
    assert loaded.metrics == plan.metrics
