"""The backfill's plan: which pool users get which InternalUserID, and which rows get a user. Pure.

A user is linked to a row by its sub (``CognitoID``) first, then by a unique
case-insensitive e-mail, and only a user whose e-mail proves something (enabled,
CONFIRMED or external-provider, ``email_verified``) is ever linked by e-mail. The
attribute is written only where it is missing: a user that carries another id is a
conflict and is never overwritten, because every write is final in practice (and each
one makes the user a billable MAU this month).

The plan runs in named stages on one normalised pair of frames: link users to rows,
classify each user, then account for the rows no user stands for. Each stage adds to
one list of issues.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from identity_sync.identity import member_of, new_internal_id, normalise_internal_ids
from identity_sync.matching import normalise

log = logging.getLogger(__name__)

BACKFILL_CATEGORIES = ("write", "create", "done", "missing_user", "unlinked", "conflict")
# A chunk carries what the write re-checks (the link and the row's keys); the change report leaves those out.
WRITE_COLUMNS = ["sub", "username", "UserID", "InternalUserID", "matched_by", "email_norm"]
CREATE_COLUMNS = ["UserID", "InternalUserID", "CognitoID", "Email", "FirstName", "LastName"]
BACKFILL_ISSUE_COLUMNS = ["sub", "username", "UserID", "InternalUserID", "category", "reason"]

BACKFILL_REASON = {
    "write": "attribute missing; its row's id is written",
    "done": "already carries its row's InternalUserID",
    "different_id": "user carries another InternalUserID than its row: never overwritten",
    "invalid_id": "attribute value is not a UUID: never overwritten",
    "shared_id": "InternalUserID carried by several pool users",
    "id_taken": "the row's InternalUserID is already carried by another pool user",
    "row_invalid_id": "the row's InternalUserID is not a UUID: fix the row first",
    "row_claimed": "e-mail matches a row that another pool user matches by sub",
    "pool_email_shared": "e-mail shared by several pool users",
    "row_email_shared": "e-mail matches several rows",
    "email_refused": "e-mail matches a row, but {refusal}: never linked by e-mail",
    "no_row": "no row with this sub or e-mail",
    "unknown_id": "carries an InternalUserID that no row has",
    "no_user": "row has no user in the pool",
    "no_email": "row has no user in the pool and no e-mail to create one with",
    "email_taken": "row has no user in the pool, and its e-mail belongs to another pool user",
}


@dataclass
class BackfillPlan:
    writes: pd.DataFrame  # AdminUpdateUserAttributes, one per user (WRITE_COLUMNS)
    creates: pd.DataFrame  # AdminCreateUser, one per row (CREATE_COLUMNS)
    issues: pd.DataFrame  # BACKFILL_ISSUE_COLUMNS
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def billable_writes(self) -> int:
        """Users that the attribute writes make monthly active users (MAU) this month."""
        return len(self.writes)


def simulate_missing_ids(table: pd.DataFrame) -> pd.DataFrame:
    """The table as it will be once every row has an id: what a dry run plans against."""
    missing = table["InternalUserID"].isna()
    filled = table.copy()
    filled.loc[missing, "InternalUserID"] = [new_internal_id() for _ in range(int(missing.sum()))]
    return filled


def _link_users(p: pd.DataFrame, t: pd.DataFrame) -> pd.DataFrame:
    """Stage 1: each user's row, by sub, else by a unique e-mail of a user allowed to link by e-mail."""
    by_sub = p["sub"].map(t.dropna(subset=["CognitoID"]).set_index("CognitoID")["UserID"])
    rows_per_email = t["email_norm"].value_counts()
    p["email_rows"] = p["email_norm"].map(rows_per_email).fillna(0).astype(int)
    unique_email_row = t[t["email_norm"].map(rows_per_email) == 1].set_index("email_norm")["UserID"]
    by_email = p["email_norm"].map(unique_email_row).where(~p["pool_email_shared"] & by_sub.isna())
    p["row_claimed"] = member_of(by_email, set(by_sub.dropna()))
    p["email_refusal"] = p["email_refusal"].where(by_email.notna() & ~p["row_claimed"])
    by_email = by_email.where(~p["row_claimed"] & p["email_refusal"].isna())
    p["UserID"] = by_sub.fillna(by_email).astype("Int64")
    p["matched_by"] = pd.Series("sub", index=p.index).where(by_sub.notna(), "e-mail").where(p["UserID"].notna())
    return p.merge(t[["UserID", "iid"]].rename(columns={"iid": "row_iid"}), on="UserID", how="left")


def _classify_users(p: pd.DataFrame, t: pd.DataFrame) -> pd.Series:
    """Stage 2: each user's BACKFILL_REASON key; the first rule that applies wins."""
    id_shared = p["iid"].notna() & p["iid"].duplicated(keep=False)
    carried = set(p["iid"].dropna())
    matched = p["UserID"].notna()
    has_attr = p["has_attr"]
    rules = [
        (has_attr & p["iid"].isna(), "invalid_id"),
        (id_shared, "shared_id"),
        (matched & has_attr & p["iid"].eq(p["row_iid"]).fillna(False), "done"),
        (matched & has_attr, "different_id"),
        (matched & p["row_iid"].isna(), "row_invalid_id"),
        (matched & member_of(p["row_iid"], carried), "id_taken"),
        (matched, "write"),
        (has_attr & member_of(p["iid"], t["iid"]), "done"),
        (has_attr, "unknown_id"),
        (p["row_claimed"], "row_claimed"),
        (p["pool_email_shared"], "pool_email_shared"),
        (p["email_rows"] > 1, "row_email_shared"),
    ]
    why = pd.Series(pd.NA, index=p.index, dtype="string")
    for mask, reason in rules:
        why = why.mask(why.isna() & mask.fillna(False).astype(bool), reason)
    why = why.mask(why.isna() & p["email_refusal"].notna(), "email_refused")
    return why.fillna("no_row")


USER_CATEGORY = {"write": "write", "done": "done", "no_row": "unlinked", "unknown_id": "unlinked"}


def _user_issues(p: pd.DataFrame, why: pd.Series) -> pd.DataFrame:
    category = why.map(lambda key: USER_CATEGORY.get(key, "conflict")).astype("string")
    reported = category.isin(["conflict", "unlinked"])
    reason = why.map(BACKFILL_REASON).astype("string")
    refused = why == "email_refused"
    reason[refused] = [BACKFILL_REASON["email_refused"].format(refusal=r) for r in p.loc[refused, "email_refusal"]]
    return pd.DataFrame(
        {
            "sub": p.loc[reported, "sub"].values,
            "username": p.loc[reported, "username"].values,
            "UserID": p.loc[reported, "UserID"].values,
            "InternalUserID": p.loc[reported, "raw_id"].values,
            "category": category[reported].values,
            "reason": reason[reported].values,
        }
    )


def _missing_users(rows: pd.DataFrame, why: str) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "sub": pd.NA,
            "username": pd.NA,
            "UserID": rows["UserID"].values,
            "InternalUserID": rows["InternalUserID"].values,
            "category": "missing_user",
            "reason": BACKFILL_REASON[why],
        }
    )


def _orphan_rows(p: pd.DataFrame, t: pd.DataFrame, create_missing: bool) -> tuple[pd.DataFrame, list[pd.DataFrame]]:
    """Stage 3: rows that no pool user stands for (by sub, e-mail or id): created, or reported."""
    carried = set(p["iid"].dropna())
    represented = set(p["UserID"].dropna()) | set(t.loc[member_of(t["iid"], carried), "UserID"])
    orphans = t[~t["UserID"].isin(represented)]
    invalid_id = orphans["iid"].isna()
    no_email = orphans["email_norm"].isna() & ~invalid_id
    email_taken = member_of(orphans["email_norm"], set(p["email_norm"].dropna())) & ~no_email & ~invalid_id
    creatable = orphans[~invalid_id & ~no_email & ~email_taken]
    issues = [
        _missing_users(orphans[mask], why)
        for mask, why in ((invalid_id, "row_invalid_id"), (no_email, "no_email"), (email_taken, "email_taken"))
    ]
    if not create_missing:
        issues.append(_missing_users(creatable, "no_user"))
        creatable = creatable.iloc[0:0]
    return creatable.assign(InternalUserID=creatable["iid"])[CREATE_COLUMNS], issues


def plan_backfill(pool: pd.DataFrame, table: pd.DataFrame, *, create_missing: bool) -> BackfillPlan:
    """Pool users x rows (every row has an id) -> what to write, create and report."""
    p, t = normalise(pool, table)
    p = _link_users(p, t)
    why = _classify_users(p, t)
    writes = p[why == "write"].assign(InternalUserID=lambda f: f["row_iid"])[WRITE_COLUMNS]
    creates, row_issues = _orphan_rows(p, t, create_missing)
    parts = [frame for frame in (_user_issues(p, why), *row_issues) if len(frame)]
    issues = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=BACKFILL_ISSUE_COLUMNS)

    counts = dict.fromkeys(BACKFILL_CATEGORIES, 0)
    counts.update({str(k): int(v) for k, v in issues["category"].value_counts().items()})
    counts["write"], counts["create"] = len(writes), len(creates)
    counts["done"] = int((why == "done").sum())
    return BackfillPlan(
        writes=writes.reset_index(drop=True), creates=creates.reset_index(drop=True), issues=issues, counts=counts
    )


def chunk_frame(frame: pd.DataFrame, chunks: int) -> list[pd.DataFrame]:
    """Split into at most ``chunks`` near-equal, non-empty parts."""
    if frame.empty:
        return []
    parts = min(chunks, len(frame))
    size = -(-len(frame) // parts)
    return [frame.iloc[start : start + size] for start in range(0, len(frame), size)]


class Progress:
    """done / total, rate and ETA in the log, every ``every`` seconds and at the end."""

    def __init__(self, label: str, total: int, every: float = 10.0, clock: Callable[[], float] = time.monotonic):
        self.label, self.total, self.every, self._clock = label, total, every, clock
        self.started = self._last = clock()
        self.done = 0

    def step(self) -> None:
        self.done += 1
        now = self._clock()
        if now - self._last >= self.every or self.done == self.total:
            self._last = now
            log.info("%s", self.line(now))

    def line(self, now: float | None = None) -> str:
        elapsed = max((self._clock() if now is None else now) - self.started, 1e-9)
        rate = self.done / elapsed
        eta = f"{(self.total - self.done) / rate:.0f}s" if rate else "unknown"
        return f"{self.label}: {self.done}/{self.total} done, {rate:.1f}/s, ETA {eta}"


def id_coverage(pool: pd.DataFrame) -> dict[str, Any]:
    """How many of the pool's users carry a valid id: the backfill's final check."""
    valid = int(normalise_internal_ids(pool["internal_user_id"]).notna().sum())
    total = len(pool)
    return {"pool_users": total, "with_valid_id": valid, "share": round(valid / total, 4) if total else 1.0}
