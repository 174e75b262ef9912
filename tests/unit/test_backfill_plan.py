"""plan_backfill and its helpers on hand-built frames: every category and reason, exactly.

The pool frame is built the way extraction builds it (``extract.records_frame``); the
table frame the way ``UsersTable.read_for_backfill`` returns it (UserID int, the rest
"string").
"""

from __future__ import annotations

import math
import uuid
from typing import Any

import pandas as pd
import pytest

from identity_sync.backfill import (
    BACKFILL_CATEGORIES,
    BACKFILL_ISSUE_COLUMNS,
    BACKFILL_REASON,
    CREATE_COLUMNS,
    WRITE_COLUMNS,
    BackfillPlan,
    chunk_frame,
    id_coverage,
    plan_backfill,
    simulate_missing_ids,
)
from identity_sync.backfill_writes import changed_since_plan
from identity_sync.extract import records_frame
from identity_sync.identity import UUID_PATTERN
from identity_sync.matching import POOL_COLUMNS

TABLE_COLUMNS = ["UserID", "InternalUserID", "CognitoID", "Email", "FirstName", "LastName"]


def iid(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


REASON = BACKFILL_REASON


def user(
    sub: str,
    email: str | None,
    attribute: str | None = None,
    *,
    status: str = "CONFIRMED",
    enabled: bool = True,
    verified: bool = True,
) -> tuple[Any, ...]:
    """One pool user: every POOL_COLUMNS column but email_norm (records_frame derives it)."""
    return (sub, f"u-{sub}", email, attribute, status, enabled, verified, "Given", "Family")


def pool(*users: tuple[Any, ...]) -> pd.DataFrame:
    frame = records_frame(list(users))
    assert list(frame.columns) == POOL_COLUMNS
    return frame


def table(*rows: tuple[Any, ...]) -> pd.DataFrame:
    """Rows of (UserID, InternalUserID, CognitoID, Email[, FirstName, LastName])."""
    padded = [(*row, *(None,) * (len(TABLE_COLUMNS) - len(row))) for row in rows]
    frame = pd.DataFrame.from_records(padded, columns=TABLE_COLUMNS)
    frame["UserID"] = frame["UserID"].astype("int64")
    return frame.astype({c: "string" for c in TABLE_COLUMNS[1:]})


def plan(p: pd.DataFrame, t: pd.DataFrame, create_missing: bool = False) -> BackfillPlan:
    result = plan_backfill(p, t, create_missing=create_missing)
    assert list(result.writes.columns) == WRITE_COLUMNS
    assert list(result.creates.columns) == CREATE_COLUMNS
    assert list(result.issues.columns) == BACKFILL_ISSUE_COLUMNS
    assert set(result.counts) == set(BACKFILL_CATEGORIES)
    return result


def writes_of(result: BackfillPlan) -> dict[str, tuple[int, str, str]]:
    """sub -> (UserID, InternalUserID, matched_by) of every planned write."""
    return {
        sub: (int(user_id), iid_, by)
        for sub, user_id, iid_, by in result.writes[["sub", "UserID", "InternalUserID", "matched_by"]].itertuples(
            index=False, name=None
        )
    }


def reported(result: BackfillPlan) -> pd.DataFrame:
    """The issues of the three reported categories (test_a_clean_pool_has_no_issues checks there are no others)."""
    return result.issues[result.issues["category"].isin(["conflict", "unlinked", "missing_user"])]


def user_issues(result: BackfillPlan) -> dict[str, tuple[str, str]]:
    """sub -> (category, reason) of every pool user reported as an issue."""
    rows = reported(result)[reported(result)["sub"].notna()]
    assert not rows["sub"].duplicated().any()
    return {sub: (cat, why) for sub, cat, why in rows[["sub", "category", "reason"]].itertuples(index=False, name=None)}


def row_issues(result: BackfillPlan) -> dict[int, tuple[str, str]]:
    """UserID -> (category, reason) of every row reported without a pool user."""
    rows = reported(result)[reported(result)["sub"].isna()]
    assert not rows["UserID"].duplicated().any()
    return {
        int(uid): (cat, why)
        for uid, cat, why in rows[["UserID", "category", "reason"]].itertuples(index=False, name=None)
    }


def conflict(why: str) -> tuple[str, str]:
    return ("conflict", REASON[why])


# -- one world holding every case -------------------------------------------------------------

WORLD_POOL = [
    user("s-write", "w@x.com"),  # row 1 by sub (its e-mail differs): write
    user("s-mail", "  Mail@X.COM "),  # row 2 only by e-mail, other case and blanks: write
    user("s-done", "d@x.com", iid(3)),  # row 3 by sub, carries its id: done
    user("s-diff", "diff@x.com", iid(99)),  # row 4 by sub, carries another id: conflict
    user("s-inv", "inv@x.com", "legacy-1"),  # row 5 by sub, attribute not a UUID: conflict
    user("s-sh1", "sh1@x.com", iid(6)),  # row 6's id carried by two users: both conflicts
    user("s-sh2", "sh2@x.com", iid(6)),
    user("s-taken", "taken@x.com"),  # row 7 by sub, but s-carrier carries row 7's id: conflict
    user("s-carrier", "carrier@x.com", iid(7)),  # carries row 7's id, no sub/e-mail match: done
    user("s-claim", "claimed@x.com"),  # e-mail of row 8, which s-owner has by sub: conflict
    user("s-owner", "owner@x.com"),  # row 8 by sub: write
    user("s-pe1", "pe@x.com"),  # e-mail shared by two pool users (row 9 has it): both conflicts
    user("s-pe2", "PE@x.com"),
    user("s-re", "re@x.com"),  # rows 10 and 11 share that e-mail: conflict
    user("s-none", "none@x.com"),  # no row: unlinked
    user("s-unk", "unk@x.com", iid(98)),  # carries an id no row has: unlinked
    user("s-badrow", "badrow@x.com"),  # row 14 by sub, but the row's id is not a UUID: conflict
    user("s-unver", "unver@x.com", verified=False),  # row 16's e-mail, never verified: unlinked
    user("s-uncf", "uncf@x.com", status="UNCONFIRMED"),  # row 17's e-mail, a sign-up never confirmed: unlinked
    user("s-dis", "dis@x.com", enabled=False),  # row 18's e-mail, disabled: unlinked
    user("s-ext", "ext@x.com", status="EXTERNAL_PROVIDER"),  # row 19 by e-mail, a federated user: write
]
WORLD_TABLE = [
    (1, iid(1), "s-write", "w-row@x.com"),
    (2, iid(2), "old-sub-2", "mail@x.com"),
    (3, iid(3), "s-done", "d@x.com"),
    (4, iid(4), "s-diff", "diff@x.com"),
    (5, iid(5), "s-inv", "inv@x.com"),
    (6, iid(6), None, "six@x.com"),
    (7, iid(7), "s-taken", "taken@x.com"),
    (8, iid(8), "s-owner", "claimed@x.com"),
    (9, iid(9), None, "pe@x.com"),
    (10, iid(10), None, "re@x.com"),
    (11, iid(11), None, "RE@x.com"),
    (12, iid(12), None, "create@x.com", "Cre", "Ate"),
    (13, iid(13), None, None, "No", "Mail"),
    (14, "legacy-14", "s-badrow", "badrow@x.com"),
    (15, "legacy-15", None, "fifteen@x.com"),  # no user, and an id that is not a UUID: never created
    (16, iid(16), None, "unver@x.com"),
    (17, iid(17), None, "uncf@x.com"),
    (18, iid(18), None, "dis@x.com"),
    (19, iid(19), None, "ext@x.com"),
]


def email_refused(refusal: str) -> tuple[str, str]:
    """As the sync reports it: a conflict, never a link."""
    return ("conflict", REASON["email_refused"].format(refusal=refusal))


EXPECTED_USER_ISSUES = {
    "s-diff": conflict("different_id"),
    "s-inv": conflict("invalid_id"),
    "s-sh1": conflict("shared_id"),
    "s-sh2": conflict("shared_id"),
    "s-taken": conflict("id_taken"),
    "s-claim": conflict("row_claimed"),
    "s-pe1": conflict("pool_email_shared"),
    "s-pe2": conflict("pool_email_shared"),
    "s-re": conflict("row_email_shared"),
    "s-none": ("unlinked", REASON["no_row"]),
    "s-unk": ("unlinked", REASON["unknown_id"]),
    "s-badrow": conflict("row_invalid_id"),
    "s-unver": email_refused("e-mail not verified"),
    "s-uncf": email_refused("status UNCONFIRMED"),
    "s-dis": email_refused("user disabled"),
}
EXPECTED_ROW_ISSUES = {
    9: ("missing_user", REASON["email_taken"]),
    10: ("missing_user", REASON["email_taken"]),
    11: ("missing_user", REASON["email_taken"]),
    13: ("missing_user", REASON["no_email"]),
    15: ("missing_user", REASON["row_invalid_id"]),
    16: ("missing_user", REASON["email_taken"]),  # never created: the address belongs to a pool user
    17: ("missing_user", REASON["email_taken"]),
    18: ("missing_user", REASON["email_taken"]),
}


@pytest.mark.parametrize("create_missing", [False, True])
def test_every_category_and_reason_in_one_world(create_missing: bool) -> None:
    result = plan(pool(*WORLD_POOL), table(*WORLD_TABLE), create_missing)

    assert writes_of(result) == {
        "s-write": (1, iid(1), "sub"),
        "s-mail": (2, iid(2), "e-mail"),
        "s-owner": (8, iid(8), "sub"),
        "s-ext": (19, iid(19), "e-mail"),
    }
    assert user_issues(result) == EXPECTED_USER_ISSUES
    expected_rows = dict(EXPECTED_ROW_ISSUES)
    if create_missing:
        assert result.creates.astype(object).where(result.creates.notna(), None).to_dict("records") == [
            {
                "UserID": 12,
                "InternalUserID": iid(12),
                "CognitoID": None,
                "Email": "create@x.com",
                "FirstName": "Cre",
                "LastName": "Ate",
            }
        ]
    else:
        assert result.creates.empty
        expected_rows[12] = ("missing_user", REASON["no_user"])
    assert row_issues(result) == expected_rows
    assert result.counts == {
        "write": 4,
        "create": 1 if create_missing else 0,
        "done": 2,  # s-done, s-carrier
        "missing_user": len(expected_rows),
        "unlinked": 2,
        "conflict": 13,
    }
    assert result.billable_writes == len(result.writes) == 4


def reason_keys(result: BackfillPlan) -> set[str]:
    """The BACKFILL_REASON keys a plan reached: its issues' reasons, and write/done when it has any."""
    reasons = set(result.issues["reason"])
    keys = {key for key, text in REASON.items() if text in reasons}
    prefix = REASON["email_refused"].split("{")[0]
    keys |= {"email_refused"} if any(why.startswith(prefix) for why in reasons) else set()
    return keys | ({"write"} if len(result.writes) else set()) | ({"done"} if result.counts["done"] else set())


def test_the_world_reaches_every_reason() -> None:
    """Every reason the module names is reached by the world itself (one of them only without creating users)."""
    kept = plan(pool(*WORLD_POOL), table(*WORLD_TABLE), create_missing=False)
    created = plan(pool(*WORLD_POOL), table(*WORLD_TABLE), create_missing=True)
    assert reason_keys(kept) == set(REASON)
    assert set(REASON) - reason_keys(created) == {"no_user"}  # those rows are created instead


def test_issues_report_only_conflicts_unlinked_and_missing_users() -> None:
    result = plan(pool(*WORLD_POOL), table(*WORLD_TABLE))
    assert set(result.issues["category"]) == {"conflict", "unlinked", "missing_user"}


def test_a_clean_pool_has_no_issues() -> None:
    """Every user is a write or done: nothing to report (no user appears in the issues)."""
    result = plan(
        pool(user("s1", "a@x.com"), user("s2", "b@x.com", iid(2))),
        table((1, iid(1), "s1", "a@x.com"), (2, iid(2), "s2", "b@x.com")),
    )
    assert result.counts["write"] == 1 and result.counts["done"] == 1
    assert result.issues.empty, result.issues.to_dict("records")


# -- linking ----------------------------------------------------------------------------------


def test_link_by_sub_wins_over_email() -> None:
    """The user's e-mail is row 2's, but its sub is row 1's: row 1's id is written."""
    result = plan(
        pool(user("s1", "two@x.com")),
        table((1, iid(1), "s1", "one@x.com"), (2, iid(2), "other", "two@x.com")),
    )
    assert writes_of(result) == {"s1": (1, iid(1), "sub")}
    assert row_issues(result) == {2: ("missing_user", REASON["email_taken"])}


@pytest.mark.parametrize("pool_email", ["Ann@Example.COM", "  ann@example.com  ", "\tANN@EXAMPLE.COM"])
def test_email_match_is_case_insensitive_and_trimmed(pool_email: str) -> None:
    result = plan(pool(user("s1", pool_email)), table((1, iid(1), "stale", " ann@EXAMPLE.com")))
    assert writes_of(result) == {"s1": (1, iid(1), "e-mail")}
    assert reported(result).empty


def test_email_matching_several_rows_is_a_conflict() -> None:
    result = plan(pool(user("s1", "dup@x.com")), table((1, iid(1), None, "dup@x.com"), (2, iid(2), None, "DUP@x.com")))
    assert result.writes.empty
    assert user_issues(result) == {"s1": conflict("row_email_shared")}


def test_email_shared_by_several_pool_users_is_a_conflict_for_each() -> None:
    result = plan(pool(user("s1", "dup@x.com"), user("s2", " Dup@X.com")), table((1, iid(1), None, "dup@x.com")))
    assert result.writes.empty
    assert user_issues(result) == {"s1": conflict("pool_email_shared"), "s2": conflict("pool_email_shared")}
    assert result.creates.empty


def test_email_shared_with_a_user_linked_by_sub_only_conflicts_the_other() -> None:
    result = plan(pool(user("s1", "dup@x.com"), user("s2", "dup@x.com")), table((1, iid(1), "s1", "dup@x.com")))
    assert writes_of(result) == {"s1": (1, iid(1), "sub")}
    assert user_issues(result) == {"s2": conflict("pool_email_shared")}


def test_email_row_already_matched_by_sub_is_claimed() -> None:
    result = plan(
        pool(user("owner", "owner@x.com"), user("other", "row@x.com")),
        table((1, iid(1), "owner", "row@x.com")),
    )
    assert writes_of(result) == {"owner": (1, iid(1), "sub")}
    assert user_issues(result) == {"other": conflict("row_claimed")}


# -- ids the users already carry --------------------------------------------------------------


@pytest.mark.parametrize("carried", [iid(1), iid(1).upper(), f" {iid(1)} "])
def test_user_carrying_its_rows_id_is_done(carried: str) -> None:
    result = plan(pool(user("s1", "a@x.com", carried)), table((1, iid(1), "s1", "a@x.com")))
    assert result.writes.empty
    assert result.counts["done"] == 1
    assert reported(result).empty


@pytest.mark.parametrize("linked_by", ["sub", "e-mail"])
def test_user_carrying_another_id_is_a_conflict_never_a_write(linked_by: str) -> None:
    sub = "s1" if linked_by == "sub" else "stale"
    result = plan(pool(user("s1", "a@x.com", iid(50))), table((1, iid(1), sub, "A@x.com")))
    assert result.writes.empty
    assert result.creates.empty  # the row is represented, if only by a conflict
    assert user_issues(result) == {"s1": conflict("different_id")}
    issue = result.issues.iloc[0]
    assert issue["InternalUserID"] == iid(50) and issue["UserID"] == 1


@pytest.mark.parametrize("value", ["legacy-1", "not-a-uuid", iid(1)[:-1], "{" + iid(1) + "}"])
def test_invalid_uuid_attribute_is_a_conflict(value: str) -> None:
    result = plan(pool(user("s1", "a@x.com", value)), table((1, iid(1), "s1", "a@x.com")))
    assert result.writes.empty
    assert user_issues(result) == {"s1": conflict("invalid_id")}
    assert result.issues.iloc[0]["InternalUserID"] == value  # reported as Cognito holds it


def test_invalid_attribute_on_an_unlinked_user_is_still_a_conflict() -> None:
    result = plan(pool(user("s1", "a@x.com", "garbage")), table((1, iid(1), "zz", "b@x.com")))
    assert user_issues(result) == {"s1": conflict("invalid_id")}


def test_blank_attribute_counts_as_missing() -> None:
    result = plan(pool(user("s1", "a@x.com", "  ")), table((1, iid(1), "s1", "a@x.com")))
    assert writes_of(result) == {"s1": (1, iid(1), "sub")}


def test_id_carried_by_two_pool_users_is_a_conflict_for_both_even_the_linked_one() -> None:
    result = plan(
        pool(user("s1", "a@x.com", iid(1)), user("s2", "b@x.com", iid(1).upper())),
        table((1, iid(1), "s1", "a@x.com"), (2, iid(2), "s2", "b@x.com")),
    )
    assert result.writes.empty
    assert user_issues(result) == {"s1": conflict("shared_id"), "s2": conflict("shared_id")}
    assert result.counts["done"] == 0


def test_rows_id_already_carried_by_another_user_is_id_taken() -> None:
    result = plan(
        pool(user("linked", "a@x.com"), user("carrier", "c@x.com", iid(1))),
        table((1, iid(1), "linked", "a@x.com")),
    )
    assert result.writes.empty  # two users with one id would follow
    assert user_issues(result) == {"linked": conflict("id_taken")}
    assert result.counts["done"] == 1  # the carrier


def test_user_with_an_id_known_to_the_table_but_no_match_is_done() -> None:
    result = plan(pool(user("new-sub", "new@x.com", iid(1))), table((1, iid(1), "old-sub", "old@x.com")))
    assert result.writes.empty and result.creates.empty
    assert result.counts["done"] == 1
    assert row_issues(result) == {}  # its row is represented by the id


def test_user_with_an_unknown_id_is_unlinked() -> None:
    result = plan(pool(user("s1", "a@x.com", iid(77))), table((1, iid(1), "zz", "b@x.com")), create_missing=True)
    assert user_issues(result) == {"s1": ("unlinked", REASON["unknown_id"])}
    assert result.issues.set_index("sub").loc["s1", "InternalUserID"] == iid(77)


def test_user_without_sub_or_email_match_is_unlinked() -> None:
    result = plan(pool(user("s1", "a@x.com"), user("s2", None)), table((1, iid(1), "zz", "b@x.com")))
    assert user_issues(result) == {"s1": ("unlinked", REASON["no_row"]), "s2": ("unlinked", REASON["no_row"])}


# -- rows without a user ----------------------------------------------------------------------


def test_rows_without_a_user_are_missing_users_unless_created() -> None:
    t = table((1, iid(1), "gone", "one@x.com", "One", None), (2, iid(2), None, "Two@X.com", None, "Two"))
    kept = plan(pool(), t, create_missing=False)
    assert kept.creates.empty
    assert row_issues(kept) == {1: ("missing_user", REASON["no_user"]), 2: ("missing_user", REASON["no_user"])}
    assert kept.counts["missing_user"] == 2 and kept.counts["create"] == 0
    assert set(kept.issues["InternalUserID"]) == {iid(1), iid(2)}

    created = plan(pool(), t, create_missing=True)
    assert created.creates.astype(object).where(created.creates.notna(), None).to_dict("records") == [
        {"UserID": 1, "InternalUserID": iid(1), "CognitoID": "gone", "Email": "one@x.com", "FirstName": "One"}
        | {"LastName": None},
        {"UserID": 2, "InternalUserID": iid(2), "CognitoID": None, "Email": "Two@X.com", "FirstName": None}
        | {"LastName": "Two"},
    ]
    assert reported(created).empty and created.counts["create"] == 2 and created.counts["missing_user"] == 0
    assert created.billable_writes == 0  # creations are not attribute writes


def test_created_users_carry_the_lower_case_id() -> None:
    created = plan(pool(), table((1, iid(1).upper(), None, "one@x.com")), create_missing=True)
    assert list(created.creates["InternalUserID"]) == [iid(1)]


@pytest.mark.parametrize("create_missing", [False, True])
def test_rows_without_email_or_whose_email_a_pool_user_has_are_never_created(create_missing: bool) -> None:
    result = plan(
        pool(user("s2", "dup@x.com"), user("s3", "DUP@x.com"), user("s4", "Twin@x.com")),
        table(
            (1, iid(1), None, None),
            (2, iid(2), None, "  "),
            (3, iid(3), None, "dup@x.com"),  # two pool users have it: neither links it
            (4, iid(4), None, "twin@x.com"),  # two rows have it: s4 links neither
            (5, iid(5), None, "TWIN@x.com"),
            (6, iid(6), None, "free@x.com"),
        ),
        create_missing=create_missing,
    )
    expected = {
        1: ("missing_user", REASON["no_email"]),
        2: ("missing_user", REASON["no_email"]),
        3: ("missing_user", REASON["email_taken"]),
        4: ("missing_user", REASON["email_taken"]),
        5: ("missing_user", REASON["email_taken"]),
    }
    if create_missing:
        assert list(result.creates["UserID"]) == [6]
    else:
        assert result.creates.empty
        expected[6] = ("missing_user", REASON["no_user"])
    assert row_issues(result) == expected
    assert result.counts["missing_user"] == len(expected)


def test_billable_writes_is_the_number_of_writes() -> None:
    users = [user(f"s{n}", f"u{n}@x.com") for n in range(7)]
    rows = [(n, iid(n), f"s{n}", f"u{n}@x.com") for n in range(7)]
    result = plan(pool(*users, user("s-done", "d@x.com", iid(100))), table(*rows, (100, iid(100), "s-done", "d@x.com")))
    assert result.billable_writes == len(result.writes) == result.counts["write"] == 7


def test_every_planned_write_carries_a_valid_lower_case_uuid() -> None:
    """A row whose InternalUserID is not a UUID must never become a write of a missing value."""
    result = plan(pool(user("s1", "a@x.com")), table((1, "legacy-id", "s1", "a@x.com")))
    assert result.writes["InternalUserID"].notna().all(), result.writes.to_dict("records")
    assert result.writes["InternalUserID"].str.fullmatch(UUID_PATTERN).all()


def test_rows_whose_id_is_not_a_uuid_are_neither_written_nor_created() -> None:
    result = plan(
        pool(user("s1", "a@x.com")),
        table((1, "legacy-id", "s1", "a@x.com"), (2, "legacy-2", None, "b@x.com")),
        create_missing=True,
    )
    assert result.writes.empty and result.creates.empty
    assert user_issues(result) == {"s1": conflict("row_invalid_id")}
    assert row_issues(result) == {2: ("missing_user", REASON["row_invalid_id"])}


def test_pool_and_table_are_not_modified() -> None:
    p, t = pool(*WORLD_POOL), table(*WORLD_TABLE)
    p_before, t_before = p.copy(), t.copy()
    plan(p, t, create_missing=True)
    pd.testing.assert_frame_equal(p, p_before)
    pd.testing.assert_frame_equal(t, t_before)


# -- helpers ----------------------------------------------------------------------------------


def test_simulate_missing_ids_fills_only_nulls_with_lower_case_uuid4() -> None:
    t = table(
        (1, None, "a", "a@x.com"), (2, iid(2), "b", "b@x.com"), (3, None, None, None), (4, iid(4).upper(), None, None)
    )
    before = t.copy()
    filled = simulate_missing_ids(t)
    pd.testing.assert_frame_equal(t, before)  # the input is left alone
    assert filled["InternalUserID"].notna().all()
    assert filled.loc[1, "InternalUserID"] == iid(2) and filled.loc[3, "InternalUserID"] == iid(4).upper()
    new = list(filled.loc[[0, 2], "InternalUserID"])
    for value in new:
        assert value == value.lower() and uuid.UUID(value).version == 4 and str(uuid.UUID(value)) == value
    assert len(set(new)) == 2
    pd.testing.assert_frame_equal(filled.drop(columns="InternalUserID"), t.drop(columns="InternalUserID"))
    assert filled["InternalUserID"].dtype == "string"


def test_simulate_missing_ids_on_an_empty_or_complete_table() -> None:
    assert simulate_missing_ids(table()).empty
    complete = table((1, iid(1), None, None))
    pd.testing.assert_frame_equal(simulate_missing_ids(complete), complete)


@pytest.mark.parametrize("rows", [1, 2, 3, 4, 5, 7, 8, 9, 10, 13, 16, 17, 100, 101])
@pytest.mark.parametrize("chunks", [1, 2, 3, 4, 7])
def test_chunk_frame_covers_every_row_once_in_at_most_n_parts(rows: int, chunks: int) -> None:
    frame = pd.DataFrame({"n": range(rows)}, index=range(1000, 1000 + rows))
    parts = chunk_frame(frame, chunks)
    assert 1 <= len(parts) <= chunks
    assert all(len(part) > 0 for part in parts)
    assert max(len(part) for part in parts) == math.ceil(rows / chunks)  # no part longer than needed
    pd.testing.assert_frame_equal(pd.concat(parts), frame)  # every row once, in order


def test_chunk_frame_of_nothing_is_no_chunk() -> None:
    assert chunk_frame(pd.DataFrame({"n": []}), 4) == []


def test_chunk_frame_even_split() -> None:
    assert [len(p) for p in chunk_frame(pd.DataFrame({"n": range(100)}), 4)] == [25, 25, 25, 25]
    assert [len(p) for p in chunk_frame(pd.DataFrame({"n": range(3)}), 4)] == [1, 1, 1]


def test_id_coverage() -> None:
    p = pool(
        user("a", "a@x.com", iid(1)),
        user("b", "b@x.com", iid(2).upper()),  # valid once normalised
        user("c", "c@x.com", "legacy"),
        user("d", "d@x.com", None),
    )
    assert id_coverage(p) == {"pool_users": 4, "with_valid_id": 2, "share": 0.5}
    assert id_coverage(pool(user("a", None, iid(1)))) == {"pool_users": 1, "with_valid_id": 1, "share": 1.0}
    assert id_coverage(pool()) == {"pool_users": 0, "with_valid_id": 0, "share": 1.0}
    third = pool(user("a", None, iid(1)), user("b", None), user("c", None))
    assert id_coverage(third)["share"] == 0.3333


# -- who may be linked by e-mail (issue 7, item 3) ----------------------------------------------


@pytest.mark.parametrize(
    ("kind", "refusal"),
    [
        ({"verified": False}, "e-mail not verified"),
        ({"status": "UNCONFIRMED"}, "status UNCONFIRMED"),
        ({"status": "FORCE_CHANGE_PASSWORD"}, "status FORCE_CHANGE_PASSWORD"),
        ({"status": "RESET_REQUIRED"}, "status RESET_REQUIRED"),
        ({"enabled": False}, "user disabled"),
    ],
)
@pytest.mark.parametrize("create_missing", [False, True])
def test_only_a_verified_confirmed_enabled_user_is_linked_by_email(
    kind: dict[str, Any], refusal: str, create_missing: bool
) -> None:
    """A self-sign-up with a victim's address must not receive the victim's id, nor get a twin created."""
    result = plan(pool(user("intruder", "Victim@x.com", **kind)), table((1, iid(1), "old-sub", "victim@x.com")))
    assert result.writes.empty and result.creates.empty
    assert user_issues(result) == {"intruder": email_refused(refusal)}
    assert row_issues(result) == {1: ("missing_user", REASON["email_taken"])}


def test_an_unverified_user_linked_by_sub_is_still_written() -> None:
    """The sub is the pool's own link to the row: verification only guards the e-mail fallback."""
    result = plan(pool(user("s1", "a@x.com", verified=False, status="UNCONFIRMED")), table((1, iid(1), "s1", None)))
    assert writes_of(result) == {"s1": (1, iid(1), "sub")}


def test_a_federated_user_with_a_verified_email_is_linked_by_email() -> None:
    result = plan(pool(user("fed", "f@x.com", status="EXTERNAL_PROVIDER")), table((1, iid(1), None, "F@x.com")))
    assert writes_of(result) == {"fed": (1, iid(1), "e-mail")}


# -- rows changed between the plan and the write --------------------------------------------------


def test_changed_since_plan_for_attribute_writes() -> None:
    planned = plan(
        pool(*(user(f"s{n}", f"u{n}@x.com") for n in range(6))),
        table(*((n, iid(n), f"s{n}" if n < 3 else f"stale-{n}", f"u{n}@x.com") for n in range(6))),
    ).writes
    current = table(
        (0, iid(0), "s0", "u0@x.com"),  # unchanged
        (1, iid(1), "other-sub", "u1@x.com"),  # relinked to another user: changed
        (2, iid(50), "s2", "u2@x.com"),  # another id: changed
        (3, iid(3), "stale-3", "U3@X.com"),  # matched by e-mail, only its case changed: unchanged
        (4, iid(4), "s4", "new4@x.com"),  # matched by e-mail, then linked to this user by sub: unchanged
        # row 5 deleted: changed
    )
    changed = changed_since_plan(planned, current, "write")
    assert dict(zip(planned["sub"], changed, strict=True)) == {
        "s0": False,
        "s1": True,
        "s2": True,
        "s3": False,
        "s4": False,
        "s5": True,
    }


def test_changed_since_plan_for_creations() -> None:
    planned = plan(pool(), table(*((n, iid(n), None, f"u{n}@x.com") for n in range(4))), create_missing=True).creates
    current = table(
        (0, iid(0), None, "u0@x.com"),
        (1, iid(1), "a-sub", "u1@x.com"),  # linked meanwhile: a creation would make a second user
        (2, iid(2), None, "U2@x.com"),  # the e-mail to create the user with changed
        (3, None, None, "u3@x.com"),
    )
    assert list(changed_since_plan(planned, current, "create")) == [False, True, True, True]
