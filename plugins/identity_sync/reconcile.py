"""The diff: (pool DataFrame, table DataFrame) -> Plan. Pure, vectorised, no I/O.

Every pool user and every row is accounted for under a named category (counted per
change or issue: one user can be both a relink and an email_update, and a row claimed by
a pool user in conflict is a conflict of its own), and every change the plan proposes
would leave the table's unique keys (InternalUserID, CognitoID, Email) intact as far as
the plan can tell: a change that would collide, or whose value the column cannot hold,
is demoted to a conflict, never applied. (The server's collation has the last word: the
apply checks the staged values again.)

``plan_changes`` runs in named stages on one normalised pair of frames
(``matching.normalise``): link by id, fall back by e-mail (only users whose e-mail
proves something, ``matching.email_link_refusals``), propose, check column limits, find
collisions, classify the rows nobody links. Each stage reports to one ``_Issues``.

A user that may not be linked by e-mail (disabled, not CONFIRMED/EXTERNAL_PROVIDER, or
``email_verified`` not true) whose e-mail matches a row is a ``conflict``: it never takes
the row over, and an operator should look (it may be the row's person who has not
confirmed yet, or someone who signed up with another person's address).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from pandas.api.types import union_categoricals

from identity_sync.identity import (
    ColumnLimit,
    email_keys,
    key_codes,
    limit_refusals,
    member_of,
    occurrences,
    shared_values,
)
from identity_sync.matching import email_link_refusals, normalise

CATEGORIES = (
    "relink",
    "email_update",
    "email_fallback",
    "insert",
    "stale",
    "unlinked",
    "conflict",
    "unchanged",
)
TABLE_COLUMNS = ["UserID", "InternalUserID", "CognitoID", "Email"]
# The plan's frames as plan_changes returns them: Arrow-backed strings, repeated values as categories.
CHANGE_DTYPES = {
    "UserID": "int64",
    "InternalUserID": "string",
    "sub": "string",
    "column": "category",
    "old": "string",
    "new": "string",
    "category": "category",
    "reason": "category",
}
SYNC_ISSUE_DTYPES = {
    "sub": "string",
    "username": "string",
    "InternalUserID": "string",
    "UserID": "Int64",
    "email": "string",
    "category": "category",
    "reason": "category",
}
INSERT_COLUMNS = ["InternalUserID", "CognitoID", "Email", "FirstName", "LastName"]
INSERT_DTYPES = dict.fromkeys([*INSERT_COLUMNS, "sub", "username"], "string")  # sub, username: for issues only
CHANGE_COLUMNS = list(CHANGE_DTYPES)
SYNC_ISSUE_COLUMNS = list(SYNC_ISSUE_DTYPES)
LIMITED_COLUMNS = ("CognitoID", "Email", "FirstName", "LastName")

SYNC_REASON = {
    "relink": "same InternalUserID, CognitoID differs",
    "email_update": "same InternalUserID, e-mail differs beyond case",
    "email_fallback": "no attribute; e-mail matches exactly one row (user still needs the backfill)",
    "insert": "InternalUserID not in the table",
    "stale_clear": "no user in the pool; CognitoID cleared",
    "stale_keep": "no user in the pool; CognitoID kept",
    "unlinked_no_email": "no attribute and no e-mail",
    "unlinked_no_row": "no attribute and no row with this e-mail",
    "email_refused": "e-mail matches a row, but {}: never linked by e-mail",
    "invalid_id": "attribute value is not a UUID",
    "duplicate_id": "InternalUserID carried by several pool users",
    "duplicate_row_id": "InternalUserID on several rows",
    "pool_email_shared": "e-mail shared by several pool users",
    "row_email_shared": "e-mail shared by several rows",
    "row_taken": "e-mail matches a row that belongs to another pool user (by InternalUserID or CognitoID)",
    "cognito_collision": "new CognitoID is held by another row",
    "email_collision": "new e-mail is held by another row",
    "row_of_conflict": "row of a pool user in conflict: {}",
}


@dataclass
class Plan:
    """What to write, what to report, and the counts that justify it."""

    changes: pd.DataFrame  # updates, one row per (table row, column)
    inserts: pd.DataFrame  # new rows
    issues: pd.DataFrame  # conflicts, unlinked users, stale rows kept: reported, never written
    counts: dict[str, int] = field(default_factory=dict)
    metrics: dict[str, int] = field(default_factory=dict)

    @property
    def rows_to_write(self) -> int:
        return int(self.changes["UserID"].nunique() + len(self.inserts))


def _constant(value: str, n: int) -> pd.Categorical:
    """A column holding one value n times, at one byte a row."""
    return pd.Categorical.from_codes(np.zeros(n, dtype=np.int8), categories=[value])


def _categorical(values: pd.Series) -> pd.Categorical:
    """``values`` as a categorical whose categories are ``str``, as ``_constant`` makes them (so they union)."""
    values = pd.Categorical(values)
    return values if values.categories.dtype == "str" else values.rename_categories(values.categories.astype("str"))


def _stack(parts: list[pd.DataFrame], dtypes: dict[str, str]) -> pd.DataFrame:
    """Frames of the same columns, one below the other, typed as ``dtypes`` (never object)."""
    parts = [part for part in parts if len(part)]
    columns: dict[str, object] = {}
    for name, dtype in dtypes.items():
        if not parts:
            columns[name] = pd.Series([], dtype=dtype)
        elif dtype == "category":
            columns[name] = union_categoricals([_categorical(part[name]) for part in parts])
        else:
            columns[name] = pd.concat([part[name].astype(dtype) for part in parts], ignore_index=True)
    return pd.DataFrame(columns)


class _Issues:
    """The one accumulator every stage reports to, and what the users in conflict claim."""

    def __init__(self) -> None:
        self.parts: list[pd.DataFrame] = []
        self.claims: list[tuple[str, pd.DataFrame]] = []  # (key column, frame of key, sub, reason)

    def add(self, users: pd.DataFrame, category: str, reason: str | pd.Series, claim_by: str = "") -> None:
        """Report ``users`` (normalised pool users, or merged with their rows); ``claim_by`` names the key
        (``iid`` or ``email_norm``) by which their conflict extends to the rows they would have had."""
        if not len(users):
            return
        reasons = _categorical(reason) if isinstance(reason, pd.Series) else _constant(reason, len(users))
        frame = pd.DataFrame(
            {
                "sub": users["sub"].values,
                "username": users["username"].values,
                "InternalUserID": users["raw_id"].values,
                "UserID": users["UserID"].values if "UserID" in users else pd.NA,
                "email": users["email"].values,
                "category": _constant(category, len(users)),
                "reason": reasons,
            }
        )
        self.parts.append(frame)
        if claim_by:
            self.claims.append((claim_by, pd.DataFrame({claim_by: users[claim_by].values, **frame[["sub", "reason"]]})))

    def add_rows(self, rows: pd.DataFrame, category: str, reason: str | pd.Series, sub: object = pd.NA) -> None:
        """Report table rows (stale ones, or rows of a user in conflict)."""
        users = rows.assign(sub=sub, username=pd.NA, raw_id=rows["InternalUserID"], email=rows["Email"])
        self.add(users, category, reason)

    def named_rows(self) -> pd.Series:
        """UserIDs of the rows a conflict names already (its user wanted that row)."""
        conflicts = [part["UserID"] for part in self.parts if part["category"][0] == "conflict"]
        return pd.concat([pd.Series([], dtype="Int64"), *conflicts], ignore_index=True).dropna()

    def frame(self) -> pd.DataFrame:
        return _stack(self.parts, SYNC_ISSUE_DTYPES)


class _SharedEmails:
    """Whether another pool user holds the same ``email_norm`` (``pool_email_shared``), asked only for the
    users whose e-mail matters: those without the attribute, new ones, and those whose e-mail changes (in a
    nightly run, nobody). For a few users it counts among the pool users holding their e-mails only; for
    many it counts every pool e-mail once."""

    def __init__(self, emails: pd.Series) -> None:
        self.emails = emails
        self.repeated: pd.Series | None = None  # every e-mail several pool users hold, once counted

    def __call__(self, emails: pd.Series) -> np.ndarray:
        if not len(emails):
            return np.zeros(0, dtype=bool)
        if self.repeated is None and len(emails) * 8 < len(self.emails):
            counts = self.emails[member_of(self.emails, emails).to_numpy()].value_counts()
            return (emails.map(counts).fillna(0) > 1).to_numpy(dtype=bool)
        if self.repeated is None:
            self.repeated = self.emails[shared_values(self.emails).to_numpy()]
        return member_of(emails, self.repeated).to_numpy()


def plan_changes(
    pool: pd.DataFrame,
    table: pd.DataFrame,
    stale_policy: str = "keep",
    column_limits: dict[str, ColumnLimit] | None = None,
) -> Plan:
    """Diff the pool against the table.

    ``stale_policy`` is keep or clear (config ``stale_cognito_ids``); ``column_limits``
    (``UsersTable.column_limits()``) turns values the table cannot hold into conflicts.
    """
    if stale_policy not in ("keep", "clear"):
        raise ValueError(f"stale_policy must be keep or clear, got {stale_policy!r}")
    p, t = normalise(pool, table, pool_wide=False)
    issues, shared = _Issues(), _SharedEmails(p["email_norm"])
    linked, absent = _link_by_id(p, t, issues)
    by_email = _fall_back_by_email(p, t, linked, issues, shared)
    changes = _propose_changes(linked, by_email, t, issues, shared)
    matched = [linked[["sub", "UserID"]], by_email[["sub", "UserID"]]]  # kept apart: no copy of a million subs
    sizes = {"pool_users": len(p), "table_rows": len(t), "needs_backfill": len(by_email)}
    del linked, by_email  # the widest frames of the plan: released as soon as they are used
    inserts = _propose_inserts(absent, issues, shared)
    del absent
    changes, inserts = _demote_unstorable(changes, inserts, column_limits or {}, issues)
    changes, inserts = _demote_collisions(t, changes, inserts, issues)
    matched_rows = np.concatenate([part["UserID"].to_numpy() for part in matched])
    stale = _classify_rows(p, t, pd.Series(matched_rows, dtype=t["UserID"].dtype), issues)
    del p, t
    if stale_policy == "clear":
        cleared = pd.Series(pd.NA, index=stale.index, dtype="string")
        clear = _change(stale.assign(sub=cleared), "CognitoID", stale["CognitoID"], cleared, "stale", "stale_clear")
        changes = _stack([changes, clear], CHANGE_DTYPES)
    else:
        issues.add_rows(stale, "stale", SYNC_REASON["stale_keep"])
    issue_frame = issues.frame()
    metrics = {
        "pool_users": sizes["pool_users"],
        "table_rows": sizes["table_rows"],
        "matched_pool_users": len(matched_rows),
        "cognito_id_changes": int((changes["column"] == "CognitoID").sum()),
        "needs_backfill": sizes["needs_backfill"],
        "rows_to_write": int(changes["UserID"].nunique() + len(inserts)),
    }
    counts = _count(changes, inserts, issue_frame, [part["sub"] for part in matched], len(stale))
    return Plan(changes=changes, inserts=inserts[INSERT_COLUMNS], issues=issue_frame, counts=counts, metrics=metrics)


def _rows(frame: pd.DataFrame, mask: pd.Series | np.ndarray) -> pd.DataFrame:
    """``frame[mask]`` (``mask`` of ``frame``'s rows, no missing), without a copy when every row is kept or
    none is (a nightly run keeps all or nothing at nearly every stage). No stage modifies a frame in place."""
    keep = mask.to_numpy(dtype=bool) if isinstance(mask, pd.Series) else np.asarray(mask, dtype=bool)
    if keep.all():
        return frame
    return frame[keep] if keep.any() else frame.iloc[:0]


def _from_rows(frame: pd.DataFrame, t: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """``frame`` with the table's ``columns`` of each entry's row (``frame["row"]``, a position in ``t``)."""
    positions = frame["row"].to_numpy()
    return frame.assign(**{column: t[column].array.take(positions) for column in columns})


def _link_by_id(p: pd.DataFrame, t: pd.DataFrame, issues: _Issues) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Stage: users carrying a usable id, each with the one row holding it (linked) or none (absent).

    ``linked`` holds the row's position (``row``), UserID, CognitoID and normalised e-mail
    (``email_norm_row``); the row's other values are taken by position where a change needs them.
    """
    issues.add(_rows(p, p["has_attr"] & p["iid"].isna()), "conflict", SYNC_REASON["invalid_id"])
    pool_code, row_code = key_codes(p["iid"], t["iid"])  # one hash pass over both sides' ids
    pool_iid_shared = occurrences(pool_code, pool_code) > 1
    issues.add(_rows(p, pool_iid_shared), "conflict", SYNC_REASON["duplicate_id"], claim_by="iid")
    row_iid_shared = occurrences(row_code, row_code) > 1
    on_shared_rows = (occurrences(pool_code, row_code) > 1) & ~pool_iid_shared
    issues.add(_rows(p, on_shared_rows), "conflict", SYNC_REASON["duplicate_row_id"], claim_by="iid")
    usable = (pool_code >= 0) & ~pool_iid_shared & ~on_shared_rows
    single = np.flatnonzero((row_code >= 0) & ~row_iid_shared)  # each id on one row at most
    row_of_code = np.full(max(int(pool_code.max(initial=-1)), int(row_code.max(initial=-1))) + 2, -1)
    row_of_code[row_code[single]] = single  # the last slot stays -1: where a missing id (-1) looks
    row = row_of_code[pool_code]
    found = usable & (row >= 0)
    users, rows = _rows(p, found), row[found]
    linked = pd.DataFrame(
        {
            **{c: users[c].values for c in ["sub", "username", "raw_id", "email", "email_norm"]},
            "row": rows,
            "UserID": t["UserID"].array.take(rows),
            "CognitoID": t["CognitoID"].array.take(rows),
            "email_norm_row": t["email_norm"].array.take(rows),
        }
    )
    return linked, _rows(p, usable & (row < 0))


def _fall_back_by_email(
    p: pd.DataFrame, t: pd.DataFrame, linked: pd.DataFrame, issues: _Issues, shared_emails: _SharedEmails
) -> pd.DataFrame:
    """Stage: users without the attribute, each on the one row with its e-mail, if it may have it."""
    bare = _rows(p, ~p["has_attr"])
    issues.add(_rows(bare, bare["email_norm"].isna()), "unlinked", SYNC_REASON["unlinked_no_email"])
    bare = _rows(bare, bare["email_norm"].notna())
    shared = shared_emails(bare["email_norm"])
    issues.add(_rows(bare, shared), "conflict", SYNC_REASON["pool_email_shared"], claim_by="email_norm")
    bare = _rows(bare, ~shared)
    # Count rows per e-mail among the rows that hold one of these e-mails only (few, after the backfill).
    candidate = member_of(t["email_norm"], bare["email_norm"]).to_numpy()
    candidate_rows = _rows(t, candidate)
    matches = bare["email_norm"].map(candidate_rows["email_norm"].value_counts()).fillna(0).astype(int)
    issues.add(_rows(bare, matches == 0), "unlinked", SYNC_REASON["unlinked_no_row"])
    issues.add(_rows(bare, matches > 1), "conflict", SYNC_REASON["row_email_shared"], claim_by="email_norm")
    rows = candidate_rows[[*TABLE_COLUMNS, "email_norm", "iid"]].assign(row=np.flatnonzero(candidate))
    bare = _rows(bare, matches == 1)
    bare = bare.assign(email_refusal=email_link_refusals(bare)).drop(columns="iid")
    by_email = bare.merge(rows, on="email_norm", how="inner")
    if not len(by_email):
        return by_email  # nobody falls back (a nightly run): nothing to refuse or to find taken
    # A user already on its row (the row holds its sub) takes nothing over, whatever its status.
    refused = by_email["email_refusal"].notna() & by_email["CognitoID"].ne(by_email["sub"]).fillna(True)
    why = by_email.loc[refused, "email_refusal"].map(SYNC_REASON["email_refused"].format)
    issues.add(_rows(by_email, refused), "conflict", why)  # names its row: never stale
    by_email = _rows(by_email, ~refused)
    # A row is not free for the fallback if a pool user claims it by id (even one in conflict),
    # or if it holds another live pool user's sub: re-pointing it would hand that person's row over.
    taken = (
        by_email["UserID"].isin(linked["UserID"])
        | member_of(by_email["iid"], p["iid"])
        | (member_of(by_email["CognitoID"], p["sub"]) & by_email["CognitoID"].ne(by_email["sub"]).fillna(False))
    )
    issues.add(_rows(by_email, taken), "conflict", SYNC_REASON["row_taken"])
    return _rows(by_email, ~taken)


def _change(
    frame: pd.DataFrame, column: str, old: pd.Series, new: pd.Series, category: str, reason_key: str = ""
) -> pd.DataFrame:
    """Proposed updates of one column, one per row of ``frame``."""
    n = len(frame)
    return pd.DataFrame(
        {
            "UserID": frame["UserID"].values,
            "InternalUserID": frame["InternalUserID"].values,
            "sub": frame["sub"].values,
            "column": _constant(column, n),
            "old": old.values,
            "new": new.values,
            "category": _constant(category, n),
            "reason": _constant(SYNC_REASON[reason_key or category], n),
        }
    )


def _propose_changes(
    linked: pd.DataFrame, by_email: pd.DataFrame, t: pd.DataFrame, issues: _Issues, shared_emails: _SharedEmails
) -> pd.DataFrame:
    """Stage: relinks and e-mail updates of linked rows, CognitoIDs of e-mail fallbacks."""
    relinks = _from_rows(_rows(linked, linked["CognitoID"].ne(linked["sub"]).fillna(True)), t, ["InternalUserID"])
    email_differs = linked["email_norm"].notna() & linked["email_norm"].ne(linked["email_norm_row"]).fillna(True)
    differing = _rows(linked, email_differs)
    shared = shared_emails(differing["email_norm"])
    issues.add(_rows(differing, shared), "conflict", SYNC_REASON["pool_email_shared"])
    email_updates = _from_rows(_rows(differing, ~shared), t, ["InternalUserID", "Email"])
    fallbacks = _rows(by_email, by_email["CognitoID"].ne(by_email["sub"]).fillna(True))
    parts = [
        _change(relinks, "CognitoID", relinks["CognitoID"], relinks["sub"], "relink"),
        _change(email_updates, "Email", email_updates["Email"], email_updates["email"], "email_update"),
        _change(fallbacks, "CognitoID", fallbacks["CognitoID"], fallbacks["sub"], "email_fallback"),
    ]
    return _stack(parts, CHANGE_DTYPES)


def _propose_inserts(absent: pd.DataFrame, issues: _Issues, shared_emails: _SharedEmails) -> pd.DataFrame:
    """Stage: a new row for each user whose id no row holds, unless its e-mail is another user's too."""
    shared = shared_emails(absent["email_norm"])
    issues.add(_rows(absent, shared), "conflict", SYNC_REASON["pool_email_shared"])
    new = _rows(absent, ~shared)
    frame = pd.DataFrame(
        {
            "InternalUserID": new["iid"].values,
            "CognitoID": new["sub"].values,
            "Email": new["email"].values,
            "FirstName": new["given_name"].values,
            "LastName": new["family_name"].values,
            "sub": new["sub"].values,
            "username": new["username"].values,
        }
    )
    return frame.astype(INSERT_DTYPES)


def _demote_unstorable(
    changes: pd.DataFrame, inserts: pd.DataFrame, limits: dict[str, ColumnLimit], issues: _Issues
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Stage: a value longer than its column, or in characters its charset lacks, is a per-row conflict."""
    if not limits:
        return changes, inserts
    insert_why = pd.Series(pd.NA, index=inserts.index, dtype="string")
    change_why = pd.Series(pd.NA, index=changes.index, dtype="string")
    for column in LIMITED_COLUMNS:
        if column not in limits:
            continue
        insert_why = insert_why.fillna(limit_refusals(inserts[column], column, limits[column]))
        mine = changes["column"] == column
        change_why[mine] = change_why[mine].fillna(limit_refusals(changes.loc[mine, "new"], column, limits[column]))
    bad_changes, bad_inserts = change_why.notna(), insert_why.notna()
    issues.add(_change_users(changes[bad_changes]), "conflict", change_why[bad_changes])
    issues.add(_insert_users(inserts[bad_inserts]), "conflict", insert_why[bad_inserts])
    return changes[~bad_changes].reset_index(drop=True), inserts[~bad_inserts].reset_index(drop=True)


def _change_users(changes: pd.DataFrame) -> pd.DataFrame:
    """Demoted changes as ``_Issues.add`` reads users (the e-mail is not repeated in the report)."""
    return changes.assign(username=pd.NA, raw_id=changes["InternalUserID"], email=pd.NA)


def _insert_users(inserts: pd.DataFrame) -> pd.DataFrame:
    return inserts.assign(raw_id=inserts["InternalUserID"], email=inserts["Email"])


def _demote_collisions(
    table: pd.DataFrame, changes: pd.DataFrame, inserts: pd.DataFrame, issues: _Issues
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Stage: drop every change or insert that would break a unique key, until none would.

    Dropping a change restores its old value, which may be another change's new value
    (a swap with one side in conflict), hence the loop; it ends because each round
    only removes entries. A first pass: the apply checks again with the server's collation.
    """
    keys = {"CognitoID": lambda s: s.astype("string"), "Email": email_keys}
    held: dict[str, pd.Series] = {}  # each column's keys as the table holds them, computed once if needed
    position = pd.Index(table["UserID"])
    found = True
    while found:
        found = False
        for column, norm in keys.items():
            mine = (changes["column"] == column).to_numpy()
            if not mine.any() and not len(inserts):
                continue  # nothing sets this column: nothing can collide (a nightly run with no change)
            if column not in held:
                held[column] = norm(table[column]).reset_index(drop=True)
            setting = _rows(changes, mine)  # the whole frame when every change sets this column: no copy
            rows = position.get_indexer(setting["UserID"])
            # The column as it would end: each changed row holds its (last) change's value, the rest keep theirs.
            ending = np.full(len(held[column]), -1)
            ending[rows] = np.arange(len(rows))  # numpy leaves the last of repeated positions, as iloc does
            replaced = ending >= 0
            winners = ending[replaced]  # the change whose value each changed row ends with, in row order
            # One hash pass over the values, no copy of a column; only the final values are counted.
            kept, proposed, added = key_codes(
                _rows(held[column], ~replaced), norm(setting["new"]), norm(inserts[column])
            )
            new = proposed[winners]
            every = np.concatenate([kept, new, added])
            times = np.zeros(len(rows), dtype=np.int64)
            times[winners] = occurrences(new, every)
            bad_changes = times[ending[rows]] > 1  # each change: is the value its row ends with held twice?
            bad_inserts = occurrences(added, every) > 1
            if not bad_changes.any() and not bad_inserts.any():
                continue
            found = True
            reason = SYNC_REASON["cognito_collision" if column == "CognitoID" else "email_collision"]
            hit = np.zeros(len(changes), dtype=bool)
            hit[np.flatnonzero(mine)[bad_changes]] = True
            issues.add(_change_users(changes[hit]), "conflict", reason)
            issues.add(_insert_users(inserts[bad_inserts]), "conflict", reason)
            changes = changes[~hit].reset_index(drop=True)
            inserts = inserts[~bad_inserts].reset_index(drop=True)
    return changes, inserts


def _classify_rows(p: pd.DataFrame, t: pd.DataFrame, linked_rows: pd.Series, issues: _Issues) -> pd.DataFrame:
    """Stage: rows no user is linked to, whose CognitoID is no pool user's sub, and no conflict names.
    A row that a user in conflict claims (by id or e-mail) is a conflict with that user's reason;
    the others are stale."""
    free = _rows(t, ~t["UserID"].isin(linked_rows) & ~t["UserID"].isin(issues.named_rows()))
    stale = _rows(free, free["CognitoID"].notna() & ~member_of(free["CognitoID"], p["sub"]))
    sub = pd.Series(pd.NA, index=stale.index, dtype="string")
    reason = pd.Series(pd.NA, index=stale.index, dtype="string")
    for key, claims in issues.claims:
        first = claims.drop_duplicates(key).set_index(key)
        sub = sub.fillna(stale[key].map(first["sub"]).astype("string"))
        reason = reason.fillna(stale[key].map(first["reason"].astype("string")).astype("string"))
    claimed = reason.notna()
    why = reason[claimed].map(SYNC_REASON["row_of_conflict"].format)
    issues.add_rows(stale[claimed], "conflict", why, sub=sub[claimed].values)
    return stale[~claimed]


def _count(
    changes: pd.DataFrame, inserts: pd.DataFrame, issues: pd.DataFrame, matched: list[pd.Series], stale_rows: int
) -> dict[str, int]:
    """Per category: changes, inserts and reported issues; stale rows; matched users left alone."""
    counts = dict.fromkeys(CATEGORIES, 0)
    reported = issues.loc[issues["category"].isin(["unlinked", "conflict"]), "category"]
    for category, n in [*changes["category"].value_counts().items(), *reported.value_counts().items()]:
        counts[str(category)] = int(n)
    counts["insert"] = len(inserts)
    counts["stale"] = stale_rows
    touched = pd.concat([changes["sub"], issues.loc[issues["category"] == "conflict", "sub"]], ignore_index=True)
    counts["unchanged"] = sum(int((~member_of(subs, touched)).sum()) for subs in matched)
    return counts
