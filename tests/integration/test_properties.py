"""Property tests: random small pools and tables, planned and applied on real databases.

The alphabets are tiny on purpose (a handful of ids, subs and e-mails, with case and blank
variants), so that collisions, case variants, missing attributes, duplicate ids, invalid ids
and swaps come up in most examples. Every example gets a fresh table.

Checked for every example:
  (a) apply never raises: the plan never breaks a unique key;
  (b) planning again right after apply has nothing to write (idempotence);
  (c) no row is ever deleted;
  (d) the linking guarantee, exactly as reconcile.py gives it (see ``check_linking``);
  (e) the values that changed in the table are exactly those of the change report;
  (f) only a user whose e-mail proves something (enabled, CONFIRMED or EXTERNAL_PROVIDER,
      ``email_verified`` true) is ever linked by e-mail; any other never takes a row over
      (see ``check_fallback``);
  (g) no value the plan sets is held by another row or set twice (``check_unique_keys``).
"""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import event as hypothesis_event
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context

from identity_sync.extract import pool_frame
from identity_sync.identity import email_keys, normalise_emails, normalise_internal_ids
from identity_sync.matching import normalise
from identity_sync.reconcile import SYNC_REASON, Plan, plan_changes
from identity_sync.report import change_report
from identity_sync.sql import MYSQL, SQLITE
from tests.conftest import ALL_COLUMNS, TableUnderTest

ATTRIBUTE = "custom:internal_user_id"
IDS = [f"{n:08x}-0000-4000-8000-{n:012x}" for n in range(1, 6)]
SUBS = [f"sub-{i}" for i in range(7)]  # one per person (IDS), then two for noise users
FOREIGN_SUBS = ["prod-0", "prod-1", "prod-2"]  # subs of another pool, as after a restore
NAMES = ["ann", "bob", "cy", "dee"]
# How far a pool user's e-mail can be trusted: (UserStatus, Enabled, email_verified).
TRUST = {
    "verified": ("CONFIRMED", True, "true"),
    "federated": ("EXTERNAL_PROVIDER", True, "true"),
    "unverified": ("CONFIRMED", True, "false"),
    "unconfirmed": ("UNCONFIRMED", True, "true"),
    "reset": ("FORCE_CHANGE_PASSWORD", True, "true"),
    "disabled": ("CONFIRMED", False, "true"),
}
LINKABLE_BY_EMAIL = {"verified", "federated"}


def trust() -> st.SearchStrategy[str]:
    """Mostly users whose e-mail may link them, the rest each way of not being one."""
    return st.sampled_from(["verified", "verified", "verified", "federated", *(set(TRUST) - LINKABLE_BY_EMAIL)])


# --- strategies --------------------------------------------------------------------------------


VARIANTS = {
    "lower": lambda a: a,
    "upper": str.upper,
    "title": str.title,
    "lead": lambda a: " " + a,
    "trail": lambda a: a + " ",
}


def _variant(address: str, kind: str) -> str:
    """The same e-mail as Cognito or a restored table may spell it."""
    return VARIANTS[kind](address)


def emails() -> st.SearchStrategy[str]:
    """Any of the few e-mails, in any spelling."""
    return st.builds(
        _variant,
        st.sampled_from([f"{name}@x.io" for name in NAMES]),
        st.sampled_from(["lower", "lower", "upper", "title", "lead", "trail"]),
    )


@st.composite
def internal_ids(draw: st.DrawFn, *, pool: bool) -> str | None:
    value = draw(st.sampled_from(IDS))
    variants = ["lower", "lower", "lower", "upper", "padded"] if pool else ["lower", "lower", "upper"]
    variant = draw(st.sampled_from(variants))  # the table's VARCHAR(36) holds no padded id
    if variant == "padded":
        return f" {value} "
    return value.upper() if variant == "upper" else value


def pool_ids() -> st.SearchStrategy[str | None]:
    return st.one_of(
        internal_ids(pool=True),
        internal_ids(pool=True),
        internal_ids(pool=True),
        st.none(),
        st.none(),
        st.sampled_from(["", "  ", "not-a-uuid", IDS[0][:-1]]),
    )


def table_ids() -> st.SearchStrategy[str | None]:
    return st.one_of(internal_ids(pool=False), internal_ids(pool=False), st.none(), st.just("legacy-7"))


def _db_key(value: str | None) -> str | None:
    """How both databases compare a unique value (MySQL's *_ci collations ignore case and trailing blanks)."""
    return None if value is None else value.lower().rstrip()


def unique_rows(rows: list[tuple[str | None, str | None, str | None]]) -> list[tuple[str | None, ...]]:
    """Drop rows that the table's unique keys (InternalUserID, CognitoID, Email) would refuse."""
    seen: list[set[str]] = [set(), set(), set()]
    kept = []
    for row in rows:
        keys = [_db_key(v) for v in row]
        if any(k is not None and k in seen[i] for i, k in enumerate(keys)):
            continue
        for i, k in enumerate(keys):
            if k is not None:
                seen[i].add(k)
        kept.append(row)
    return kept


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """People present in the table, the pool or both, each drifting in some way, plus noise.

    Person j has id IDS[j], pool sub SUBS[j] and e-mail NAMES[j % 4] (persons 0 and 4 share one).
    Their row may carry a foreign sub (a restore), another person's sub or e-mail (swaps), no
    id, an upper-case id; their pool user may carry no attribute (fallback), a bad or another
    person's id (conflicts), a changed e-mail.
    """
    users: list[tuple[Any, ...]] = []
    rows: list[tuple[Any, ...]] = []
    people = draw(st.integers(1, len(IDS)))
    # A tidy example is a restore: everybody in both places, mostly carrying the attribute, with
    # their own e-mails and no noise; the drift then comes from foreign subs and the rotations
    # below. A messy one draws every field from the whole alphabet.
    tidy = draw(st.booleans())
    for j in range(people):
        iid, sub = IDS[j], SUBS[j]
        address = f"{NAMES[j % len(NAMES)]}@x.io"
        own_email = st.builds(_variant, st.just(address), st.sampled_from(["lower", "lower", "upper", "title", "lead"]))
        if tidy:
            where = "both"
            row_id = draw(st.sampled_from([iid, iid, iid.upper()]))
            cognito = draw(st.sampled_from([FOREIGN_SUBS[j % len(FOREIGN_SUBS)], sub, None]))
            row_email = draw(own_email)
            attribute = draw(st.sampled_from([iid, iid, iid, iid.upper(), None]))
            user_email = draw(own_email)
        else:
            where = draw(st.sampled_from(["both", "both", "both", "table", "pool"]))
            row_id = draw(st.sampled_from([iid, iid, iid, iid.upper(), None, "legacy-7"]))
            cognito = draw(
                st.sampled_from([sub, sub, FOREIGN_SUBS[j % len(FOREIGN_SUBS)], None, *SUBS[:people], *FOREIGN_SUBS])
            )
            row_email = draw(st.one_of(own_email, own_email, own_email, emails(), st.none()))
            attribute = draw(
                st.sampled_from([iid, iid, iid, iid.upper(), f" {iid} ", None, None, None, "", "not-a-uuid", IDS[0]])
            )
            user_email = draw(st.one_of(own_email, own_email, own_email, own_email, emails(), st.none()))
        if where != "pool":
            rows.append((row_id, cognito, row_email))
        if where != "table":
            users.append((sub, user_email, attribute, draw(st.sampled_from(["Ada", None])), draw(trust())))
    noise_users = draw(
        st.lists(
            st.tuples(
                st.sampled_from(SUBS[len(IDS) :]), st.one_of(emails(), st.none()), pool_ids(), st.none(), trust()
            ),
            max_size=0 if tidy else 2,
            unique_by=lambda user: user[0],
        )
    )
    noise_rows = draw(
        st.lists(
            st.tuples(
                table_ids(),
                st.one_of(st.sampled_from(SUBS), st.sampled_from(FOREIGN_SUBS), st.none()),
                st.one_of(emails(), st.none()),
            ),
            max_size=0 if tidy else 2,
        )
    )
    for field in (1, 2):  # rotate the CognitoIDs or e-mails of the first k rows: a swap, or a cycle
        k = draw(st.sampled_from([0, 2, 2, 3, len(rows)]))
        if 2 <= k <= len(rows):
            rotated = [row[field] for row in rows[1:k]] + [rows[0][field]]
            rows[:k] = [(*row[:field], value, *row[field + 1 :]) for row, value in zip(rows[:k], rotated, strict=True)]
    rows = draw(st.permutations(rows + noise_rows))
    return users + noise_users, unique_rows(rows)


def build_pool(users: list[tuple[Any, ...]]) -> pd.DataFrame:
    """The pool frame extract.pool_frame builds from ListUsers records of (sub, email, id, given name[, trust])."""
    records = []
    for sub, email, iid, given_name, *how in users:
        status, enabled, verified = TRUST[how[0] if how else "verified"]
        attributes = [{"Name": "sub", "Value": sub}]
        if email is not None:
            attributes.append({"Name": "email", "Value": email})
            attributes.append({"Name": "email_verified", "Value": verified})
        if iid is not None:
            attributes.append({"Name": ATTRIBUTE, "Value": iid})
        if given_name is not None:
            attributes.append({"Name": "given_name", "Value": given_name})
        records.append({"Username": f"user-{sub}", "Attributes": attributes, "UserStatus": status, "Enabled": enabled})
    return pool_frame(records, ATTRIBUTE)


# --- one example -------------------------------------------------------------------------------


def event(label: str) -> None:
    """Tally a kind of example (pytest --hypothesis-show-statistics); a no-op outside Hypothesis."""
    if currently_in_test_context():
        hypothesis_event(label)


def _none(value: Any) -> Any:
    return None if value is None or value is pd.NA or (isinstance(value, float) and pd.isna(value)) else value


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [{k: _none(v) for k, v in row.items()} for row in frame.to_dict("records")]


def run_example(tut: TableUnderTest, users: list[tuple[Any, ...]], rows: list[tuple[Any, ...]], policy: str) -> None:
    """Seed the table, plan, apply, plan again, and check (a) to (e)."""
    tut.insert(rows)
    pool = build_pool(users)
    before = tut.rows()
    users_table = tut.users_table()
    try:
        table = users_table.read()
        plan = plan_changes(pool, table, policy)
        for category, n in plan.counts.items():
            if n:
                event(f"category {category}")  # pytest --hypothesis-show-statistics shows the mix
        for reason in set(plan.issues["reason"]):
            event(f"issue {reason}")
        for column, norm in (("CognitoID", lambda v: v), ("Email", normalise_emails)):
            mine = plan.changes[plan.changes["column"] == column]
            if norm(mine["new"]).dropna().isin(set(norm(mine["old"]).dropna())).any():
                event(f"swap or chain of {column}")  # a row takes a value another row gives up
        users_table.apply(plan)  # (a): raises if the plan breaks a unique key
        again = plan_changes(pool, users_table.read(), policy)
    finally:
        users_table.connection.close()
    after = tut.rows()

    # (b) idempotence
    assert again.rows_to_write == 0, (again.changes, again.inserts)
    assert again.changes.empty
    assert again.inserts.empty

    # (c) nothing deleted
    assert len(after) >= len(before)
    assert set(before["UserID"]) <= set(after["UserID"])
    assert len(after) == len(before) + len(plan.inserts)

    # Every pool user is accounted for: named by a change, an insert or an issue, or unchanged.
    named = (
        set(plan.changes["sub"].dropna()) | set(plan.inserts["CognitoID"].dropna()) | set(plan.issues["sub"].dropna())
    )
    assert named <= set(pool["sub"])
    assert plan.counts["unchanged"] == len(set(pool["sub"]) - named)

    check_report_matches_table(plan, before, after)
    check_linking(pool, table, plan, after)
    check_fallback(pool, table, plan, after)
    check_unique_keys(plan, table)


def check_report_matches_table(plan: Plan, before: pd.DataFrame, after: pd.DataFrame) -> None:
    """(e) every changed value, and only those, is in the change report with its old and new value."""
    old_rows = {r["UserID"]: r for r in _records(before)}
    new_rows = {r["UserID"]: r for r in _records(after)}
    actual_updates = {
        (user_id, column, row[column], new_rows[user_id][column])
        for user_id, row in old_rows.items()
        for column in ALL_COLUMNS[1:]
        if row[column] != new_rows[user_id][column]
    }
    actual_inserts = {
        tuple(row[c] for c in ["InternalUserID", "CognitoID", "Email", "FirstName", "LastName"])
        for user_id, row in new_rows.items()
        if user_id not in old_rows
    }

    report = _records(change_report(plan))
    reported_updates = {(r["UserID"], r["column"], r["old"], r["new"]) for r in report if r["category"] != "insert"}
    by_id: dict[str, dict[str, Any]] = {}
    for r in report:
        if r["category"] == "insert":
            assert r["UserID"] is None and r["old"] is None
            by_id.setdefault(r["InternalUserID"], {})[r["column"]] = r["new"]
    reported_inserts = {(iid, v["CognitoID"], v["Email"], v["FirstName"], v["LastName"]) for iid, v in by_id.items()}

    assert actual_updates == reported_updates
    assert actual_inserts == reported_inserts
    assert len(report) == len(plan.changes) + 4 * len(plan.inserts)


def _conflict_reasons(plan: Plan, sub: str) -> set[str]:
    issues = plan.issues
    return set(issues.loc[(issues["sub"] == sub).fillna(False) & (issues["category"] == "conflict"), "reason"])


def check_linking(pool: pd.DataFrame, table: pd.DataFrame, plan: Plan, after: pd.DataFrame) -> None:
    """(d) the linking guarantee for pool users carrying a usable InternalUserID.

    A pool user U is *eligible* when its attribute is a valid UUID that no other pool user
    carries (compared lower-cased) and that is on at most one row. reconcile.py then guarantees:

    * U ends linked (the row with its id has CognitoID == U.sub) whenever no OTHER row holds
      U.sub, and - if no row has U's id yet, so U is inserted - U's e-mail is shared with no
      other pool user and held by no row. These conditions read the inputs only.
    * Otherwise U may stay unlinked, but only for a reason the plan reports and the final table
      proves: a ``cognito_collision`` (another row still holds U.sub after apply) or, for an
      insert, an ``email_collision`` (a row holds U's e-mail after apply) or
      ``pool_email_shared``. The brief's "e-mail not involved in a conflict" is not enough:
      a row holding U's sub without being linked to anybody (not stale: the sub is live) blocks
      U's relink, and the product rightly reports that instead of stealing the sub.
    """
    pool_iid = normalise_internal_ids(pool["internal_user_id"])
    pool_email = normalise_emails(pool["email"])
    table_iid = normalise_internal_ids(table["InternalUserID"])
    table_email = normalise_emails(table["Email"])
    after_iid = normalise_internal_ids(after["InternalUserID"].astype("string"))
    after_email = normalise_emails(after["Email"].astype("string"))
    after_cognito = after["CognitoID"].astype("string")

    for i in range(len(pool)):
        iid, sub, email = pool_iid[i], pool["sub"][i], pool_email[i]
        if pd.isna(iid) or (pool_iid == iid).sum() > 1:
            continue
        own_rows = table.loc[(table_iid == iid).fillna(False), "UserID"]
        if len(own_rows) > 1:
            continue
        others_hold_sub = ((table["CognitoID"] == sub).fillna(False) & ~table["UserID"].isin(own_rows)).any()
        email_shared = pd.notna(email) and (pool_email == email).sum() > 1
        email_in_table = pd.notna(email) and (table_email == email).fillna(False).any()
        if len(own_rows):
            sufficient = not others_hold_sub
        else:
            sufficient = not others_hold_sub and not email_shared and not email_in_table

        mine = after[(after_iid == iid).fillna(False)]
        linked = len(mine) == 1 and mine["CognitoID"].iloc[0] == sub
        if sufficient:
            event("linking guaranteed")
            assert linked, f"{sub} ({iid}) is not linked: {mine.to_dict('records')}"
            continue
        if linked:
            continue
        event("linking blocked by a conflict")
        reasons = _conflict_reasons(plan, sub)
        sub_held = ((after_cognito == sub).fillna(False) & ~after["UserID"].isin(mine["UserID"])).any()
        explained = SYNC_REASON["cognito_collision"] in reasons and sub_held
        if not len(own_rows):
            explained |= SYNC_REASON["email_collision"] in reasons and bool((after_email == email).fillna(False).any())
            explained |= SYNC_REASON["pool_email_shared"] in reasons and bool(email_shared)
        assert explained, f"{sub} ({iid}) is not linked and no conflict explains it: {reasons}"


def check_fallback(pool: pd.DataFrame, table: pd.DataFrame, plan: Plan, after: pd.DataFrame) -> None:
    """(f) A pool user without the attribute, whose e-mail is its own in the pool and matches exactly
    one row:

    * if the user may not be linked by e-mail, it never takes the row over (the row never ends
      holding its sub) and the plan reports the refusal, unless the row already holds its sub;
    * if the row is linked to another pool user (by id, or by CognitoID: another live sub), the
      plan reports ``row_taken`` and the row never ends holding the user's sub;
    * otherwise the user ends on that row, unless another row keeps its sub, which the plan
      reports as ``cognito_collision``.
    """
    p, t = normalise(pool, table)
    keyed_ids = set(p["iid"][p["iid"].notna() & ~p["iid"].duplicated(keep=False)])
    row_ids_once = set(t["iid"][t["iid"].notna() & ~t["iid"].duplicated(keep=False)])
    after_by_id = after.set_index("UserID")

    for i in range(len(p)):
        email, sub = p["email_norm"][i], p["sub"][i]
        if p["has_attr"][i] or pd.isna(email) or p["pool_email_shared"][i]:
            continue
        matching = t[(t["email_norm"] == email).fillna(False)]
        if len(matching) != 1:
            continue
        row = matching.iloc[0]
        taken_over = _none(after_by_id.loc[row["UserID"], "CognitoID"]) == sub
        row_sub = _none(row["CognitoID"])
        if pd.notna(p["email_refusal"][i]) and row_sub != sub:
            event("fallback refused: e-mail proves nothing")
            assert not taken_over, f"{sub} ({p['email_refusal'][i]}) took row {row['UserID']} over by e-mail"
            assert SYNC_REASON["email_refused"].format(p["email_refusal"][i]) in _conflict_reasons(plan, sub)
            continue
        other_live_sub = row_sub is not None and row_sub != sub and row_sub in set(p["sub"])
        if (pd.notna(row["iid"]) and row["iid"] in keyed_ids and row["iid"] in row_ids_once) or other_live_sub:
            event("fallback refused: row taken")
            assert SYNC_REASON["row_taken"] in _conflict_reasons(plan, sub)
            # A row that held the user's sub before keeps it when nothing is written to it: not a takeover.
            re_pointed = taken_over and row_sub != sub
            assert not re_pointed, f"row {row['UserID']}, linked to another pool user, was re-pointed to {sub}"
            continue
        event("fallback expected")
        if taken_over:
            continue
        held = (after["CognitoID"] == sub).fillna(False).any()
        assert SYNC_REASON["cognito_collision"] in _conflict_reasons(plan, sub) and held, (
            f"{sub} should have fallen back onto row {row['UserID']}"
        )


def check_unique_keys(plan: Plan, table: pd.DataFrame) -> None:
    """(g) every CognitoID and e-mail the plan writes is held by no other row once the plan is applied,
    compared as the plan compares them (the apply on a real database in (a) is the final word)."""
    for column, key in (("CognitoID", lambda s: s.astype("string")), ("Email", email_keys)):
        final = table.set_index("UserID")[column].astype("string").copy()
        mine = plan.changes[plan.changes["column"] == column]
        final.loc[mine["UserID"].values] = mine["new"].astype("string").values
        values = pd.concat([key(final), key(plan.inserts[column].astype("string"))], ignore_index=True)
        written = pd.Series([*final.index.isin(mine["UserID"]), *[True] * len(plan.inserts)])
        clashing = values.notna() & values.duplicated(keep=False) & written
        assert not clashing.any(), f"the plan sets a {column} another row holds: {values[clashing].tolist()}"


# --- the properties ----------------------------------------------------------------------------

PROPERTY_SETTINGS = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _sqlite_table() -> tuple[TableUnderTest, Callable[[], None]]:
    directory = tempfile.mkdtemp(prefix="identity-sync-prop-")
    path = Path(directory) / "users.sqlite"
    tut = TableUnderTest(lambda: sqlite3.connect(path), SQLITE, "Users")

    def cleanup() -> None:
        tut.drop()
        shutil.rmtree(directory, ignore_errors=True)

    return tut, cleanup


@PROPERTY_SETTINGS
@given(scenario=scenarios(), policy=st.sampled_from(["keep", "clear"]))
def test_plans_apply_cleanly_on_sqlite(scenario: tuple[list[Any], list[Any]], policy: str) -> None:
    tut, cleanup = _sqlite_table()
    try:
        run_example(tut, *scenario, policy)
    finally:
        cleanup()


@pytest.mark.mariadb
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(scenario=scenarios(), policy=st.sampled_from(["keep", "clear"]))
def test_plans_apply_cleanly_on_mariadb(
    mariadb_table: TableUnderTest, scenario: tuple[list[Any], list[Any]], policy: str
) -> None:
    """The same properties on MariaDB (its *_ci collations decide what a duplicate is); a fresh table per example."""
    tut = TableUnderTest(mariadb_table.connect, MYSQL, f"Users_p{uuid.uuid4().hex[:12]}")
    try:
        run_example(tut, *scenario, policy)
    finally:
        tut.drop()


# --- failures found by these properties, fixed, kept as regression tests ----------------------------


def test_blank_pool_emails_do_not_break_apply() -> None:
    """Two new users whose e-mail attribute is blank. reconcile once inserted Email = '' for both
    (identity.normalise_emails called a blank e-mail missing, but the insert wrote the stripped raw
    value) and the second '' broke Email_UNIQUE, failing the whole apply; a blank e-mail is now NULL."""
    tut, cleanup = _sqlite_table()
    try:
        run_example(tut, [("sub-1", "", IDS[0], None), ("sub-2", " ", IDS[1], None)], [], "keep")
    finally:
        cleanup()


def test_row_taken_that_already_holds_the_fallback_users_sub() -> None:
    """Found by the properties on 2026-11-22: ann (no attribute) matches row 3 by e-mail and row 3
    already holds ann's sub, but cy carries row 3's InternalUserID (row_taken), and cy's relink is
    blocked because row 2 holds cy's sub (cognito_collision). Nothing is written to row 3, so it
    still holds ann's sub: the oracle once called that a takeover. The product was right; the
    check now asks whether the row was re-pointed."""
    pool = [
        ("sub-0", "ann@x.io", None, "Ada", "verified"),
        ("sub-1", "bob@x.io", None, "Ada", "verified"),
        ("sub-2", "cy@x.io", IDS[2], "Ada", "verified"),
        ("sub-3", "dee@x.io", IDS[3], "Ada", "verified"),
    ]
    rows = [
        (IDS[0], "prod-1", "bob@x.io"),
        (IDS[1], "sub-2", "cy@x.io"),
        (IDS[2], "sub-0", "ann@x.io"),
        (IDS[3], "prod-0", "dee@x.io"),
    ]
    for policy in ("keep", "clear"):
        tut, cleanup = _sqlite_table()
        try:
            run_example(tut, pool, rows, policy)
        finally:
            cleanup()


@pytest.mark.mariadb
def test_accent_variant_emails_on_mariadb(mariadb_table: TableUnderTest) -> None:
    """MySQL's default *_ci collations (utf8mb4_general_ci here, utf8mb4_0900_ai_ci on MySQL 8)
    ignore accents as well as case, so 'josé@x.io' and 'jose@x.io' are one Email_UNIQUE value.
    reconcile once compared e-mails by str.lower() only and planned an insert the table refused;
    its collision check now folds accents too (identity.email_keys)."""
    mariadb_table.insert([(IDS[0], "sub-1", "jose@x.io")])
    pool = build_pool([("sub-1", "jose@x.io", IDS[0], None), ("sub-2", "josé@x.io", IDS[1], None)])
    users_table = mariadb_table.users_table()
    try:
        plan = plan_changes(pool, users_table.read())
        assert plan.counts["insert"] + plan.counts["conflict"] == 1
        users_table.apply(plan)
    finally:
        users_table.connection.close()
