"""reconcile.plan_changes: one test per category and per conflict reason, on hand-built frames.

Every test asserts the exact plan: which rows change, their old and new values, the
category and reason, and the counts. Nothing here touches a database.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from identity_sync.extract import records_frame
from identity_sync.identity import ColumnLimit, limit_refusals, shared_values
from identity_sync.matching import NORMALISED_POOL_COLUMNS, POOL_COLUMNS, email_link_refusals, normalise
from identity_sync.reconcile import CATEGORIES, SYNC_REASON, plan_changes


def uid(n: int) -> str:
    """A valid, lower-case InternalUserID that is easy to read in a failure."""
    return f"{n:08x}-0000-4000-8000-{n:012x}"


U1, U2, U3, U4, U5, U6, U7 = (uid(n) for n in range(1, 8))


def pool(*users: dict[str, Any]) -> pd.DataFrame:
    """A pool frame as extract.pool_frame builds it; each user is a dict of the columns it sets."""
    records = []
    for user in users:
        record = {
            "sub": None,
            "username": None,
            "email": None,
            "internal_user_id": None,
            "status": "CONFIRMED",
            "enabled": True,
            "email_verified": True,
            "given_name": "Given",
            "family_name": "Family",
        }
        record.update(user)
        if record["username"] is None:
            record["username"] = f"user-{record['sub']}"
        records.append(record)
    frame = records_frame(records)
    assert list(frame.columns) == POOL_COLUMNS
    return frame


def user(sub: str, email: str | None = None, iid: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"sub": sub, "email": email, "internal_user_id": iid, **extra}


def table(*rows: tuple[int, str | None, str | None, str | None]) -> pd.DataFrame:
    """Rows of (UserID, InternalUserID, CognitoID, Email), typed as UsersTable.read() types them."""
    frame = pd.DataFrame.from_records(list(rows), columns=["UserID", "InternalUserID", "CognitoID", "Email"])
    frame["UserID"] = frame["UserID"].astype("int64")
    for column in ["InternalUserID", "CognitoID", "Email"]:
        frame[column] = frame[column].astype("string")
    return frame


def na_to_none(value: Any) -> Any:
    """Missing as None, numpy integers as int (so that tuples sort and print alike)."""
    if isinstance(value, np.integer):
        return int(value)
    return None if value is None or value is pd.NA or (isinstance(value, float) and pd.isna(value)) else value


def change_tuples(plan) -> list[tuple[Any, ...]]:
    """(UserID, InternalUserID, sub, column, old, new, category, reason), sorted."""
    rows = [
        tuple(na_to_none(v) for v in row)
        for row in plan.changes[
            ["UserID", "InternalUserID", "sub", "column", "old", "new", "category", "reason"]
        ].itertuples(index=False, name=None)
    ]
    return sorted(rows, key=repr)


def insert_tuples(plan) -> list[tuple[Any, ...]]:
    rows = [tuple(na_to_none(v) for v in row) for row in plan.inserts.itertuples(index=False, name=None)]
    return sorted(rows, key=repr)


def issue_tuples(plan, *columns: str, stale: bool = False) -> list[tuple[Any, ...]]:
    """Issues as (sub, UserID, category, reason) by default, sorted; stale rows kept only when asked."""
    columns = columns or ("sub", "UserID", "category", "reason")
    issues = plan.issues if stale else plan.issues[plan.issues["category"] != "stale"]
    rows = [tuple(na_to_none(v) for v in row) for row in issues[list(columns)].itertuples(index=False, name=None)]
    return sorted(rows, key=repr)


def row_of_conflict(reason_key: str) -> str:
    """The reason of a row whose pool user is in conflict for ``reason_key``."""
    return SYNC_REASON["row_of_conflict"].format(SYNC_REASON[reason_key])


def counts(**nonzero: int) -> dict[str, int]:
    expected = dict.fromkeys(CATEGORIES, 0)
    expected.update(nonzero)
    return expected


# --- relink and UUID handling ------------------------------------------------------------


def test_relink_same_internal_id_new_sub() -> None:
    plan = plan_changes(pool(user("sub-1", "a@x.io", U1)), table((10, U1, "prod-1", "a@x.io")))

    assert change_tuples(plan) == [
        (10, U1, "sub-1", "CognitoID", "prod-1", "sub-1", "relink", SYNC_REASON["relink"]),
    ]
    assert plan.inserts.empty
    assert plan.issues.empty
    assert plan.counts == counts(relink=1)
    assert plan.metrics == {
        "pool_users": 1,
        "table_rows": 1,
        "matched_pool_users": 1,
        "cognito_id_changes": 1,
        "needs_backfill": 0,
        "rows_to_write": 1,
    }
    assert plan.rows_to_write == 1


def test_relink_of_a_row_without_cognito_id() -> None:
    plan = plan_changes(pool(user("sub-1", "a@x.io", U1)), table((10, U1, None, "a@x.io")))

    assert change_tuples(plan) == [(10, U1, "sub-1", "CognitoID", None, "sub-1", "relink", SYNC_REASON["relink"])]
    assert plan.counts == counts(relink=1)


@pytest.mark.parametrize(
    ("pool_id", "row_id"),
    [
        (U1.upper(), U1),
        (f"  {U1.upper()} ", U1),
        (U1, U1.upper()),
    ],
    ids=["upper-pool", "padded-upper-pool", "upper-row"],
)
def test_uuids_compare_case_insensitively(pool_id: str, row_id: str) -> None:
    plan = plan_changes(pool(user("sub-1", "a@x.io", pool_id)), table((10, row_id, "prod-1", "a@x.io")))

    # Matched by id: a relink of the existing row, never an insert of a second row.
    assert change_tuples(plan) == [
        (10, row_id, "sub-1", "CognitoID", "prod-1", "sub-1", "relink", SYNC_REASON["relink"])
    ]
    assert plan.inserts.empty
    assert plan.issues.empty
    assert plan.counts == counts(relink=1)


def test_insert_stores_the_uuid_lower_case() -> None:
    plan = plan_changes(
        pool(user("sub-1", "  New.User@X.io ", f" {U1.upper()} ", given_name="Ada", family_name="Lovelace")),
        table((10, U2, "prod-2", "b@x.io")),
    )

    assert insert_tuples(plan) == [(U1, "sub-1", "New.User@X.io", "Ada", "Lovelace")]
    assert plan.changes.empty
    assert plan.counts == counts(insert=1, stale=1)
    assert plan.metrics["rows_to_write"] == 1


def test_unchanged_users_count_and_write_nothing() -> None:
    plan = plan_changes(
        pool(
            user("sub-1", "a@x.io", U1),
            user("sub-2", "B@X.io", U2.upper()),  # case differences only, on both keys
            user("sub-3", "c@x.io"),  # no attribute, already linked by e-mail
        ),
        table((10, U1, "sub-1", "a@x.io"), (11, U2, "sub-2", "b@x.io"), (12, None, "sub-3", "C@x.io")),
    )

    assert plan.changes.empty
    assert plan.inserts.empty
    assert plan.issues.empty
    assert plan.counts == counts(unchanged=3)
    assert plan.metrics["matched_pool_users"] == 3
    assert plan.metrics["needs_backfill"] == 1
    assert plan.rows_to_write == 0


# --- e-mails -----------------------------------------------------------------------------


def test_email_update_beyond_case() -> None:
    plan = plan_changes(pool(user("sub-1", " New@X.io ", U1)), table((10, U1, "sub-1", "old@x.io")))

    assert change_tuples(plan) == [
        (10, U1, "sub-1", "Email", "old@x.io", "New@X.io", "email_update", SYNC_REASON["email_update"]),
    ]
    assert plan.counts == counts(email_update=1)
    assert plan.metrics["cognito_id_changes"] == 0


def test_relink_and_email_update_of_one_row() -> None:
    plan = plan_changes(pool(user("sub-1", "new@x.io", U1)), table((10, U1, "prod-1", "old@x.io")))

    assert change_tuples(plan) == [
        (10, U1, "sub-1", "CognitoID", "prod-1", "sub-1", "relink", SYNC_REASON["relink"]),
        (10, U1, "sub-1", "Email", "old@x.io", "new@x.io", "email_update", SYNC_REASON["email_update"]),
    ]
    assert plan.counts == counts(relink=1, email_update=1)
    assert plan.rows_to_write == 1


def test_email_case_mismatch_is_not_an_email_update() -> None:
    """Old helper failure 3, on the id path: 'Alice@X.io' vs 'alice@x.io' is the same e-mail."""
    plan = plan_changes(pool(user("sub-1", " Alice@X.IO", U1)), table((10, U1, "prod-1", "alice@x.io")))

    assert change_tuples(plan) == [(10, U1, "sub-1", "CognitoID", "prod-1", "sub-1", "relink", SYNC_REASON["relink"])]
    assert plan.counts == counts(relink=1)


def test_user_without_email_keeps_the_row_email() -> None:
    plan = plan_changes(pool(user("sub-1", None, U1)), table((10, U1, "sub-1", "a@x.io")))

    assert plan.changes.empty
    assert plan.counts == counts(unchanged=1)


def test_email_fallback_matches_case_insensitively_and_trimmed() -> None:
    """Old helper failure 3, on the e-mail path: the fallback still links despite case and blanks."""
    plan = plan_changes(pool(user("sub-1", "  Alice@Example.COM ")), table((10, U1, "prod-1", "alice@example.com")))

    assert change_tuples(plan) == [
        (10, U1, "sub-1", "CognitoID", "prod-1", "sub-1", "email_fallback", SYNC_REASON["email_fallback"]),
    ]
    assert plan.issues.empty
    assert plan.counts == counts(email_fallback=1)
    assert plan.metrics["needs_backfill"] == 1
    assert plan.metrics["matched_pool_users"] == 1
    assert plan.metrics["cognito_id_changes"] == 1


def test_email_fallback_never_rewrites_the_email() -> None:
    plan = plan_changes(pool(user("sub-1", "ALICE@x.io")), table((10, None, None, "alice@x.io")))

    assert change_tuples(plan) == [
        (10, None, "sub-1", "CognitoID", None, "sub-1", "email_fallback", SYNC_REASON["email_fallback"]),
    ]


@pytest.mark.parametrize("attribute", [None, "", "   "], ids=["absent", "empty", "blank"])
def test_blank_attribute_counts_as_no_attribute(attribute: str | None) -> None:
    plan = plan_changes(pool(user("sub-1", "a@x.io", attribute)), table((10, U1, "prod-1", "a@x.io")))

    assert change_tuples(plan) == [
        (10, U1, "sub-1", "CognitoID", "prod-1", "sub-1", "email_fallback", SYNC_REASON["email_fallback"]),
    ]


# --- the three failures of the old e-mail helper --------------------------------------------


def test_dev_only_user_missing_from_prod_snapshot_is_inserted() -> None:
    """Old helper failure 1: dev was restored from prod, which never had this dev user."""
    restored_from_prod = table((1, U1, "prod-sub-1", "shared@x.io"))
    dev_pool = pool(user("dev-sub-1", "shared@x.io", U1), user("dev-sub-9", "tester@x.io", U7))

    plan = plan_changes(dev_pool, restored_from_prod)

    assert insert_tuples(plan) == [(U7, "dev-sub-9", "tester@x.io", "Given", "Family")]
    assert change_tuples(plan) == [
        (1, U1, "dev-sub-1", "CognitoID", "prod-sub-1", "dev-sub-1", "relink", SYNC_REASON["relink"])
    ]
    assert plan.counts == counts(relink=1, insert=1)


@pytest.mark.parametrize("policy", ["keep", "clear"])
def test_prod_user_without_dev_account_is_stale(policy: str) -> None:
    """Old helper failure 2: a prod row whose person has no dev account."""
    restored_from_prod = table((1, U1, "prod-sub-1", "a@x.io"), (2, U2, "prod-sub-2", "prod.only@x.io"))
    dev_pool = pool(user("dev-sub-1", "a@x.io", U1))

    plan = plan_changes(dev_pool, restored_from_prod, stale_policy=policy)

    relink = (1, U1, "dev-sub-1", "CognitoID", "prod-sub-1", "dev-sub-1", "relink", SYNC_REASON["relink"])
    if policy == "clear":
        assert change_tuples(plan) == sorted(
            [relink, (2, U2, None, "CognitoID", "prod-sub-2", None, "stale", SYNC_REASON["stale_clear"])], key=repr
        )
        assert plan.issues.empty
        assert plan.metrics["cognito_id_changes"] == 2
        assert plan.rows_to_write == 2
    else:
        assert change_tuples(plan) == [relink]
        assert issue_tuples(plan, "sub", "UserID", "InternalUserID", "email", "category", "reason", stale=True) == [
            (None, 2, U2, "prod.only@x.io", "stale", SYNC_REASON["stale_keep"]),
        ]
        assert plan.metrics["cognito_id_changes"] == 1
        assert plan.rows_to_write == 1
    assert plan.counts == counts(relink=1, stale=1)


@pytest.mark.parametrize("policy", ["keep", "clear"])
@pytest.mark.parametrize("owner", ["unlinked-user", "user-with-another-id"])
def test_stale_row_whose_cognito_id_is_still_a_pool_sub_is_not_cleared(policy: str, owner: str) -> None:
    """Row 2 is linked to nobody, but its CognitoID is a live sub: not stale, never cleared."""
    if owner == "unlinked-user":
        sub_2 = user("sub-2", "nobody@x.io")  # no attribute, no row with this e-mail
        expected_issues = [("sub-2", None, "unlinked", SYNC_REASON["unlinked_no_row"])]
        expected = counts(unlinked=1, unchanged=1)
    else:
        sub_2 = user("sub-2", "other@x.io", U3)  # U3 is in no row: its insert collides with row 2
        expected_issues = [("sub-2", None, "conflict", SYNC_REASON["cognito_collision"])]
        expected = counts(conflict=1, unchanged=1)

    plan = plan_changes(
        pool(user("sub-1", "a@x.io", U1), sub_2),
        table((1, U1, "sub-1", "a@x.io"), (2, U2, "sub-2", "b@x.io")),
        stale_policy=policy,
    )

    assert plan.changes.empty
    assert plan.inserts.empty
    assert issue_tuples(plan, stale=True) == expected_issues
    assert plan.counts == expected


def test_row_without_cognito_id_is_not_stale() -> None:
    plan = plan_changes(pool(user("sub-1", "a@x.io", U1)), table((1, U1, "sub-1", "a@x.io"), (2, U2, None, "b@x.io")))

    assert plan.counts == counts(unchanged=1)
    assert plan.issues.empty


def test_stale_policy_must_be_keep_or_clear() -> None:
    with pytest.raises(ValueError, match="stale_policy"):
        plan_changes(pool(), table(), stale_policy="delete")


# --- unlinked ------------------------------------------------------------------------------


def test_unlinked_without_attribute_and_email() -> None:
    plan = plan_changes(pool(user("sub-1", None), user("sub-2", "   ")), table((1, U1, "sub-9", "a@x.io")))

    assert issue_tuples(plan) == [
        ("sub-1", None, "unlinked", SYNC_REASON["unlinked_no_email"]),
        ("sub-2", None, "unlinked", SYNC_REASON["unlinked_no_email"]),
    ]
    assert plan.changes.empty
    assert plan.counts == counts(unlinked=2, stale=1)


def test_unlinked_without_attribute_and_matching_row() -> None:
    plan = plan_changes(pool(user("sub-1", "nobody@x.io")), table((1, U1, "sub-1-old", "a@x.io")))

    assert issue_tuples(plan, "sub", "email", "category", "reason") == [
        ("sub-1", "nobody@x.io", "unlinked", SYNC_REASON["unlinked_no_row"]),
    ]
    assert plan.inserts.empty
    assert plan.counts == counts(unlinked=1, stale=1)


# --- conflicts -------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["not-a-uuid", U1[:-1], U1 + "0", "{" + U1 + "}"])
def test_invalid_id_attribute_is_a_conflict(value: str) -> None:
    # The e-mail matches a row, but a user carrying a (bad) attribute never falls back to it.
    plan = plan_changes(pool(user("sub-1", "a@x.io", value)), table((1, U1, "prod-1", "a@x.io")))

    assert issue_tuples(plan, "sub", "InternalUserID", "category", "reason") == [
        ("sub-1", value, "conflict", SYNC_REASON["invalid_id"]),
    ]
    assert plan.changes.empty
    assert plan.inserts.empty
    assert plan.counts == counts(conflict=1, stale=1)  # row 1 holds prod-1, which is no pool sub
    assert plan.metrics["matched_pool_users"] == 0


def test_invalid_id_row_is_stale_under_clear() -> None:
    plan = plan_changes(
        pool(user("sub-1", "a@x.io", "not-a-uuid")), table((1, U1, "prod-1", "a@x.io")), stale_policy="clear"
    )

    assert change_tuples(plan) == [(1, U1, None, "CognitoID", "prod-1", None, "stale", SYNC_REASON["stale_clear"])]
    assert plan.counts == counts(conflict=1, stale=1)


@pytest.mark.parametrize("in_table", [True, False], ids=["row-exists", "row-absent"])
def test_two_pool_users_with_one_id_are_both_conflicts(in_table: bool) -> None:
    rows = [(1, U1, "prod-1", "a@x.io")] if in_table else []
    rows.append((2, U2, "sub-9", "z@x.io"))
    plan = plan_changes(
        pool(user("sub-1", "a@x.io", U1), user("sub-2", "b@x.io", U1.upper()), user("sub-9", "z@x.io", U2)),
        table(*rows),
    )

    # Row 1 is U1's: its users are in conflict, so it is too (not "stale: no user in the pool").
    row_1 = [("sub-1", U1, "conflict", row_of_conflict("duplicate_id"))] if in_table else []
    assert issue_tuples(plan, "sub", "InternalUserID", "category", "reason", stale=True) == sorted(
        [
            ("sub-1", U1, "conflict", SYNC_REASON["duplicate_id"]),
            ("sub-2", U1.upper(), "conflict", SYNC_REASON["duplicate_id"]),
            *row_1,
        ],
        key=repr,
    )
    assert plan.changes.empty
    assert plan.inserts.empty
    assert plan.counts == counts(conflict=3 if in_table else 2, unchanged=1)


def test_id_on_several_rows_is_a_conflict() -> None:
    plan = plan_changes(
        pool(user("sub-1", "a@x.io", U1)),
        table((1, U1, "prod-1", "a@x.io"), (2, U1.upper(), "prod-2", "b@x.io")),
    )

    assert issue_tuples(plan, stale=True) == [
        ("sub-1", 1, "conflict", row_of_conflict("duplicate_row_id")),
        ("sub-1", 2, "conflict", row_of_conflict("duplicate_row_id")),
        ("sub-1", None, "conflict", SYNC_REASON["duplicate_row_id"]),
    ]
    assert plan.inserts.empty
    assert plan.changes.empty
    assert plan.counts == counts(conflict=3)


def test_email_shared_by_pool_users_without_attribute_is_a_conflict() -> None:
    plan = plan_changes(
        pool(user("sub-1", "a@x.io"), user("sub-2", " A@X.io "), user("sub-3", "c@x.io")),
        table((1, U1, "prod-1", "a@x.io"), (2, U3, "sub-3", "c@x.io")),
    )

    assert issue_tuples(plan, "sub", "UserID", "email", "category", "reason", stale=True) == [
        ("sub-1", 1, "a@x.io", "conflict", row_of_conflict("pool_email_shared")),
        ("sub-1", None, "a@x.io", "conflict", SYNC_REASON["pool_email_shared"]),
        ("sub-2", None, "A@X.io", "conflict", SYNC_REASON["pool_email_shared"]),
    ]
    assert plan.changes.empty
    assert plan.counts == counts(conflict=3, unchanged=1)


def test_email_shared_with_a_keyed_pool_user_blocks_the_fallback_and_the_insert() -> None:
    plan = plan_changes(
        pool(user("sub-1", "a@x.io"), user("sub-2", "A@x.io", U2)),
        table((1, U1, "prod-1", "a@x.io")),
    )

    assert issue_tuples(plan, stale=True) == [
        ("sub-1", 1, "conflict", row_of_conflict("pool_email_shared")),
        ("sub-1", None, "conflict", SYNC_REASON["pool_email_shared"]),
        ("sub-2", None, "conflict", SYNC_REASON["pool_email_shared"]),
    ]
    assert plan.changes.empty
    assert plan.inserts.empty
    assert plan.counts == counts(conflict=3)


def test_email_update_to_an_email_shared_in_the_pool_is_a_conflict_but_the_relink_applies() -> None:
    plan = plan_changes(
        pool(user("sub-1", "shared@x.io", U1), user("sub-2", "shared@x.io", U2)),
        table((1, U1, "prod-1", "one@x.io"), (2, U2, "sub-2", "two@x.io")),
    )

    assert change_tuples(plan) == [(1, U1, "sub-1", "CognitoID", "prod-1", "sub-1", "relink", SYNC_REASON["relink"])]
    assert issue_tuples(plan) == [
        ("sub-1", 1, "conflict", SYNC_REASON["pool_email_shared"]),
        ("sub-2", 2, "conflict", SYNC_REASON["pool_email_shared"]),
    ]
    assert plan.counts == counts(relink=1, conflict=2)


def test_email_matching_several_rows_is_a_conflict() -> None:
    # Two rows whose e-mails differ only by blanks and case (a restored table can hold both).
    plan = plan_changes(
        pool(user("sub-1", "a@x.io")),
        table((1, U1, "prod-1", " a@x.io"), (2, U2, "prod-2", "A@x.io")),
    )

    assert issue_tuples(plan, stale=True) == [
        ("sub-1", 1, "conflict", row_of_conflict("row_email_shared")),
        ("sub-1", 2, "conflict", row_of_conflict("row_email_shared")),
        ("sub-1", None, "conflict", SYNC_REASON["row_email_shared"]),
    ]
    assert plan.changes.empty
    assert plan.counts == counts(conflict=3)


def test_email_matching_a_row_linked_by_id_to_another_user_is_row_taken() -> None:
    plan = plan_changes(
        pool(user("sub-1", "a@x.io", U1), user("sub-2", "A@x.io ")),
        table((1, U1, "prod-1", "a@x.io")),
    )

    # The e-mail is shared by both pool users, so that reason wins; make them differ to reach row_taken.
    assert set(plan.issues["reason"]) == {SYNC_REASON["pool_email_shared"]}

    plan = plan_changes(
        pool(user("sub-1", "new@x.io", U1), user("sub-2", "A@x.io ")),
        table((1, U1, "prod-1", "a@x.io")),
    )

    assert issue_tuples(plan, "sub", "UserID", "InternalUserID", "category", "reason") == [
        ("sub-2", 1, None, "conflict", SYNC_REASON["row_taken"]),
    ]
    assert change_tuples(plan) == [
        (1, U1, "sub-1", "CognitoID", "prod-1", "sub-1", "relink", SYNC_REASON["relink"]),
        (1, U1, "sub-1", "Email", "a@x.io", "new@x.io", "email_update", SYNC_REASON["email_update"]),
    ]
    assert plan.counts == counts(relink=1, email_update=1, conflict=1)


def test_insert_whose_email_collides_with_another_row_is_a_conflict() -> None:
    plan = plan_changes(
        pool(user("sub-1", "a@x.io", U1), user("sub-7", " Taken@X.io", U7)),
        table((1, U1, "sub-1", "a@x.io"), (2, None, "prod-2", "taken@x.io")),
    )

    assert plan.inserts.empty
    assert issue_tuples(plan, "sub", "UserID", "InternalUserID", "email", "category", "reason") == [
        ("sub-7", None, U7, "Taken@X.io", "conflict", SYNC_REASON["email_collision"]),
    ]
    assert plan.changes.empty
    assert plan.counts == counts(conflict=1, unchanged=1, stale=1)
    assert plan.rows_to_write == 0


def test_insert_whose_sub_is_held_by_another_row_is_a_conflict() -> None:
    plan = plan_changes(pool(user("sub-7", "new@x.io", U7)), table((1, None, "sub-7", "old@x.io")))

    assert plan.inserts.empty
    assert issue_tuples(plan) == [("sub-7", None, "conflict", SYNC_REASON["cognito_collision"])]
    assert plan.counts == counts(conflict=1)


def test_relink_onto_a_sub_held_by_another_row_is_a_conflict() -> None:
    plan = plan_changes(
        pool(user("sub-1", "a@x.io", U1)),
        table((1, U1, "prod-1", "a@x.io"), (2, None, "sub-1", "legacy@x.io")),
    )

    assert plan.changes.empty
    assert issue_tuples(plan, "sub", "UserID", "InternalUserID", "category", "reason") == [
        ("sub-1", 1, U1, "conflict", SYNC_REASON["cognito_collision"]),
    ]
    assert plan.counts == counts(conflict=1)
    assert plan.metrics["cognito_id_changes"] == 0


@pytest.mark.parametrize("holder", ["stale-row", "linked-row"])
def test_email_update_colliding_with_an_unchanged_row_is_a_conflict_while_the_relink_applies(holder: str) -> None:
    """Row 2 keeps B@x.io: either nobody in the pool owns it (a stale row), or its user is linked
    by id and has no e-mail in Cognito (so the row's e-mail is left alone)."""
    if holder == "stale-row":
        users = [user("sub-1", "b@x.io", U1)]
        rows = [(1, U1, "prod-1", "a@x.io"), (2, None, "prod-2", "B@x.io")]
        expected = counts(relink=1, conflict=1, stale=1)
    else:
        users = [user("sub-1", "b@x.io", U1), user("sub-2", None, U2)]
        rows = [(1, U1, "prod-1", "a@x.io"), (2, U2, "sub-2", "B@x.io")]
        expected = counts(relink=1, conflict=1, unchanged=1)

    plan = plan_changes(pool(*users), table(*rows))

    assert change_tuples(plan) == [(1, U1, "sub-1", "CognitoID", "prod-1", "sub-1", "relink", SYNC_REASON["relink"])]
    assert issue_tuples(plan, "sub", "UserID", "InternalUserID", "category", "reason") == [
        ("sub-1", 1, U1, "conflict", SYNC_REASON["email_collision"]),
    ]
    assert plan.counts == expected
    assert plan.rows_to_write == 1


def test_swapped_emails_are_both_updated() -> None:
    plan = plan_changes(
        pool(user("sub-1", "b@x.io", U1), user("sub-2", "A@x.io", U2)),
        table((1, U1, "sub-1", "a@x.io"), (2, U2, "sub-2", "b@x.io")),
    )

    assert change_tuples(plan) == [
        (1, U1, "sub-1", "Email", "a@x.io", "b@x.io", "email_update", SYNC_REASON["email_update"]),
        (2, U2, "sub-2", "Email", "b@x.io", "A@x.io", "email_update", SYNC_REASON["email_update"]),
    ]
    assert plan.issues.empty
    assert plan.counts == counts(email_update=2)


def test_swapped_subs_are_both_relinked() -> None:
    plan = plan_changes(
        pool(user("sub-1", "a@x.io", U1), user("sub-2", "b@x.io", U2)),
        table((1, U1, "sub-2", "a@x.io"), (2, U2, "sub-1", "b@x.io")),
    )

    assert change_tuples(plan) == [
        (1, U1, "sub-1", "CognitoID", "sub-2", "sub-1", "relink", SYNC_REASON["relink"]),
        (2, U2, "sub-2", "CognitoID", "sub-1", "sub-2", "relink", SYNC_REASON["relink"]),
    ]
    assert plan.issues.empty


def test_chain_with_one_side_in_conflict_demotes_the_other() -> None:
    """Row 2 cannot take c@ (row 3 keeps it), so it keeps b@, so row 1 cannot take b@ either."""
    plan = plan_changes(
        pool(user("sub-1", "b@x.io", U1), user("sub-2", "c@x.io", U2)),
        table((1, U1, "sub-1", "a@x.io"), (2, U2, "sub-2", "b@x.io"), (3, None, "legacy-3", "C@x.io")),
    )

    assert plan.changes.empty
    assert issue_tuples(plan, "sub", "UserID", "InternalUserID", "category", "reason") == [
        ("sub-1", 1, U1, "conflict", SYNC_REASON["email_collision"]),
        ("sub-2", 2, U2, "conflict", SYNC_REASON["email_collision"]),
    ]
    assert plan.counts == counts(conflict=2, stale=1)


def test_cognito_chain_with_one_side_in_conflict_demotes_the_other_and_blocks_the_insert() -> None:
    """Row 2 cannot take sub-3 (row 3 keeps it); it keeps sub-1, which row 1 and then nobody can take."""
    plan = plan_changes(
        pool(user("sub-1", "a@x.io", U1), user("sub-2", "b@x.io", U2), user("sub-3", "c@x.io", U3)),
        table((1, U1, "sub-2", "a@x.io"), (2, U2, "sub-1", "b@x.io"), (3, None, "sub-3", "z@x.io")),
    )

    # Rows 1 and 2 swap subs, no collision; row 3 holds sub-3 so U3's insert collides.
    assert change_tuples(plan) == [
        (1, U1, "sub-1", "CognitoID", "sub-2", "sub-1", "relink", SYNC_REASON["relink"]),
        (2, U2, "sub-2", "CognitoID", "sub-1", "sub-2", "relink", SYNC_REASON["relink"]),
    ]
    assert issue_tuples(plan) == [("sub-3", None, "conflict", SYNC_REASON["cognito_collision"])]

    # Now row 2 wants sub-3 instead (its user moved): row 3 keeps sub-3, so row 2 keeps sub-1, so
    # row 1 cannot take sub-1 either.
    plan = plan_changes(
        pool(user("sub-1", "a@x.io", U1), user("sub-3", "b@x.io", U2)),
        table((1, U1, "sub-2", "a@x.io"), (2, U2, "sub-1", "b@x.io"), (3, None, "sub-3", "z@x.io")),
    )

    assert plan.changes.empty
    assert issue_tuples(plan) == [
        ("sub-1", 1, "conflict", SYNC_REASON["cognito_collision"]),
        ("sub-3", 2, "conflict", SYNC_REASON["cognito_collision"]),
    ]


# --- totals -------------------------------------------------------------------------------------


@pytest.mark.parametrize("policy", ["keep", "clear"])
def test_counts_account_for_every_pool_user(policy: str) -> None:
    pool_frame = pool(
        user("s-relink", "relink@x.io", U1),
        user("s-email", "new.email@x.io", U2),
        user("s-fallback", "Fallback@x.io"),
        user("s-insert", "insert@x.io", U4),
        user("s-unlinked", "nobody@x.io"),
        user("s-conflict", "conflict@x.io", "bad-id"),
        user("s-same", "same@x.io", U5),
    )
    table_frame = table(
        (1, U1, "prod-1", "relink@x.io"),
        (2, U2, "s-email", "old.email@x.io"),
        (3, U3, "prod-3", "fallback@x.io"),
        (5, U5, "s-same", "SAME@x.io"),
        (6, U6, "prod-6", "gone@x.io"),
    )

    plan = plan_changes(pool_frame, table_frame, stale_policy=policy)

    assert plan.counts == counts(
        relink=1, email_update=1, email_fallback=1, insert=1, stale=1, unlinked=1, conflict=1, unchanged=1
    )
    pool_categories = sum(n for category, n in plan.counts.items() if category != "stale")
    assert pool_categories == len(pool_frame)
    # Every pool user appears exactly once in changes, inserts, issues or the unchanged pairs.
    seen = list(plan.changes["sub"].dropna()) + list(plan.inserts["CognitoID"]) + list(plan.issues["sub"].dropna())
    assert sorted(seen) == sorted(set(pool_frame["sub"]) - {"s-same"})
    assert plan.metrics == {
        "pool_users": 7,
        "table_rows": 5,
        "matched_pool_users": 4,
        "cognito_id_changes": 3 if policy == "clear" else 2,
        "needs_backfill": 1,
        "rows_to_write": 5 if policy == "clear" else 4,
    }


def test_empty_pool_and_table() -> None:
    plan = plan_changes(pool(), table())

    assert plan.changes.empty
    assert plan.inserts.empty
    assert plan.issues.empty
    assert plan.counts == counts()
    assert plan.rows_to_write == 0


def test_blank_email_is_inserted_as_null() -> None:
    """identity.normalise_emails treats a blank e-mail as missing; an insert must write NULL, not ''.

    Two users with blank e-mails would otherwise both insert Email = '' and break Email_UNIQUE
    (see tests/integration/test_properties.py::test_blank_pool_emails_do_not_break_apply).
    """
    plan = plan_changes(pool(user("sub-1", "", U1), user("sub-2", "   ", U2)), table())

    assert plan.counts == counts(insert=2)
    assert plan.inserts["Email"].isna().all(), plan.inserts["Email"].tolist()


def test_email_fallback_does_not_take_a_row_linked_to_another_live_pool_user() -> None:
    """Row 1 is linked to sub-v (its CognitoID is sub-v's live sub). sub-v changed e-mail in Cognito
    and a new person sub-w signed up with the old one. Neither carries the attribute yet. Linking
    by e-mail would hand row 1 (sub-v's account) to sub-w: it must be a conflict, like row_taken,
    and row 1 must keep sub-v."""
    plan = plan_changes(
        pool(user("sub-v", "v.new@x.io"), user("sub-w", "V.Old@x.io")),
        table((1, U1, "sub-v", "v.old@x.io")),
    )

    assert plan.changes.empty, change_tuples(plan)
    assert ("sub-w", "conflict") in issue_tuples(plan, "sub", "category")


# --- the shared first stage: normalise, who may link by e-mail, what a column holds -------------


def test_email_link_refusals_name_the_first_reason_that_applies() -> None:
    frame = pool(
        user("ok", "a@x.io"),
        user("federated", "b@x.io", status="EXTERNAL_PROVIDER"),
        user("unverified", "c@x.io", email_verified=False),
        user("unconfirmed", "d@x.io", status="UNCONFIRMED"),
        user("reset", "e@x.io", status="FORCE_CHANGE_PASSWORD", email_verified=False),
        user("disabled", "f@x.io", status="UNCONFIRMED", enabled=False),
        user("no-status", "g@x.io", status=None),
    )

    why = dict(zip(frame["sub"], email_link_refusals(frame), strict=True))

    assert {sub: na_to_none(reason) for sub, reason in why.items()} == {
        "ok": None,
        "federated": None,
        "unverified": "e-mail not verified",
        "unconfirmed": "status UNCONFIRMED",
        "reset": "status FORCE_CHANGE_PASSWORD",
        "disabled": "user disabled",
        "no-status": "status unknown",
    }


def test_normalise_keys_both_sides_once() -> None:
    p, t = normalise(
        pool(user("s1", " A@X.io ", f" {U1.upper()} "), user("s2", "a@x.io"), user("s3", "  ", "bad")),
        table((7, U1.upper(), "prod-1", " A@x.IO")),
    )

    assert list(p.columns) == NORMALISED_POOL_COLUMNS
    assert p["email"].tolist()[:2] == ["A@X.io", "a@x.io"] and pd.isna(p["email"][2])
    assert p["email_norm"].tolist()[:2] == ["a@x.io", "a@x.io"]
    assert p["iid"].tolist()[0] == U1 and pd.isna(p["iid"][1]) and pd.isna(p["iid"][2])
    assert p["has_attr"].tolist() == [True, False, True]
    assert p["pool_email_shared"].tolist() == [True, True, False]
    assert t["iid"].tolist() == [U1] and t["email_norm"].tolist() == ["a@x.io"]


@pytest.mark.parametrize(
    ("charset", "value", "fits"),
    [
        ("utf8mb4", "ann😀@x.io", True),
        ("utf8mb3", "ann😀@x.io", False),
        ("utf8", "josé@x.io", True),
        ("latin1", "josé€@x.io", True),
        ("latin1", "anna@xn--ẞ.io", False),
        ("latin1", "ann😀@x.io", False),
        ("ascii", "josé@x.io", False),
    ],
)
def test_limit_refusals_judge_the_character_set(charset: str, value: str, fits: bool) -> None:
    why = limit_refusals(pd.Series([value, "plain@x.io"], dtype="string"), "Email", ColumnLimit(100, charset))

    assert pd.isna(why[1])
    assert pd.isna(why[0]) if fits else why[0] == f"Email holds characters its character set {charset} cannot store"


def test_limit_refusals_count_characters_and_never_quote_the_value() -> None:
    values = pd.Series(["é" * 10, "é" * 11, None], dtype="string")

    why = limit_refusals(values, "FirstName", ColumnLimit(10, "utf8mb4"))

    assert pd.isna(why[0]) and pd.isna(why[2])
    assert why[1] == "FirstName is longer than the column's 10 characters"


def test_limit_refusals_refuse_an_unknown_character_set() -> None:
    with pytest.raises(ValueError, match="column Email: unknown character set 'klingon'"):
        limit_refusals(pd.Series(["a"], dtype="string"), "Email", ColumnLimit(10, "klingon"))


# --- e-mail links only for users whose e-mail proves something (issue 7, item 3) ----------------


@pytest.mark.parametrize(
    ("trust", "refusal"),
    [
        ({"email_verified": False}, "e-mail not verified"),
        ({"status": "UNCONFIRMED"}, "status UNCONFIRMED"),
        ({"status": "FORCE_CHANGE_PASSWORD"}, "status FORCE_CHANGE_PASSWORD"),
        ({"status": "RESET_REQUIRED"}, "status RESET_REQUIRED"),
        ({"enabled": False}, "user disabled"),
    ],
)
@pytest.mark.parametrize("policy", ["keep", "clear"])
def test_a_user_whose_email_proves_nothing_never_takes_a_row_over(
    trust: dict[str, Any], refusal: str, policy: str
) -> None:
    """Someone signed up with the victim's address: the row stays the victim's, the run says why."""
    plan = plan_changes(
        pool(user("sub-attacker", "Victim@x.io", **trust)),
        table((1, U1, "prod-victim", "victim@x.io")),
        stale_policy=policy,
    )

    assert plan.changes.empty, change_tuples(plan)
    refused = SYNC_REASON["email_refused"].format(refusal)
    # The conflict names row 1 (its UserID): the row is neither stale nor cleared.
    assert issue_tuples(plan, "sub", "UserID", "category", "reason", stale=True) == [
        ("sub-attacker", 1, "conflict", refused),
    ]
    assert plan.counts == counts(conflict=1)
    assert plan.metrics["matched_pool_users"] == 0


def test_a_federated_verified_user_links_by_email() -> None:
    plan = plan_changes(pool(user("sub-1", "a@x.io", status="EXTERNAL_PROVIDER")), table((1, U1, "prod-1", "a@x.io")))

    assert change_tuples(plan) == [
        (1, U1, "sub-1", "CognitoID", "prod-1", "sub-1", "email_fallback", SYNC_REASON["email_fallback"])
    ]


def test_an_unverified_user_already_on_its_row_is_left_alone() -> None:
    """The row holds the user's own sub: nothing is taken over, so nothing is refused."""
    plan = plan_changes(pool(user("sub-1", "a@x.io", email_verified=False)), table((1, None, "sub-1", "a@x.io")))

    assert plan.changes.empty and plan.issues.empty
    assert plan.counts == counts(unchanged=1)


def test_an_unverified_user_still_links_by_id() -> None:
    """The id attribute is written by the backfill or at creation, never by the user: status does not matter."""
    plan = plan_changes(
        pool(user("sub-1", "a@x.io", U1, status="UNCONFIRMED", email_verified=False)),
        table((1, U1, "prod-1", "a@x.io")),
    )

    assert change_tuples(plan) == [(1, U1, "sub-1", "CognitoID", "prod-1", "sub-1", "relink", SYNC_REASON["relink"])]


# --- rows of users in conflict are conflicts, not stale (issue 7, item 13) ----------------------


def test_the_row_of_a_user_in_conflict_is_never_cleared_as_stale() -> None:
    """Two pool users carry U1: row 1 is theirs, not a row with "no user in the pool"."""
    plan = plan_changes(
        pool(user("sub-1", "a@x.io", U1), user("sub-2", "b@x.io", U1)),
        table((1, U1, "prod-1", "a@x.io"), (2, U2, "prod-2", "gone@x.io")),
        stale_policy="clear",
    )

    assert change_tuples(plan) == [
        (2, U2, None, "CognitoID", "prod-2", None, "stale", SYNC_REASON["stale_clear"]),
    ]
    assert ("sub-1", 1, "conflict", row_of_conflict("duplicate_id")) in issue_tuples(plan)
    assert plan.counts == counts(conflict=3, stale=1)


# --- column limits (issue 7, items 2 and 9) ----------------------------------------------------------

LIMITS = {
    "CognitoID": ColumnLimit(12, "utf8mb4"),
    "Email": ColumnLimit(16, "utf8mb3"),
    "FirstName": ColumnLimit(8, "latin1"),
    "LastName": ColumnLimit(8, "utf8mb4"),
}


def test_values_the_table_cannot_hold_are_per_row_conflicts() -> None:
    plan = plan_changes(
        pool(
            user("sub-1", "a@x.io", U1),  # fits: the relink applies
            user("sub-2", "rather.long@x.io1", U2),  # 17 characters: the e-mail update is refused
            user("sub-3-too-long", "c@x.io", U3),  # 14 characters: the relink is refused
            user("sub-4", "😀@x.io", U4),  # an insert whose e-mail utf8mb3 cannot store
            user("sub-5", "e@x.io", U5, given_name="Ŋina"),  # latin1 has no Ŋ
            user("sub-6", "f@x.io", U6, family_name="Family-Name"),  # 11 characters
            user("sub-7", "g@x.io", U7),  # fits: inserted
        ),
        table((1, U1, "prod-1", "a@x.io"), (2, U2, "sub-2", "b@x.io"), (3, U3, "prod-3", "c@x.io")),
        column_limits=LIMITS,
    )

    assert change_tuples(plan) == [(1, U1, "sub-1", "CognitoID", "prod-1", "sub-1", "relink", SYNC_REASON["relink"])]
    assert insert_tuples(plan) == [(U7, "sub-7", "g@x.io", "Given", "Family")]
    assert issue_tuples(plan, "sub", "UserID", "InternalUserID", "category", "reason") == [
        ("sub-2", 2, U2, "conflict", "Email is longer than the column's 16 characters"),
        ("sub-3-too-long", 3, U3, "conflict", "CognitoID is longer than the column's 12 characters"),
        ("sub-4", None, U4, "conflict", "Email holds characters its character set utf8mb3 cannot store"),
        ("sub-5", None, U5, "conflict", "FirstName holds characters its character set latin1 cannot store"),
        ("sub-6", None, U6, "conflict", "LastName is longer than the column's 8 characters"),
    ]
    assert not plan.issues["reason"].astype(str).str.contains("😀|Ŋina|rather|Family-Name").any()  # never the value
    assert plan.counts == counts(relink=1, insert=1, conflict=5)


def test_a_refused_value_frees_nothing_it_would_have_freed() -> None:
    """Row 1 would give up a@ for a too-long e-mail; row 2 wanted a@: both stay, both reported."""
    plan = plan_changes(
        pool(user("sub-1", "much.too.long@x.io", U1), user("sub-2", "a@x.io", U2)),
        table((1, U1, "sub-1", "a@x.io"), (2, U2, "sub-2", "b@x.io")),
        column_limits={"Email": ColumnLimit(16, "utf8mb4")},
    )

    assert plan.changes.empty
    assert [reason for _, reason in issue_tuples(plan, "sub", "reason")] == [
        "Email is longer than the column's 16 characters",
        SYNC_REASON["email_collision"],
    ]


# --- a lean plan (issue 9, item 2) ----------------------------------------------------------------

HOT_COLUMNS = {"sub", "email", "email_norm", "InternalUserID", "CognitoID", "Email", "iid", "old", "new"}


def _arrow_strings(frame: pd.DataFrame) -> dict[str, str]:
    """Hot string columns of ``frame`` that are not Arrow-backed strings, with their dtype."""
    return {
        name: str(dtype)
        for name, dtype in frame.dtypes.items()
        if name in HOT_COLUMNS and not (isinstance(dtype, pd.StringDtype) and dtype.storage == "pyarrow")
    }


RESTORE = (
    [user("s-1", "a@x.io", U1), user("s-2", "b@x.io", U2)],
    [(1, U1, "prod-1", "a@x.io"), (2, U2, "prod-2", "b@x.io")],
)
MIXED = (
    [
        user("s-relink", "relink@x.io", U1),
        user("s-fallback", "fallback@x.io"),
        user("s-insert", "insert@x.io", U4),
        user("s-unlinked", "nobody@x.io"),
        user("s-conflict", "conflict@x.io", "bad-id"),
        user("s-same", "same@x.io", U5),
    ],
    [(1, U1, "prod-1", "relink@x.io"), (3, U3, "prod-3", "fallback@x.io"), (5, U5, "s-same", "same@x.io")],
)


@pytest.mark.parametrize(("users", "rows"), [RESTORE, MIXED], ids=["restore-no-issues", "mixed"])
def test_the_plan_keeps_arrow_strings_and_categories_end_to_end(
    monkeypatch: pytest.MonkeyPatch, users: list[dict[str, Any]], rows: list[tuple[Any, ...]]
) -> None:
    """An object-dtype column sends member_of to pandas' isin (seconds and hundreds of MB at 1M; a
    restore with no issue used to get one from the empty issues frame): every frame the stages hand
    on, and every frame of the plan, keeps Arrow strings."""
    import identity_sync.identity as identity

    seen: list[str] = []
    real = identity.member_of

    def checked(values: pd.Series, candidates: Any) -> pd.Series:
        for series in (values, candidates):
            if isinstance(series, pd.Series) and not isinstance(series.dtype, pd.StringDtype):
                seen.append(f"{series.name}: {series.dtype}")
        return real(values, candidates)

    monkeypatch.setattr("identity_sync.reconcile.member_of", checked)
    plan = plan_changes(pool(*users), table(*rows))

    assert seen == []
    for frame in (plan.changes, plan.inserts, plan.issues):
        assert _arrow_strings(frame) == {}
    for frame in (plan.changes, plan.issues):
        assert all(frame[c].dtype == "category" for c in ("category", "reason"))
    assert plan.changes["column"].dtype == "category"
    assert plan.issues["UserID"].dtype == "Int64"


def test_empty_plan_frames_are_typed_too() -> None:
    plan = plan_changes(pool(), table())

    for frame in (plan.changes, plan.inserts, plan.issues):
        assert _arrow_strings(frame) == {}


def test_normalised_frames_keep_arrow_strings() -> None:
    p, t = normalise(pool(user("s1", "a@x.io", U1), user("s2", None)), table((1, U1, "s1", "a@x.io")))

    assert _arrow_strings(p) == {} and _arrow_strings(t) == {}


def test_shared_values_agrees_with_pandas() -> None:
    values = pd.Series(["a", "b", None, "a", "c", None], dtype="string")

    assert shared_values(values).tolist() == (values.notna() & values.duplicated(keep=False)).tolist()
    assert not shared_values(pd.Series(["a", None, None], dtype="string")).any()  # missing is never shared
    assert shared_values(pd.Series([], dtype="string")).tolist() == []
