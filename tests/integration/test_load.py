"""UsersTable.apply against real databases: SQLite and MariaDB, never mocks.

Plans come from ``reconcile.plan_changes`` on small DataFrames, or are built by hand
where a failure has to be forced past the planner. Every assertion on the outcome
compares the whole table (every row, every column the sync may write).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from identity_sync.apply_conflicts import reason
from identity_sync.config import Environment
from identity_sync.extract import records_frame
from identity_sync.reconcile import CHANGE_COLUMNS, INSERT_COLUMNS, ISSUE_COLUMNS, Plan, plan_changes
from identity_sync.table import ApplyResult, LockNotAcquiredError, PlanDriftError, UniqueKeyViolationError, UsersTable
from tests.conftest import MYSQL_SETTINGS, TableUnderTest, mysql_connect

INTEGRITY_ERRORS = UniqueKeyViolationError
NOTHING = ApplyResult(0, 0, 0, 0)

Row = tuple[Any, ...]


# -- helpers ------------------------------------------------------------------------------


def iid(n: int) -> str:
    """A valid, lower-case InternalUserID, recognisable by its number."""
    return f"00000000-0000-4000-8000-{n:012x}"


def pool(*users: tuple[str | None, str | None, str | None] | tuple[Any, ...]) -> pd.DataFrame:
    """A pool DataFrame (extract.POOL_COLUMNS) from (sub, email, internal_user_id[, given, family])."""
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
    return Plan(changes=change_frame, inserts=insert_frame, issues=pd.DataFrame(columns=ISSUE_COLUMNS))


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
    assert list(frame.columns) == ISSUE_COLUMNS
    assert (frame["category"] == "conflict").all() and frame["email"].isna().all()
    ids = zip(frame["UserID"], frame["InternalUserID"], strict=True)
    keys = [str(uid) if pd.notna(uid) else internal for uid, internal in ids]
    return sorted(zip(keys, frame["reason"], strict=True))


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
