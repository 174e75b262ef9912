"""The diff: (pool DataFrame, table DataFrame) -> Plan. Pure, vectorised, no I/O.

Every pool user and every row is accounted for under a named category (counted per
change or issue: one user can be both a relink and an email_update), and every change
the plan proposes would leave the table's unique keys (InternalUserID, CognitoID,
Email) intact: a change that would collide is demoted to a conflict, never applied.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from identity_sync.identity import email_keys, member_of, normalise_emails, normalise_internal_ids

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
CHANGE_COLUMNS = ["UserID", "InternalUserID", "sub", "column", "old", "new", "category", "reason"]
INSERT_COLUMNS = ["InternalUserID", "CognitoID", "Email", "FirstName", "LastName"]
ISSUE_COLUMNS = ["sub", "username", "InternalUserID", "UserID", "email", "category", "reason"]

REASON = {
    "relink": "same InternalUserID, CognitoID differs",
    "email_update": "same InternalUserID, e-mail differs beyond case",
    "email_fallback": "no attribute; e-mail matches exactly one row (user still needs the backfill)",
    "insert": "InternalUserID not in the table",
    "stale_clear": "no user in the pool; CognitoID cleared",
    "stale_keep": "no user in the pool; CognitoID kept",
    "unlinked_no_email": "no attribute and no e-mail",
    "unlinked_no_row": "no attribute and no row with this e-mail",
    "invalid_id": "attribute value is not a UUID",
    "duplicate_id": "InternalUserID carried by several pool users",
    "duplicate_row_id": "InternalUserID on several rows",
    "pool_email_shared": "e-mail shared by several pool users",
    "row_email_shared": "e-mail shared by several rows",
    "row_taken": "e-mail matches a row that belongs to another pool user (by InternalUserID or CognitoID)",
    "cognito_collision": "new CognitoID is held by another row",
    "email_collision": "new e-mail is held by another row",
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


def _collides(final: pd.Series, changed: pd.Series) -> pd.Series:
    """Entries that set a value which another entry of ``final`` also holds."""
    duplicated = final.notna() & final.duplicated(keep=False)
    return changed & duplicated


def _with_columns(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    return frame.reindex(columns=columns).reset_index(drop=True)


def plan_changes(pool: pd.DataFrame, table: pd.DataFrame, stale_policy: str = "keep") -> Plan:
    """Diff the pool against the table. ``stale_policy`` is keep or clear (config ``stale_cognito_ids``)."""
    if stale_policy not in ("keep", "clear"):
        raise ValueError(f"stale_policy must be keep or clear, got {stale_policy!r}")

    p = pool.reset_index(drop=True).copy()
    p["iid"] = normalise_internal_ids(p["internal_user_id"])
    p["email_norm"] = normalise_emails(p["email"])
    given = p["email"].astype("string").str.strip()
    p["email_given"] = given.mask(given == "")  # a blank e-mail is no e-mail: NULL, never ''""
    raw_id = p["internal_user_id"].astype("string").str.strip()
    has_attr = raw_id.notna() & (raw_id != "")
    p["InternalUserIDRaw"] = raw_id

    t = table.reset_index(drop=True).copy()
    t["iid"] = normalise_internal_ids(t["InternalUserID"])
    t["email_norm"] = normalise_emails(t["Email"])
    row_iid_shared = t["iid"].notna() & t["iid"].duplicated(keep=False)
    row_email_count = t["email_norm"].value_counts()

    pool_email_shared = p["email_norm"].notna() & p["email_norm"].duplicated(keep=False)
    pool_iid_shared = p["iid"].notna() & p["iid"].duplicated(keep=False)
    shared_row_ids = t.loc[row_iid_shared, "iid"]

    issues: list[pd.DataFrame] = []

    def issue(users: pd.DataFrame, category: str, reason_key: str) -> None:
        if len(users):
            issues.append(
                pd.DataFrame(
                    {
                        "sub": users["sub"].values,
                        "username": users["username"].values,
                        "InternalUserID": users["InternalUserIDRaw"].values,
                        "UserID": users["UserID"].values if "UserID" in users else pd.NA,
                        "email": users["email_given"].values,
                        "category": category,
                        "reason": REASON[reason_key],
                    }
                )
            )

    # --- pool users carrying an id -------------------------------------------------------
    invalid = has_attr & p["iid"].isna()
    issue(p[invalid], "conflict", "invalid_id")
    issue(p[pool_iid_shared], "conflict", "duplicate_id")
    on_shared_rows = member_of(p["iid"], shared_row_ids) & ~pool_iid_shared
    issue(p[on_shared_rows], "conflict", "duplicate_row_id")
    keyed = p[p["iid"].notna() & ~pool_iid_shared & ~on_shared_rows]
    keyed = keyed.assign(pool_email_shared=pool_email_shared[keyed.index])

    rows = t.loc[
        t["iid"].notna() & ~row_iid_shared, ["UserID", "InternalUserID", "CognitoID", "Email", "iid", "email_norm"]
    ]
    linked = keyed.merge(rows, on="iid", how="inner", suffixes=("", "_row"))
    absent = keyed[~member_of(keyed["iid"], rows["iid"])]

    # --- pool users without the attribute: fall back to a unique e-mail match -----------
    bare = p[~has_attr]
    issue(bare[bare["email_norm"].isna()], "unlinked", "unlinked_no_email")
    bare = bare[bare["email_norm"].notna()]
    issue(bare[pool_email_shared[bare.index]], "conflict", "pool_email_shared")
    bare = bare[~pool_email_shared[bare.index]]
    matches = bare["email_norm"].map(row_email_count).fillna(0).astype(int)
    issue(bare[matches == 0], "unlinked", "unlinked_no_row")
    issue(bare[matches > 1], "conflict", "row_email_shared")
    by_email = bare[matches == 1].merge(
        t[["UserID", "InternalUserID", "CognitoID", "Email", "email_norm"]], on="email_norm", how="inner"
    )
    # A row is not free for the fallback if a pool user claims it by id (even one in conflict),
    # or if it holds another live pool user's sub: re-pointing it would hand that person's row over.
    claimed_ids = p["iid"]
    taken = (
        by_email["UserID"].isin(linked["UserID"])
        | member_of(normalise_internal_ids(by_email["InternalUserID"]), claimed_ids)
        | (member_of(by_email["CognitoID"], p["sub"]) & by_email["CognitoID"].ne(by_email["sub"]).fillna(False))
    )
    issue(by_email[taken], "conflict", "row_taken")
    by_email = by_email[~taken]

    # --- proposed changes ------------------------------------------------------------------
    def change(
        frame: pd.DataFrame, column: str, old: pd.Series, new: pd.Series, category: str, reason_key: str = ""
    ) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "UserID": frame["UserID"].values,
                "InternalUserID": frame["InternalUserID"].values,
                "sub": frame["sub"].values,
                "column": column,
                "old": old.values,
                "new": new.values,
                "category": category,
                "reason": REASON[reason_key or category],
            }
        )

    relinks = linked[linked["CognitoID"].ne(linked["sub"]).fillna(True)]
    email_differs = linked["email_norm"].notna() & linked["email_norm"].ne(linked["email_norm_row"]).fillna(True)
    issue(linked[email_differs & linked["pool_email_shared"]], "conflict", "pool_email_shared")
    email_updates = linked[email_differs & ~linked["pool_email_shared"]]
    fallbacks = by_email[by_email["CognitoID"].ne(by_email["sub"]).fillna(True)]

    linked_ids = pd.concat([linked["UserID"], by_email["UserID"]], ignore_index=True)
    unlinked_rows = t[~t["UserID"].isin(linked_ids)]
    stale = unlinked_rows[unlinked_rows["CognitoID"].notna() & ~member_of(unlinked_rows["CognitoID"], p["sub"])]
    stale = stale.assign(sub=pd.NA)

    parts = [
        change(relinks, "CognitoID", relinks["CognitoID"], relinks["sub"], "relink"),
        change(email_updates, "Email", email_updates["Email"], email_updates["email_given"], "email_update"),
        change(fallbacks, "CognitoID", fallbacks["CognitoID"], fallbacks["sub"], "email_fallback"),
    ]
    if stale_policy == "clear":
        no_value = pd.Series([pd.NA] * len(stale), dtype="string")
        parts.append(change(stale, "CognitoID", stale["CognitoID"], no_value, "stale", "stale_clear"))
    else:
        kept = stale.assign(username=pd.NA, email_given=stale["Email"], InternalUserIDRaw=stale["InternalUserID"])
        issue(kept, "stale", "stale_keep")
    changes = pd.concat([x for x in parts if len(x)], ignore_index=True) if any(len(x) for x in parts) else None
    changes = _with_columns(changes if changes is not None else pd.DataFrame(), CHANGE_COLUMNS)

    inserts = absent[~absent["pool_email_shared"]]
    issue(absent[absent["pool_email_shared"]], "conflict", "pool_email_shared")
    inserts = pd.DataFrame(
        {
            "InternalUserID": inserts["iid"].values,
            "CognitoID": inserts["sub"].values,
            "Email": inserts["email_given"].values,
            "FirstName": inserts["given_name"].values,
            "LastName": inserts["family_name"].values,
            "sub": inserts["sub"].values,
            "username": inserts["username"].values,
        }
    )

    changes, inserts, collisions = _demote_collisions(t, changes, inserts)
    if len(collisions):
        issues.append(collisions)

    issue_frame = _with_columns(pd.concat(issues, ignore_index=True) if issues else pd.DataFrame(), ISSUE_COLUMNS)
    changes = changes.astype({"old": "string", "new": "string", "InternalUserID": "string", "sub": "string"})
    counts = _count(changes, inserts, issue_frame, linked, by_email, stale_policy, len(stale))
    metrics = {
        "pool_users": len(p),
        "table_rows": len(t),
        "matched_pool_users": int(len(linked) + len(by_email)),
        "cognito_id_changes": int((changes["column"] == "CognitoID").sum()),
        "needs_backfill": len(by_email),
        "rows_to_write": int(changes["UserID"].nunique() + len(inserts)),
    }
    return Plan(
        changes=changes,
        inserts=_with_columns(inserts, INSERT_COLUMNS),
        issues=issue_frame,
        counts=counts,
        metrics=metrics,
    )


def _demote_collisions(
    table: pd.DataFrame, changes: pd.DataFrame, inserts: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Drop every change or insert that would break a unique key, until none would.

    Dropping a change restores its old value, which may be another change's new value
    (a swap with one side in conflict), hence the loop; it ends because each round
    only removes entries.
    """
    demoted: list[pd.DataFrame] = []
    keys = {"CognitoID": lambda s: s.astype("string"), "Email": email_keys}
    while True:
        found = False
        for column, norm in keys.items():
            mine = changes[changes["column"] == column]
            final = table.set_index("UserID")[column].astype("string").copy()
            final.loc[mine["UserID"].values] = mine["new"].astype("string").values
            values = pd.concat([norm(final), norm(inserts[column].astype("string"))], ignore_index=True)
            set_here = pd.concat(
                [
                    pd.Series(final.index.isin(mine["UserID"]), dtype=bool),
                    pd.Series([True] * len(inserts), dtype=bool),
                ],
                ignore_index=True,
            )
            bad = _collides(values, set_here)
            if not bad.any():
                continue
            found = True
            reason = REASON["cognito_collision" if column == "CognitoID" else "email_collision"]
            bad_rows = set(final.index[bad.values[: len(final)]])
            bad_inserts = bad.values[len(final) :]
            hit = (changes["column"] == column) & changes["UserID"].isin(bad_rows)
            demoted.append(
                pd.DataFrame(
                    {
                        "sub": changes.loc[hit, "sub"].values,
                        "username": pd.NA,
                        "InternalUserID": changes.loc[hit, "InternalUserID"].values,
                        "UserID": changes.loc[hit, "UserID"].values,
                        "email": pd.NA,
                        "category": "conflict",
                        "reason": reason,
                    }
                )
            )
            demoted.append(
                pd.DataFrame(
                    {
                        "sub": inserts.loc[bad_inserts, "sub"].values,
                        "username": inserts.loc[bad_inserts, "username"].values,
                        "InternalUserID": inserts.loc[bad_inserts, "InternalUserID"].values,
                        "UserID": pd.NA,
                        "email": inserts.loc[bad_inserts, "Email"].values,
                        "category": "conflict",
                        "reason": reason,
                    }
                )
            )
            changes = changes[~hit].reset_index(drop=True)
            inserts = inserts[~bad_inserts].reset_index(drop=True)
        if not found:
            break
    demoted = [d for d in demoted if len(d)]
    return changes, inserts, pd.concat(demoted, ignore_index=True) if demoted else pd.DataFrame(columns=ISSUE_COLUMNS)


def _count(
    changes: pd.DataFrame,
    inserts: pd.DataFrame,
    issues: pd.DataFrame,
    linked: pd.DataFrame,
    by_email: pd.DataFrame,
    stale_policy: str,
    stale_rows: int,
) -> dict[str, int]:
    counts = dict.fromkeys(CATEGORIES, 0)
    for category, n in changes["category"].value_counts().items():
        counts[str(category)] = int(n)
    counts["insert"] = len(inserts)
    counts["stale"] = stale_rows
    for category, n in issues.loc[issues["category"].isin(["unlinked", "conflict"]), "category"].value_counts().items():
        counts[str(category)] = int(n)
    touched = pd.concat([changes["sub"], issues.loc[issues["category"] == "conflict", "sub"]], ignore_index=True)
    pairs = pd.concat([linked["sub"], by_email["sub"]], ignore_index=True)
    counts["unchanged"] = int((~member_of(pairs, touched)).sum())
    return counts
