"""UsersTable.apply against real databases: SQLite and MariaDB, never mocks.

Plans come from ``reconcile.plan_changes`` on small DataFrames, or are built by hand
where a failure has to be forced past the planner. Every assertion on the outcome
compares the whole table (every row, every column the sync may write).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import MySQLdb
import pandas as pd
import pytest
from airflow.sdk.exceptions import AirflowFailException

from identity_sync.apply_conflicts import reason
from identity_sync.config import Environment
from identity_sync.extract import records_frame
from identity_sync.identity import ColumnLimit
from identity_sync.reconcile import CHANGE_COLUMNS, INSERT_COLUMNS, SYNC_ISSUE_COLUMNS, Plan, plan_changes
from identity_sync.sql import MYSQL
from identity_sync.table import (
    ApplyResult,
    LockNotAcquiredError,
    PlanDriftError,
    UniqueKeyViolationError,
    UsersTable,
    database_hook,
)
from tests.conftest import MYSQL_SETTINGS, TableUnderTest, mysql_connect

INTEGRITY_ERRORS = UniqueKeyViolationError
NOTHING = ApplyResult(0, 0, 0, 0)

Row = tuple[Any, ...]


# -- helpers ------------------------------------------------------------------------------


def iid(n: int) -> str:
    """A valid, lower-case InternalUserID, recognisable by its number."""
    return f"00000000-0000-4000-8000-{n:012x}"


def pool(*users: tuple[str | None, str | None, str | None] | tuple[Any, ...]) -> pd.DataFrame:
    """A pool DataFrame (matching.POOL_COLUMNS) from (sub, email, internal_user_id[, given, family])."""
    records = []
    for user in users:
        sub, email, internal_id, *names = user
        given, family = names or ("Given", "Family")
        records.append(
            {
                "sub": sub,
                "username": email or sub,
                "email": email,
                "internal_user_id": internal_id,
                "status": "CONFIRMED",
                "enabled": True,
                "email_verified": True,
                "given_name": given,
                "family_name": family,
            }
        )
    return records_frame(records)


def contents(table: TableUnderTest) -> list[Row]:
    """(UserID, InternalUserID, CognitoID, Email, FirstName, LastName) of every row, NULL as None."""
    frame = table.rows()
    return [
        tuple(None if v is None or (not isinstance(v, str) and pd.isna(v)) else v for v in row)
        for row in frame.itertuples(index=False, name=None)
    ]


def plan_for(users_table: UsersTable, pool_frame: pd.DataFrame, stale_policy: str = "keep") -> Plan:
    return plan_changes(pool_frame, users_table.read(), stale_policy)


def hand_plan(changes: list[dict[str, Any]] | None = None, inserts: list[dict[str, Any]] | None = None) -> Plan:
    """A Plan nobody checked: the load must still refuse to break the table."""
    change_frame = pd.DataFrame.from_records(changes or [], columns=CHANGE_COLUMNS)
    change_frame = change_frame.astype(
        {"old": "string", "new": "string", "InternalUserID": "string", "sub": "string", "column": "string"}
    )
    change_frame["UserID"] = change_frame["UserID"].astype("int64")
    insert_frame = pd.DataFrame.from_records(inserts or [], columns=INSERT_COLUMNS).astype("string")
    return Plan(changes=change_frame, inserts=insert_frame, issues=pd.DataFrame(columns=SYNC_ISSUE_COLUMNS))


def change(user_id: int, internal_id: str, column: str, old: str | None, new: str | None) -> dict[str, Any]:
    return {
        "UserID": user_id,
        "InternalUserID": internal_id,
        "sub": None,
        "column": column,
        "old": old,
        "new": new,
        "category": "hand",
        "reason": "hand-built",
    }


def new_row(internal_id: str, sub: str | None, email: str | None) -> dict[str, Any]:
    return {"InternalUserID": internal_id, "CognitoID": sub, "Email": email, "FirstName": "New", "LastName": "Row"}


def update(table: TableUnderTest, assignments: str, user_id: int, *values: Any) -> None:
    """UPDATE one row from outside the code under test (another writer, between plan and apply)."""
    p = table.dialect.placeholder
    sql = f"UPDATE {table.dialect.identifier(table.name)} SET {assignments.format(p=p)} WHERE UserID = {p}"
    table.execute(sql, (*values, user_id))


def refuse_inserts(table: TableUnderTest) -> None:
    """A trigger that makes every INSERT into the table fail: a real failure after the UPDATEs ran.

    It raises what a unique key raises (MariaDB: 1062, quoting a value; SQLite: UNIQUE constraint failed).
    """
    name, quoted = f"{table.name}_refuse", table.dialect.identifier(table.name)
    if table.dialect.name == "sqlite":
        body = "SELECT RAISE(ABORT, 'UNIQUE constraint failed: refused by a test trigger');"
        table.execute(f"CREATE TRIGGER {name} BEFORE INSERT ON {quoted} BEGIN {body} END")
        return
    text = "Duplicate entry ''secret@example.com'' for key ''Email_UNIQUE''"
    table.execute(
        f"CREATE TRIGGER {name} BEFORE INSERT ON {quoted} FOR EACH ROW "
        f"SIGNAL SQLSTATE '23000' SET MYSQL_ERRNO = 1062, MESSAGE_TEXT = '{text}'"
    )


def conflicts_of(result: ApplyResult) -> list[tuple[Any, ...]]:
    """(UserID or InternalUserID, reason) of each conflict the apply found, sorted."""
    frame = result.conflicts
    assert list(frame.columns) == SYNC_ISSUE_COLUMNS
    assert (frame["category"] == "conflict").all() and frame["email"].isna().all()
    ids = zip(frame["UserID"], frame["InternalUserID"], strict=True)
    keys = [str(uid) if pd.notna(uid) else internal for uid, internal in ids]
    return sorted(zip(keys, frame["reason"], strict=True))


def apply_once(table: TableUnderTest, plan: Plan) -> ApplyResult:
    """The plan applied by the product's UsersTable on a connection of its own."""
    users = table.users_table()
    try:
        return users.apply(plan)
    finally:
        users.connection.close()


def other_session_can_lock(name: str) -> bool:
    """Whether a fresh MariaDB session gets the named lock at once (and then gives it back)."""
    other = mysql_connect()
    try:
        cursor = other.cursor()
        cursor.execute("SELECT GET_LOCK(%s, 0)", (name,))
        got = cursor.fetchone()[0] == 1
        if got:
            cursor.execute("SELECT RELEASE_LOCK(%s)", (name,))
            cursor.fetchall()
        return got
    finally:
        other.close()


@pytest.fixture
def users(any_table: TableUnderTest) -> Iterator[UsersTable]:
    """The product's UsersTable on its own connection to ``any_table``."""
    table = any_table.users_table()
    yield table
    table.connection.close()


# -- the four kinds of change, applied --------------------------------------------------------


def seed_mixed(table: TableUnderTest) -> None:
    table.insert(
        [
            (iid(1), "prod-sub-1", "alice@example.com"),  # relink
            (iid(2), "sub-2", "bob@example.com"),  # e-mail update
            (iid(3), "sub-3", "carol@example.com"),  # unchanged (e-mail differs by case only)
            (iid(4), "prod-sub-4", "dave@example.com"),  # not in the pool: stale
        ]
    )


MIXED_POOL = pool(
    ("dev-sub-1", "alice@example.com", iid(1)),
    ("sub-2", "Robert@Example.com", iid(2)),
    ("sub-3", "CAROL@example.com", iid(3)),
    ("sub-5", "Eve@Example.com", iid(5), "Eve", "Example"),  # insert
)

MIXED_EXPECTED = [
    (1, iid(1), "dev-sub-1", "alice@example.com", "First", "Last"),
    (2, iid(2), "sub-2", "Robert@Example.com", "First", "Last"),
    (3, iid(3), "sub-3", "carol@example.com", "First", "Last"),
    (4, iid(4), None, "dave@example.com", "First", "Last"),
    (5, iid(5), "sub-5", "Eve@Example.com", "Eve", "Example"),
]


def test_relink_email_update_insert_and_stale_clear_are_applied(any_table: TableUnderTest, users: UsersTable) -> None:
    seed_mixed(any_table)
    plan = plan_for(users, MIXED_POOL, "clear")
    assert {k: plan.counts[k] for k in ("relink", "email_update", "insert", "stale", "unchanged")} == {
        "relink": 1,
        "email_update": 1,
        "insert": 1,
        "stale": 1,
        "unchanged": 1,
    }

    result = users.apply(plan)

    assert result == ApplyResult(rows_updated=3, rows_inserted=1, cognito_ids_set=2, emails_set=1)
    assert contents(any_table) == MIXED_EXPECTED


def test_stale_keep_policy_leaves_the_stale_cognito_id(any_table: TableUnderTest, users: UsersTable) -> None:
    seed_mixed(any_table)
    result = users.apply(plan_for(users, MIXED_POOL, "keep"))
    expected = [
        row if row[0] != 4 else (4, iid(4), "prod-sub-4", "dave@example.com", "First", "Last") for row in MIXED_EXPECTED
    ]
    assert result == ApplyResult(rows_updated=2, rows_inserted=1, cognito_ids_set=1, emails_set=1)
    assert contents(any_table) == expected


def test_apply_is_idempotent(any_table: TableUnderTest, users: UsersTable) -> None:
    seed_mixed(any_table)
    users.apply(plan_for(users, MIXED_POOL, "clear"))
    after_first = contents(any_table)

    again = plan_for(users, MIXED_POOL, "clear")

    assert again.rows_to_write == 0
    assert again.changes.empty and again.inserts.empty
    assert users.apply(again) == NOTHING
    assert contents(any_table) == after_first == MIXED_EXPECTED


def test_retry_after_our_own_commit_succeeds_without_writing(any_table: TableUnderTest, users: UsersTable) -> None:
    """A task retried after its commit (the worker died before reporting) finds the plan's target state."""
    seed_mixed(any_table)
    plan = plan_for(users, MIXED_POOL, "clear")
    users.apply(plan)

    again = users.apply(plan)

    assert again == ApplyResult(0, 0, 0, 0, already_applied=True)
    assert again.as_dict()["already_applied"] is True
    assert contents(any_table) == MIXED_EXPECTED


def test_empty_plan_writes_nothing(any_table: TableUnderTest, users: UsersTable) -> None:
    seed_mixed(any_table)
    before = contents(any_table)
    assert users.apply(hand_plan()) == NOTHING
    assert contents(any_table) == before


# -- swaps and rotations: the unique keys would collide mid-update -----------------------------


def test_swap_of_cognito_ids(any_table: TableUnderTest, users: UsersTable) -> None:
    any_table.insert([(iid(1), "sub-a", "a@example.com"), (iid(2), "sub-b", "b@example.com")])
    plan = plan_for(users, pool(("sub-b", "a@example.com", iid(1)), ("sub-a", "b@example.com", iid(2))))
    assert plan.counts["relink"] == 2 and plan.counts["conflict"] == 0

    assert users.apply(plan) == ApplyResult(rows_updated=2, rows_inserted=0, cognito_ids_set=2, emails_set=0)
    assert contents(any_table) == [
        (1, iid(1), "sub-b", "a@example.com", "First", "Last"),
        (2, iid(2), "sub-a", "b@example.com", "First", "Last"),
    ]


def test_swap_of_emails_whatever_their_case(any_table: TableUnderTest, users: UsersTable) -> None:
    any_table.insert([(iid(1), "sub-a", "a@example.com"), (iid(2), "sub-b", "B@Example.com")])
    plan = plan_for(users, pool(("sub-a", "b@example.com", iid(1)), ("sub-b", "A@EXAMPLE.COM", iid(2))))
    assert plan.counts["email_update"] == 2 and plan.counts["conflict"] == 0

    assert users.apply(plan) == ApplyResult(rows_updated=2, rows_inserted=0, cognito_ids_set=0, emails_set=2)
    assert contents(any_table) == [
        (1, iid(1), "sub-a", "b@example.com", "First", "Last"),
        (2, iid(2), "sub-b", "A@EXAMPLE.COM", "First", "Last"),
    ]


def test_swap_of_cognito_ids_and_emails_at_once(any_table: TableUnderTest, users: UsersTable) -> None:
    any_table.insert([(iid(1), "sub-a", "a@example.com"), (iid(2), "sub-b", "b@example.com")])
    plan = plan_for(users, pool(("sub-b", "b@example.com", iid(1)), ("sub-a", "a@example.com", iid(2))))

    assert users.apply(plan) == ApplyResult(rows_updated=2, rows_inserted=0, cognito_ids_set=2, emails_set=2)
    assert contents(any_table) == [
        (1, iid(1), "sub-b", "b@example.com", "First", "Last"),
        (2, iid(2), "sub-a", "a@example.com", "First", "Last"),
    ]


def test_three_cycle_rotation_of_emails(any_table: TableUnderTest, users: UsersTable) -> None:
    any_table.insert(
        [(iid(1), "sub-1", "e1@example.com"), (iid(2), "sub-2", "e2@example.com"), (iid(3), "sub-3", "e3@example.com")]
    )
    plan = plan_for(
        users,
        pool(
            ("sub-1", "e2@example.com", iid(1)),
            ("sub-2", "e3@example.com", iid(2)),
            ("sub-3", "e1@example.com", iid(3)),
        ),
    )
    assert plan.counts["email_update"] == 3

    assert users.apply(plan).emails_set == 3
    assert contents(any_table) == [
        (1, iid(1), "sub-1", "e2@example.com", "First", "Last"),
        (2, iid(2), "sub-2", "e3@example.com", "First", "Last"),
        (3, iid(3), "sub-3", "e1@example.com", "First", "Last"),
    ]


def test_stale_sub_moves_to_the_row_that_relinks_to_it(any_table: TableUnderTest, users: UsersTable) -> None:
    """Row 2's CognitoID is cleared as stale while row 1 takes that very sub: clear first, then set."""
    any_table.insert([(iid(1), "old-1", "one@example.com"), (iid(2), "sub-x", "two@example.com")])
    # Row 2's user is gone from the pool; row 1's user now has sub-x. Planned by hand: the
    # planner never calls a sub stale while a pool user holds it.
    plan = hand_plan([change(1, iid(1), "CognitoID", "old-1", "sub-x"), change(2, iid(2), "CognitoID", "sub-x", None)])
    users.apply(plan)
    assert contents(any_table) == [
        (1, iid(1), "sub-x", "one@example.com", "First", "Last"),
        (2, iid(2), None, "two@example.com", "First", "Last"),
    ]


def test_email_fallback_relinks_a_row_without_internal_user_id(any_table: TableUnderTest, users: UsersTable) -> None:
    """The row has no InternalUserID yet (NULL): the drift check must compare it NULL-safely."""
    any_table.insert([(None, "prod-sub", "Legacy@Example.com"), (iid(2), "sub-2", "two@example.com")])
    plan = plan_for(users, pool(("dev-sub", "legacy@example.com", None), ("sub-2", "two@example.com", iid(2))))
    assert plan.counts["email_fallback"] == 1

    assert users.apply(plan) == ApplyResult(rows_updated=1, rows_inserted=0, cognito_ids_set=1, emails_set=0)
    assert contents(any_table) == [
        (1, None, "dev-sub", "Legacy@Example.com", "First", "Last"),
        (2, iid(2), "sub-2", "two@example.com", "First", "Last"),
    ]


def test_row_with_upper_case_internal_user_id_is_relinked(any_table: TableUnderTest, users: UsersTable) -> None:
    any_table.insert([(iid(0xABC).upper(), "prod-sub", "a@example.com")])
    plan = plan_for(users, pool(("dev-sub", "a@example.com", iid(0xABC))))
    assert plan.counts["relink"] == 1 and plan.inserts.empty

    users.apply(plan)
    assert contents(any_table) == [(1, iid(0xABC).upper(), "dev-sub", "a@example.com", "First", "Last")]


def test_insert_into_an_empty_table(any_table: TableUnderTest, users: UsersTable) -> None:
    plan = plan_for(users, pool(("s1", "one@example.com", iid(1), "One", None), ("s2", None, iid(2), None, "Two")))
    assert users.apply(plan) == ApplyResult(rows_updated=0, rows_inserted=2, cognito_ids_set=0, emails_set=0)
    assert contents(any_table) == [
        (1, iid(1), "s1", "one@example.com", "One", None),
        (2, iid(2), "s2", None, None, "Two"),
    ]


def test_insert_takes_keys_that_an_update_frees_in_the_same_plan(any_table: TableUnderTest, users: UsersTable) -> None:
    """Updates run before the INSERT, so a new row may take the sub and e-mail another row gives up."""
    any_table.insert([(iid(1), "shared-sub", "X@example.com")])
    plan = plan_for(users, pool(("own-sub", "y@example.com", iid(1)), ("shared-sub", "x@example.com", iid(2))))
    assert plan.counts["conflict"] == 0 and len(plan.inserts) == 1

    assert users.apply(plan) == ApplyResult(rows_updated=1, rows_inserted=1, cognito_ids_set=1, emails_set=1)
    assert contents(any_table) == [
        (1, iid(1), "own-sub", "y@example.com", "First", "Last"),
        (2, iid(2), "shared-sub", "x@example.com", "Given", "Family"),
    ]


# -- failures leave the table exactly as it was ----------------------------------------------


def test_failure_after_the_updates_rolls_everything_back(any_table: TableUnderTest, users: UsersTable) -> None:
    """The clear and set UPDATEs have run when the INSERT fails (a trigger refuses it): all of it is undone."""
    any_table.insert(
        [(iid(1), "sub-a", "a@example.com"), (iid(2), "sub-b", "b@example.com"), (iid(3), "sub-c", "c@example.com")]
    )
    refuse_inserts(any_table)
    plan = plan_for(
        users,
        pool(
            ("sub-b", "b@example.com", iid(1)),
            ("sub-a", "a@example.com", iid(2)),
            ("sub-c", "c@example.com", iid(3)),
            ("sub-9", "nine@example.com", iid(9)),
        ),
    )
    assert len(plan.changes) == 4 and len(plan.inserts) == 1  # a swap of both keys: cleared, then set
    before = contents(any_table)

    with pytest.raises(INTEGRITY_ERRORS):
        users.apply(plan)

    assert contents(any_table) == before


def test_the_same_table_object_applies_again_after_a_failure(any_table: TableUnderTest, users: UsersTable) -> None:
    """A rolled-back apply leaves no staging table or open transaction behind."""
    any_table.insert([(iid(1), "sub-a", "a@example.com"), (iid(2), "sub-b", "b@example.com")])
    bad = hand_plan([change(1, iid(1), "CognitoID", "sub-a", "sub-z")], [new_row(iid(9), "sub-9", "x@example.com")])
    refuse_inserts(any_table)
    with pytest.raises(INTEGRITY_ERRORS):
        users.apply(bad)
    any_table.execute(f"DROP TRIGGER {any_table.name}_refuse")

    good = plan_for(users, pool(("sub-b", "a@example.com", iid(1)), ("sub-a", "b@example.com", iid(2))))
    assert users.apply(good).cognito_ids_set == 2
    assert [row[2] for row in contents(any_table)] == ["sub-b", "sub-a"]


def test_change_after_planning_making_the_plan_collide_is_a_conflict(
    any_table: TableUnderTest, users: UsersTable
) -> None:
    """A row outside the plan took the e-mail a planned row is about to get: that row alone is a conflict."""
    any_table.insert(
        [
            (iid(1), "sub-1", "one@example.com"),
            (iid(2), "sub-2", "two@example.com"),
            (iid(3), "sub-3", "three@example.com"),
        ]
    )
    plan = plan_for(
        users,
        pool(("sub-1-new", "one@example.com", iid(1)), ("sub-2", "new@example.com", iid(2)), ("sub-3", None, iid(3))),
    )
    update(any_table, "Email = {p}", 3, "NEW@example.com")
    before = contents(any_table)

    result = users.apply(plan)

    assert result == ApplyResult(rows_updated=1, rows_inserted=0, cognito_ids_set=1, emails_set=0)
    assert conflicts_of(result) == [("2", reason("held", "Email"))]
    assert contents(any_table) == [(1, iid(1), "sub-1-new", *before[0][3:]), *before[1:]]


# -- drift between planning and applying ------------------------------------------------------


DRIFTS = {
    "cognito_id": ("CognitoID = {p}", ("someone-else",)),
    "email": ("Email = {p}", ("changed@example.com",)),
    "internal_id": ("InternalUserID = {p}", (iid(77),)),
    "cognito_id_to_null": ("CognitoID = NULL", ()),
}


@pytest.mark.parametrize("drift", sorted(DRIFTS))
def test_row_changed_after_planning_raises_drift(any_table: TableUnderTest, users: UsersTable, drift: str) -> None:
    seed_mixed(any_table)
    plan = plan_for(users, MIXED_POOL, "clear")
    # Row 2 has an e-mail update planned; row 1 a relink. Touch the column the plan writes.
    target = 2 if drift == "email" else 1
    assignments, values = DRIFTS[drift]
    update(any_table, assignments, target, *values)
    before = contents(any_table)

    with pytest.raises(PlanDriftError):
        users.apply(plan)

    assert contents(any_table) == before


def test_row_deleted_after_planning_raises_drift(any_table: TableUnderTest, users: UsersTable) -> None:
    seed_mixed(any_table)
    plan = plan_for(users, MIXED_POOL, "clear")
    any_table.execute(
        f"DELETE FROM {any_table.dialect.identifier(any_table.name)} WHERE UserID = {any_table.dialect.placeholder}",
        (4,),
    )
    before = contents(any_table)
    with pytest.raises(PlanDriftError):
        users.apply(plan)
    assert contents(any_table) == before


def test_insert_whose_internal_id_appeared_meanwhile_raises_drift(any_table: TableUnderTest, users: UsersTable) -> None:
    seed_mixed(any_table)
    plan = plan_for(users, MIXED_POOL, "clear")
    assert list(plan.inserts["InternalUserID"]) == [iid(5)]
    any_table.insert([(iid(5), "written-by-someone-else", "eve.other@example.com")])
    before = contents(any_table)

    with pytest.raises(PlanDriftError, match="appeared"):
        users.apply(plan)

    assert contents(any_table) == before


def test_insert_whose_internal_id_appeared_in_another_case_raises_drift(
    any_table: TableUnderTest, users: UsersTable
) -> None:
    """InternalUserIDs compare without case everywhere (identity.normalise_internal_ids): so must the drift check."""
    any_table.insert([(iid(1), "sub-1", "one@example.com")])
    new_id = iid(0xABCDEF)
    plan = plan_for(users, pool(("sub-1", "one@example.com", iid(1)), ("sub-new", "new@example.com", new_id)))
    assert list(plan.inserts["InternalUserID"]) == [new_id]
    any_table.insert([(new_id.upper(), "written-by-someone-else", "other@example.com")])
    before = contents(any_table)

    with pytest.raises(PlanDriftError, match="appeared"):
        users.apply(plan)

    assert contents(any_table) == before


# -- the MySQL trap: an insert must never update another row ------------------------------------


def test_planner_demotes_an_insert_whose_email_belongs_to_another_row(
    any_table: TableUnderTest, users: UsersTable
) -> None:
    any_table.insert([(iid(1), "sub-1", "bob@example.com")])
    before = contents(any_table)
    plan = plan_for(users, pool(("sub-1", "bob@example.com", iid(1)), ("sub-new", "BOB@example.com", iid(2))))

    assert plan.inserts.empty
    assert plan.counts["conflict"] >= 1
    assert users.apply(plan) == NOTHING
    assert contents(any_table) == before


def test_forced_insert_colliding_on_email_is_a_conflict_and_never_updates_that_row(
    any_table: TableUnderTest, users: UsersTable
) -> None:
    any_table.insert([(iid(1), "sub-1", "bob@example.com"), (iid(2), "sub-2", "carol@example.com")])
    before = contents(any_table)
    plan = hand_plan(inserts=[new_row(iid(3), "sub-3", "Bob@Example.com"), new_row(iid(4), "sub-4", "d@example.com")])

    result = users.apply(plan)

    assert result == ApplyResult(rows_updated=0, rows_inserted=1, cognito_ids_set=0, emails_set=0)
    assert conflicts_of(result) == [(iid(3), reason("held", "Email"))]
    # row 1 kept its sub and names: no ON DUPLICATE KEY UPDATE
    assert contents(any_table) == [*before, (3, iid(4), "sub-4", "d@example.com", "New", "Row")]


@pytest.mark.parametrize("column", ["CognitoID", "InternalUserID"])
def test_forced_insert_colliding_on_another_key_changes_nothing(
    any_table: TableUnderTest, users: UsersTable, column: str
) -> None:
    any_table.insert([(iid(1), "sub-1", "bob@example.com")])
    before = contents(any_table)
    row = new_row(iid(1) if column == "InternalUserID" else iid(3), "sub-1", "new@example.com")
    if column == "InternalUserID":
        row["CognitoID"] = "sub-new"
        with pytest.raises(PlanDriftError):  # an InternalUserID that is there is drift: the plan is stale
            users.apply(hand_plan(inserts=[row]))
    else:  # a sub another row holds: a per-row conflict, the server's unique index is never hit
        assert conflicts_of(users.apply(hand_plan(inserts=[row]))) == [(iid(3), reason("held", "CognitoID"))]
    assert contents(any_table) == before


# -- volume: one set-based load ------------------------------------------------------------------


class CountingCursor:
    def __init__(self, cursor: Any, counts: Counter[str]) -> None:
        self._cursor = cursor
        self._counts = counts

    def execute(self, *args: Any) -> Any:
        self._counts["execute"] += 1
        self._counts[args[0].split(None, 1)[0].upper()] += 1
        return self._cursor.execute(*args)

    def executemany(self, sql: str, rows: Any) -> Any:
        rows = list(rows)
        self._counts["executemany"] += 1
        self._counts["staged_rows"] += len(rows)
        return self._cursor.executemany(sql, rows)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cursor, name)


class CountingConnection:
    """A DB-API connection that counts the statements sent through its cursors."""

    def __init__(self, connection: Any) -> None:
        self.__dict__["_connection"] = connection
        self.__dict__["counts"] = Counter()

    def cursor(self) -> CountingCursor:
        return CountingCursor(self._connection.cursor(), self.counts)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._connection, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._connection, name, value)


def test_thousands_of_changes_apply_in_one_set_based_load(any_table: TableUnderTest) -> None:
    n, new = 3000, 1000
    any_table.insert([(iid(i), f"prod-{i}", f"user{i}@example.com") for i in range(n)])
    # Every row is relinked and every e-mail moves one row up (one long rotation), plus new users.
    users_pool = pool(
        *[(f"dev-{i}", f"user{(i + 1) % n}@example.com", iid(i)) for i in range(n)],
        *[(f"dev-new-{j}", f"new{j}@example.com", iid(n + j), "New", "Row") for j in range(new)],
    )
    counting = CountingConnection(any_table.connect())
    users = UsersTable(counting, any_table.dialect, any_table.name, any_table.lock_name)
    try:
        plan = plan_for(users, users_pool)
        assert plan.rows_to_write == n + new
        started = time.monotonic()
        result = users.apply(plan)
        elapsed = time.monotonic() - started
    finally:
        counting.close()

    assert result == ApplyResult(rows_updated=n, rows_inserted=new, cognito_ids_set=n, emails_set=n)
    if any_table.dialect.name == "mysql":  # in bulk: one LOAD DATA per staging table
        assert counting.counts["LOAD"] == 3 and counting.counts["executemany"] == 0
    else:
        assert counting.counts["executemany"] == 3 and counting.counts["staged_rows"] == 2 * n + new
    # a handful of set-based statements, not one per row (the rotation's clears go 1,000 ids at a time)
    assert counting.counts["execute"] < 40
    assert elapsed < 20
    expected = [(i + 1, iid(i), f"dev-{i}", f"user{(i + 1) % n}@example.com", "First", "Last") for i in range(n)]
    expected += [(n + j + 1, iid(n + j), f"dev-new-{j}", f"new{j}@example.com", "New", "Row") for j in range(new)]
    assert contents(any_table) == expected


# -- the per-environment lock (MariaDB) ---------------------------------------------------------


@pytest.mark.mariadb
def test_lock_held_elsewhere_refuses_quickly_and_writes_nothing(mariadb_table: TableUnderTest) -> None:
    seed_mixed(mariadb_table)
    users = mariadb_table.users_table()
    plan = plan_for(users, MIXED_POOL, "clear")
    before = contents(mariadb_table)
    holder = mysql_connect()
    try:
        cursor = holder.cursor()
        cursor.execute("SELECT GET_LOCK(%s, 0)", (mariadb_table.lock_name,))
        assert cursor.fetchone()[0] == 1

        started = time.monotonic()
        with pytest.raises(LockNotAcquiredError):
            users.apply(plan, lock_timeout=1)
        assert time.monotonic() - started < 5
        assert contents(mariadb_table) == before

        cursor.execute("SELECT RELEASE_LOCK(%s)", (mariadb_table.lock_name,))
        cursor.fetchall()
        assert users.apply(plan, lock_timeout=1).rows_inserted == 1
        assert contents(mariadb_table) == MIXED_EXPECTED
    finally:
        holder.close()
        users.connection.close()


@pytest.mark.mariadb
def test_lock_is_released_after_apply_and_after_a_failed_apply(mariadb_table: TableUnderTest) -> None:
    seed_mixed(mariadb_table)
    users = mariadb_table.users_table()
    try:
        plan = plan_for(users, MIXED_POOL, "clear")
        users.apply(plan)
        assert other_session_can_lock(mariadb_table.lock_name)

        update(mariadb_table, "Email = {p}", 1, "elsewhere@example.com")
        with pytest.raises(PlanDriftError):
            users.apply(hand_plan([change(1, iid(1), "Email", "alice@example.com", "a2@example.com")]))
        assert other_session_can_lock(mariadb_table.lock_name)

        refuse_inserts(mariadb_table)
        with pytest.raises(UniqueKeyViolationError) as raised:
            users.apply(hand_plan(inserts=[new_row(iid(8), "sub-8", "new@example.com")]))
        assert "Email_UNIQUE" in str(raised.value) and "secret" not in str(raised.value)  # no e-mail in logs
        assert raised.value.__cause__ is None
        assert other_session_can_lock(mariadb_table.lock_name)
    finally:
        users.connection.close()


@pytest.mark.mariadb
def test_lock_is_per_table_name(mariadb_table: TableUnderTest) -> None:
    """Another environment's lock does not block this one."""
    seed_mixed(mariadb_table)
    users = mariadb_table.users_table()
    holder = mysql_connect()
    try:
        cursor = holder.cursor()
        cursor.execute("SELECT GET_LOCK(%s, 0)", (mariadb_table.lock_name + ".other",))
        assert users.apply(plan_for(users, MIXED_POOL, "clear"), lock_timeout=1).rows_inserted == 1
    finally:
        holder.close()
        users.connection.close()


# -- UsersTable.open through Airflow connections ---------------------------------------------------


def environment(table_name: str, conn_id: str = "users_db_it") -> Environment:
    return Environment(
        name="it", aws_conn_id="aws_it", user_pool_id="us-east-2_ItPool01", db_conn_id=conn_id, users_table=table_name
    )


def check_open_path(table: TableUnderTest, env: Environment) -> None:
    seed_mixed(table)
    with UsersTable.open(env) as users:
        assert users.dialect == table.dialect
        assert users.lock_name == env.lock_name
        frame = users.read()
        assert list(frame.columns) == ["UserID", "InternalUserID", "CognitoID", "Email"]
        assert frame["UserID"].tolist() == [1, 2, 3, 4]
        assert frame["Email"].tolist() == [r[3] for r in contents(table)]
        result = users.apply(plan_changes(MIXED_POOL, frame, "clear"))
    assert result == ApplyResult(rows_updated=3, rows_inserted=1, cognito_ids_set=2, emails_set=1)
    assert contents(table) == MIXED_EXPECTED
    with UsersTable.open(env) as users:
        assert users.apply(plan_changes(MIXED_POOL, users.read(), "clear")) == NOTHING


@pytest.mark.mariadb
def test_open_through_a_mysql_airflow_connection(
    mariadb_table: TableUnderTest, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn = {
        "conn_type": "mysql",
        "host": MYSQL_SETTINGS["host"],
        "port": MYSQL_SETTINGS["port"],
        "schema": MYSQL_SETTINGS["database"],
        "login": MYSQL_SETTINGS["user"],
        "password": MYSQL_SETTINGS["password"],
    }
    monkeypatch.setenv("AIRFLOW_CONN_USERS_DB_IT", json.dumps(conn))
    check_open_path(mariadb_table, environment(mariadb_table.name))


def test_open_through_a_sqlite_airflow_connection(
    sqlite_table: TableUnderTest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "users.sqlite"  # where the sqlite_table fixture keeps its database
    assert path.exists()
    monkeypatch.setenv("AIRFLOW_CONN_USERS_DB_IT", json.dumps({"conn_type": "sqlite", "host": str(path.resolve())}))
    check_open_path(sqlite_table, environment(sqlite_table.name))


@pytest.mark.mariadb
def test_open_keeps_non_ascii_emails_intact(mariadb_table: TableUnderTest, monkeypatch: pytest.MonkeyPatch) -> None:
    conn = {"conn_type": "mysql", "host": MYSQL_SETTINGS["host"], "port": MYSQL_SETTINGS["port"]}
    conn |= {"schema": MYSQL_SETTINGS["database"], "login": MYSQL_SETTINGS["user"], "password": ""}
    monkeypatch.setenv("AIRFLOW_CONN_USERS_DB_IT", json.dumps(conn))
    mariadb_table.insert([(iid(1), "sub-1", "zoe@example.com")])
    with UsersTable.open(environment(mariadb_table.name)) as users:
        plan = plan_changes(
            pool(("sub-1", "zoë@exämple.com", iid(1)), ("sub-2", "jürgen@example.com", iid(2))), users.read()
        )
        users.apply(plan)
        assert users.read()["Email"].tolist() == ["zoë@exämple.com", "jürgen@example.com"]
    assert [r[3] for r in contents(mariadb_table)] == ["zoë@exämple.com", "jürgen@example.com"]


def test_open_refuses_an_unsupported_connection_type(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_USERS_DB_IT", json.dumps({"conn_type": "http", "host": "127.0.0.1"}))
    with pytest.raises(ValueError, match="not supported"), UsersTable.open(environment("Users")):
        pass


# -- reliability (issue 7) and the lean apply (issue 9) -------------------------------------------


class HookedCursor:
    """A cursor that calls ``before(sql, cursor)`` and ``after(sql, cursor)`` around every execute."""

    def __init__(self, cursor: Any, connection: HookedConnection) -> None:
        self._cursor = cursor
        self._hooks = connection

    def execute(self, sql: str, params: Any = ()) -> Any:
        if self._hooks.before:
            self._hooks.before(sql, params, self._cursor)
        result = self._cursor.execute(sql, params)
        if self._hooks.after:
            self._hooks.after(sql, params, self._cursor)
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cursor, name)


class HookedConnection:
    """A DB-API connection whose cursors run the test's hooks around each statement (same session)."""

    def __init__(self, connection: Any, before: Any = None, after: Any = None) -> None:
        self.__dict__.update(_connection=connection, before=before, after=after)

    def cursor(self) -> HookedCursor:
        return HookedCursor(self._connection.cursor(), self)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._connection, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._connection, name, value)


def session_value(cursor: Any, sql: str) -> Any:
    """One value read on the apply's own session, between two of its statements (a cursor of its own,
    so that the apply's cursor keeps its rowcount)."""
    own = cursor.connection.cursor()
    own.execute(sql)
    return own.fetchall()[0][-1]


@pytest.mark.mariadb
def test_application_write_during_the_apply_waits_and_lands_after_it(mariadb_table: TableUnderTest) -> None:
    """Issue 7.1: an app write to a row the apply changes is never lost: it waits for our row locks.

    The apply is held just after its first UPDATE (the optimistic compare-and-set of Email, the
    smaller column) while another session writes row 2's e-mail (which the plan changes too).
    Before the fix nothing was locked before the writes: the app's write committed at once and
    our UPDATE overwrote it.
    """
    seed_mixed(mariadb_table)
    plan = plan_for(mariadb_table.users_table(), MIXED_POOL, "clear")
    app_done = threading.Event()

    def app_write() -> None:
        update(mariadb_table, "Email = {p}", 2, "written.by.app@example.com")
        app_done.set()

    writer = threading.Thread(target=app_write)
    waited: list[bool] = []

    def after(sql: str, params: Any, cursor: Any) -> None:
        if sql.lstrip().upper().startswith("UPDATE") and not waited:
            writer.start()
            waited.append(app_done.wait(timeout=2))  # False: the app's write is blocked by our locks

    users = UsersTable(HookedConnection(mysql_connect(), after=after), MYSQL, mariadb_table.name, "test.lu")
    try:
        result = users.apply(plan)
    finally:
        users.connection.close()
    writer.join(timeout=30)

    assert waited == [False] and app_done.is_set()
    assert result.emails_set == 1
    rows = contents(mariadb_table)
    assert rows[1][3] == "written.by.app@example.com"  # the app's write landed after ours: not lost
    assert [r[2] for r in rows] == [r[2] for r in MIXED_EXPECTED]


def test_change_of_case_only_after_planning_is_drift(any_table: TableUnderTest, users: UsersTable) -> None:
    """Issue 7.6: drift compares the exact stored value; before, ``bob@`` -> ``BOB@`` went unnoticed."""
    seed_mixed(any_table)
    plan = plan_for(users, MIXED_POOL, "clear")  # row 2's e-mail changes to Robert@Example.com
    update(any_table, "Email = {p}", 2, "BOB@example.com")
    before = contents(any_table)

    with pytest.raises(PlanDriftError, match="1 rows: Email changed"):
        users.apply(plan)

    assert contents(any_table) == before


def test_drift_is_a_refusal_naming_counts_and_ids_never_values(any_table: TableUnderTest, users: UsersTable) -> None:
    """Issue 7.10: drift fails at once (AirflowFailException: no retries), says what changed, quotes no value."""
    seed_mixed(any_table)
    plan = plan_for(users, MIXED_POOL, "clear")
    update(any_table, "Email = {p}", 2, "changed@example.com")
    update(any_table, "CognitoID = {p}", 1, "someone-else")

    with pytest.raises(PlanDriftError) as raised:
        users.apply(plan)

    message = str(raised.value)
    assert isinstance(raised.value, AirflowFailException)
    assert "1 rows: CognitoID changed" in message and "1 rows: Email changed" in message
    assert f"UserID 1 (InternalUserID {iid(1)})" in message and "UserID 2" in message
    assert "re-plans" in message and "Nothing was written" in message
    assert "changed@" not in message and "someone-else" not in message and "example.com" not in message


@pytest.mark.mariadb
def test_the_apply_session_is_strict_and_its_own_mode_is_restored(mariadb_table: TableUnderTest) -> None:
    """Issue 7.2: on a non-strict session every write runs under STRICT_ALL_TABLES; the mode comes back after."""
    seed_mixed(mariadb_table)
    plan = plan_for(mariadb_table.users_table(), MIXED_POOL, "clear")
    modes: list[str] = []

    def before(sql: str, params: Any, cursor: Any) -> None:
        if sql.lstrip().upper().startswith(("UPDATE", "INSERT")):
            modes.append(session_value(cursor, "SELECT @@SESSION.sql_mode"))

    connection = mysql_connect()
    connection.cursor().execute("SET SESSION sql_mode = ''")
    users = UsersTable(HookedConnection(connection, before=before), MYSQL, mariadb_table.name, "test.strict")
    try:
        users.apply(plan)
        after = session_value(connection.cursor(), "SELECT @@SESSION.sql_mode")
    finally:
        connection.close()

    assert modes and all("STRICT_ALL_TABLES" in mode for mode in modes)
    assert after == ""
    assert contents(mariadb_table) == MIXED_EXPECTED


@pytest.mark.mariadb
def test_values_that_do_not_fit_are_per_row_conflicts_never_truncated(mariadb_table: TableUnderTest) -> None:
    """Issue 7.2 and 7.9: an over-long value is a conflict naming its row; the others apply.

    Before: a non-strict session stored it cut to the column width; a strict one failed the
    whole apply with "Data too long ... at row N", naming no user.
    """
    seed_mixed(mariadb_table)
    long_email = "x" * 95 + "@example.com"  # 107 characters: Email is VARCHAR(100)
    plan = hand_plan(
        [
            change(1, iid(1), "CognitoID", "prod-sub-1", "dev-sub-1"),
            change(2, iid(2), "Email", "bob@example.com", long_email),
        ],
        [new_row(iid(5), "sub-5", "eve@example.com") | {"FirstName": "N" * 51}, new_row(iid(6), "sub-6", None)],
    )
    connection = mysql_connect()
    connection.cursor().execute("SET SESSION sql_mode = ''")
    users = UsersTable(connection, MYSQL, mariadb_table.name, "test.fit")
    try:
        result = users.apply(plan)
    finally:
        connection.close()

    assert result == ApplyResult(rows_updated=1, rows_inserted=1, cognito_ids_set=1, emails_set=0)
    assert conflicts_of(result) == sorted(
        [
            ("2", "Email is longer than the column's 100 characters"),
            (iid(5), "FirstName is longer than the column's 50 characters"),
        ]
    )
    assert "xxx" not in " ".join(result.conflicts["reason"])
    rows = contents(mariadb_table)
    assert rows[0][2] == "dev-sub-1" and rows[1][3] == "bob@example.com"
    assert [r[1] for r in rows] == [iid(1), iid(2), iid(3), iid(4), iid(6)]


def test_column_limits_are_read_from_the_server(any_table: TableUnderTest, users: UsersTable) -> None:
    """What the plan and the apply check values against; SQLite declares no limits."""
    limits = users.column_limits()
    if any_table.dialect.name == "sqlite":
        assert limits == {}
        return
    assert limits == {
        "CognitoID": ColumnLimit(45, "utf8mb4"),
        "Email": ColumnLimit(100, "utf8mb4"),
        "FirstName": ColumnLimit(50, "utf8mb4"),
        "LastName": ColumnLimit(50, "utf8mb4"),
    }


# -- collisions as the server's collation sees them (issue 7.8) ----------------------------------


@pytest.mark.mariadb
def test_german_sharp_s_collision_is_a_conflict_and_the_rest_applies(mariadb_table: TableUnderTest) -> None:
    """utf8mb4_general_ci: ``ß`` equals ``s``, Python's casefold says ``ss``. Before: the whole apply failed."""
    mariadb_table.insert(
        [(iid(1), "sub-1", "strase@example.com"), (iid(2), "sub-2", "two@example.com"), (iid(3), "sub-3", "3@x.org")]
    )
    plan = hand_plan(
        [
            change(2, iid(2), "Email", "two@example.com", "straße@example.com"),
            change(3, iid(3), "CognitoID", "sub-3", "sub-3-dev"),
        ]
    )
    result = apply_once(mariadb_table, plan)

    assert result == ApplyResult(rows_updated=1, rows_inserted=0, cognito_ids_set=1, emails_set=0)
    assert conflicts_of(result) == [("2", reason("held", "Email"))]
    assert result.conflicts["InternalUserID"].tolist() == [iid(2)]
    assert [r[2:4] for r in contents(mariadb_table)] == [
        ("sub-1", "strase@example.com"),
        ("sub-2", "two@example.com"),
        ("sub-3-dev", "3@x.org"),
    ]


@pytest.mark.mariadb
def test_emoji_only_differences_collide_with_rows_and_with_each_other(mariadb_table: TableUnderTest) -> None:
    """Two addresses that differ by an emoji are one value to the index: conflicts, not a failed apply."""
    mariadb_table.insert([(iid(1), "sub-1", "a😀@example.com")])
    plan = hand_plan(
        inserts=[
            new_row(iid(2), "sub-2", "a😁@example.com"),  # the row holds its equal
            new_row(iid(3), "sub-3", "b😀@example.com"),  # these two equal each other
            new_row(iid(4), "sub-4", "b😁@example.com"),
            new_row(iid(5), "sub-5", "c@example.com"),
        ]
    )
    result = apply_once(mariadb_table, plan)

    assert result.rows_inserted == 1
    assert conflicts_of(result) == [
        (iid(2), reason("held", "Email")),
        (iid(3), reason("twice", "Email")),
        (iid(4), reason("twice", "Email")),
    ]
    assert [r[3] for r in contents(mariadb_table)] == ["a😀@example.com", "c@example.com"]


@pytest.mark.mariadb
def test_a_chain_whose_end_is_in_conflict_is_demoted_whole_and_a_swap_still_applies(
    mariadb_table: TableUnderTest,
) -> None:
    """Row 2 cannot take ``straße@`` (row 3 holds ``strase@``), so it keeps ``b@``, which row 1 wanted."""
    mariadb_table.insert(
        [
            (iid(1), "s1", "a@example.com"),
            (iid(2), "s2", "b@example.com"),
            (iid(3), "s3", "strase@example.com"),
            (iid(4), "s4", "d@example.com"),
            (iid(5), "s5", "e@example.com"),
        ]
    )
    plan = hand_plan(
        [
            change(1, iid(1), "Email", "a@example.com", "b@example.com"),
            change(2, iid(2), "Email", "b@example.com", "straße@example.com"),
            change(4, iid(4), "Email", "d@example.com", "e@example.com"),
            change(5, iid(5), "Email", "e@example.com", "d@example.com"),
        ]
    )
    result = apply_once(mariadb_table, plan)

    assert result == ApplyResult(rows_updated=2, rows_inserted=0, cognito_ids_set=0, emails_set=2)
    assert conflicts_of(result) == [("1", reason("held", "Email")), ("2", reason("held", "Email"))]
    assert [r[3] for r in contents(mariadb_table)] == [
        "a@example.com",
        "b@example.com",
        "strase@example.com",
        "e@example.com",
        "d@example.com",
    ]


@pytest.mark.mariadb
def test_legacy_utf8mb3_table_collisions_and_unstorable_characters(mariadb_table: TableUnderTest) -> None:
    """A legacy utf8mb3 table: an emoji cannot be stored at all, ``ß`` equals ``s``; both per-row conflicts."""
    quoted = MYSQL.identifier(mariadb_table.name)
    mariadb_table.execute(f"ALTER TABLE {quoted} CONVERT TO CHARACTER SET utf8mb3 COLLATE utf8mb3_general_ci")
    mariadb_table.insert([(iid(1), "sub-1", "strase@example.com"), (iid(2), "sub-2", "two@example.com")])
    plan = hand_plan(
        [
            change(2, iid(2), "Email", "two@example.com", "straße@example.com"),
            change(1, iid(1), "CognitoID", "sub-1", "sub-1-dev"),
        ],
        [new_row(iid(3), "sub-3", "smile😀@example.com"), new_row(iid(4), "sub-4", "four@example.com")],
    )
    users = mariadb_table.users_table()
    try:
        assert users.column_limits()["Email"] == ColumnLimit(100, "utf8mb3")
        result = users.apply(plan)
    finally:
        users.connection.close()

    assert result == ApplyResult(rows_updated=1, rows_inserted=1, cognito_ids_set=1, emails_set=0)
    assert conflicts_of(result) == sorted(
        [("2", reason("held", "Email")), (iid(3), "Email holds characters its character set utf8mb3 cannot store")]
    )
    assert [r[2:4] for r in contents(mariadb_table)] == [
        ("sub-1-dev", "strase@example.com"),
        ("sub-2", "two@example.com"),
        ("sub-4", "four@example.com"),
    ]


# -- the lean apply (issue 9) ---------------------------------------------------------------------


@pytest.mark.mariadb
def test_large_change_sets_update_without_a_temporary_table(mariadb_table: TableUnderTest) -> None:
    """Every row relinked: Users drives a plain ``SET u.c = s.new``; no UPDATE buffers rows first.

    Before: ``SET c = CASE ... ELSE c END`` made MariaDB create a temporary table (on disk at scale).
    """
    n = 2000
    mariadb_table.insert([(iid(i), f"prod-{i}", f"user{i}@example.com") for i in range(n)])
    plan = plan_for(
        mariadb_table.users_table(), pool(*[(f"dev-{i}", f"user{i}@example.com", iid(i)) for i in range(n)])
    )
    created: dict[str, int] = {}
    status = "SHOW SESSION STATUS LIKE 'Created_tmp_tables'"

    def before(sql: str, params: Any, cursor: Any) -> None:
        if sql.lstrip().upper().startswith("UPDATE"):
            created[sql] = int(session_value(cursor, status))

    def after(sql: str, params: Any, cursor: Any) -> None:
        if sql in created:
            created[sql] = int(session_value(cursor, status)) - created[sql]

    connection = HookedConnection(mysql_connect(), before=before, after=after)
    users = UsersTable(connection, MYSQL, mariadb_table.name, "test.tmp")
    try:
        assert users.apply(plan).cognito_ids_set == n
    finally:
        connection.close()

    assert created and list(created.values()) == [0] * len(created)
    assert [r[2] for r in contents(mariadb_table)] == [f"dev-{i}" for i in range(n)]


@pytest.mark.mariadb
def test_staging_loads_in_bulk_from_an_owner_only_file_removed_at_once(mariadb_table: TableUnderTest) -> None:
    seed_mixed(mariadb_table)
    plan = plan_for(mariadb_table.users_table(), MIXED_POOL, "clear")
    files: dict[str, int] = {}

    def before(sql: str, params: Any, cursor: Any) -> None:
        if sql.lstrip().upper().startswith("LOAD DATA"):
            files[params[0]] = os.stat(params[0]).st_mode & 0o777

    connection = HookedConnection(mysql_connect(), before=before)
    users = UsersTable(connection, MYSQL, mariadb_table.name, "test.bulk")
    try:
        users.apply(plan)
    finally:
        connection.close()

    assert len(files) == 3 and set(files.values()) == {0o600}  # CognitoID, Email, inserts
    assert not any(os.path.exists(path) for path in files)
    assert contents(mariadb_table) == MIXED_EXPECTED


@pytest.mark.mariadb
def test_staging_falls_back_to_executemany_when_local_infile_is_refused(
    mariadb_table: TableUnderTest, caplog: pytest.LogCaptureFixture
) -> None:
    seed_mixed(mariadb_table)
    plan = plan_for(mariadb_table.users_table(), MIXED_POOL, "clear")
    connection = MySQLdb.connect(charset="utf8mb4", local_infile=0, **MYSQL_SETTINGS)  # the client refuses
    users = UsersTable(connection, MYSQL, mariadb_table.name, "test.fallback")
    caplog.set_level(logging.WARNING, logger="identity_sync.staging")
    try:
        result = users.apply(plan)
    finally:
        connection.close()

    assert result == ApplyResult(rows_updated=3, rows_inserted=1, cognito_ids_set=2, emails_set=1)
    assert contents(mariadb_table) == MIXED_EXPECTED
    assert not users.stager.bulk and users.stager.bulk_loads == 0
    refusals = [r for r in caplog.records if "LOAD DATA LOCAL INFILE refused" in r.getMessage()]
    assert len(refusals) <= 1  # once per process: an earlier test may have logged it already


def test_the_connection_extra_local_infile_reaches_the_mysql_hook(monkeypatch: pytest.MonkeyPatch) -> None:
    """MySqlHook reads local_infile as a hook argument, not from the extra: database_hook passes it on."""
    base = {"conn_type": "mysql", "host": "127.0.0.1", "login": "root"}
    monkeypatch.setenv("AIRFLOW_CONN_USERS_DB_BULK", json.dumps(base | {"extra": {"local_infile": True}}))
    monkeypatch.setenv("AIRFLOW_CONN_USERS_DB_PLAIN", json.dumps(base))
    assert database_hook("users_db_bulk").local_infile is True
    assert database_hook("users_db_plain").local_infile is False


@pytest.mark.mariadb
def test_bulk_staging_keeps_every_character_exactly(mariadb_table: TableUnderTest) -> None:
    """Tabs, newlines, backslashes, a literal ``\\N``, accents and emoji survive the tab-separated file."""
    odd = ["tab\there", "new\nline", "back\\slash", "\\N", "cr\rhere", "zoë😀"]
    inserts = [new_row(iid(10 + k), f"sub-{k}", f"{k}@example.com") | {"FirstName": v} for k, v in enumerate(odd)]
    inserts.append(new_row(iid(20), "sub-null", None) | {"FirstName": None, "LastName": "\\N"})
    users = mariadb_table.users_table()
    try:
        assert users.apply(hand_plan(inserts=inserts)).rows_inserted == len(inserts)
        assert users.stager.bulk_loads == 1
    finally:
        users.connection.close()
    rows = contents(mariadb_table)
    assert [r[4] for r in rows] == [*odd, None]
    assert rows[-1][3] is None and rows[-1][5] == "\\N"
