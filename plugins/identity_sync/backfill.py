"""The backfill: which pool users get which InternalUserID (pure), and the paced writes.

A user is linked to a row by its sub (``CognitoID``) first, then by a unique
case-insensitive e-mail. The attribute is written only where it is missing: a user
that carries another id is a conflict and is never overwritten, because every write is
final in practice (and each one makes the user a billable MAU this month).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from botocore.exceptions import ClientError

from identity_sync.cognito import CognitoHook
from identity_sync.identity import member_of, new_internal_id, normalise_emails, normalise_internal_ids
from identity_sync.ratelimit import RateLimiter

log = logging.getLogger(__name__)

BACKFILL_CATEGORIES = ("write", "create", "done", "missing_user", "unlinked", "conflict")
WRITE_COLUMNS = ["sub", "username", "UserID", "InternalUserID", "matched_by"]
CREATE_COLUMNS = ["UserID", "InternalUserID", "Email", "FirstName", "LastName"]
ISSUE_COLUMNS = ["sub", "username", "UserID", "InternalUserID", "category", "reason"]

REASON = {
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
    "no_row": "no row with this sub or e-mail",
    "unknown_id": "carries an InternalUserID that no row has",
    "no_user": "row has no user in the pool",
    "no_email": "row has no user in the pool and no e-mail to create one with",
    "email_taken": "row has no user in the pool, and its e-mail belongs to another pool user",
}


@dataclass
class BackfillPlan:
    writes: pd.DataFrame  # AdminUpdateUserAttributes, one per user
    creates: pd.DataFrame  # AdminCreateUser, one per row
    issues: pd.DataFrame
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


def plan_backfill(pool: pd.DataFrame, table: pd.DataFrame, *, create_missing: bool) -> BackfillPlan:
    """Pool users x rows (every row has an id) -> what to write, create and report."""
    p = pool.reset_index(drop=True).copy()
    raw = p["internal_user_id"].astype("string").str.strip()
    p["has_attr"] = raw.notna() & (raw != "")
    p["iid"] = normalise_internal_ids(raw)
    p["email_norm"] = normalise_emails(p["email"])
    t = table.reset_index(drop=True).copy()
    t["iid"] = normalise_internal_ids(t["InternalUserID"])
    t["email_norm"] = normalise_emails(t["Email"])

    # Row of each pool user: by sub, else by a unique e-mail.
    by_sub = p["sub"].map(t.dropna(subset=["CognitoID"]).set_index("CognitoID")["UserID"])
    pool_email_shared = p["email_norm"].notna() & p["email_norm"].duplicated(keep=False)
    rows_per_email = t["email_norm"].value_counts()
    email_rows = p["email_norm"].map(rows_per_email).fillna(0).astype(int)
    unique_email_row = t[t["email_norm"].map(rows_per_email) == 1].set_index("email_norm")["UserID"]
    by_email = p["email_norm"].map(unique_email_row).where(~pool_email_shared & by_sub.isna())
    claimed_by_sub = set(by_sub.dropna())
    row_claimed = member_of(by_email, claimed_by_sub)
    by_email = by_email.where(~row_claimed)
    p["UserID"] = by_sub.fillna(by_email).astype("Int64")
    p["matched_by"] = pd.Series("sub", index=p.index).where(by_sub.notna(), "e-mail").where(p["UserID"].notna())
    p = p.merge(t[["UserID", "iid"]].rename(columns={"iid": "row_iid"}), on="UserID", how="left")

    id_shared = p["iid"].notna() & p["iid"].duplicated(keep=False)
    carried = set(p["iid"].dropna())
    matched = p["UserID"].notna()
    reason = pd.Series(pd.NA, index=p.index, dtype="string")
    category = pd.Series(pd.NA, index=p.index, dtype="string")

    def decide(mask: pd.Series, cat: str, why: str) -> None:
        free = mask & category.isna()
        category[free] = cat
        reason[free] = REASON[why]

    decide(p["has_attr"] & p["iid"].isna(), "conflict", "invalid_id")
    decide(id_shared, "conflict", "shared_id")
    decide(matched & p["has_attr"] & p["iid"].eq(p["row_iid"]).fillna(False), "done", "done")
    decide(matched & p["has_attr"], "conflict", "different_id")
    decide(matched & p["row_iid"].isna(), "conflict", "row_invalid_id")
    decide(matched & member_of(p["row_iid"], carried), "conflict", "id_taken")
    decide(matched, "write", "write")
    decide(p["has_attr"] & member_of(p["iid"], t["iid"]), "done", "done")
    decide(p["has_attr"], "unlinked", "unknown_id")
    decide(row_claimed.reindex(p.index, fill_value=False), "conflict", "row_claimed")
    decide(pool_email_shared, "conflict", "pool_email_shared")
    decide(email_rows > 1, "conflict", "row_email_shared")
    decide(pd.Series(True, index=p.index), "unlinked", "no_row")

    writes = p[category == "write"].assign(InternalUserID=lambda f: f["row_iid"])[WRITE_COLUMNS]
    reported = category.isin(["conflict", "unlinked"])
    issues = p[reported].assign(InternalUserID=raw[reported], category=category[reported], reason=reason[reported])[
        ISSUE_COLUMNS
    ]

    # Rows that no pool user stands for, by sub, e-mail or id.
    represented = set(p["UserID"].dropna()) | set(t.loc[member_of(t["iid"], carried), "UserID"])
    orphans = t[~t["UserID"].isin(represented)]
    pool_emails = set(p["email_norm"].dropna())
    invalid_id = orphans["iid"].isna()
    no_email = orphans["email_norm"].isna() & ~invalid_id
    email_taken = member_of(orphans["email_norm"], pool_emails) & ~no_email & ~invalid_id
    creatable = orphans[~invalid_id & ~no_email & ~email_taken]

    def missing(rows: pd.DataFrame, why: str) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "sub": pd.NA,
                "username": pd.NA,
                "UserID": rows["UserID"].values,
                "InternalUserID": rows["InternalUserID"].values,
                "category": "missing_user",
                "reason": REASON[why],
            }
        )

    orphan_issues = [
        missing(orphans[mask], why)
        for mask, why in ((invalid_id, "row_invalid_id"), (no_email, "no_email"), (email_taken, "email_taken"))
    ]
    if not create_missing:
        orphan_issues.append(missing(creatable, "no_user"))
        creatable = creatable.iloc[0:0]
    creates = creatable.assign(InternalUserID=creatable["iid"])[CREATE_COLUMNS]
    issues = pd.concat([issues, *[o for o in orphan_issues if len(o)]], ignore_index=True)

    counts = dict.fromkeys(BACKFILL_CATEGORIES, 0)
    counts.update({str(k): int(v) for k, v in category.value_counts().items()})
    counts["create"] = len(creates)
    counts["missing_user"] = int((issues["category"] == "missing_user").sum())
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


def _error_code(exc: ClientError) -> str:
    return exc.response.get("Error", {}).get("Code", "")


def _paced_calls(
    rows: Iterable[tuple[Any, ...]],
    call: Callable[..., Any],
    tolerated: str,
    outcomes: tuple[str, str],
    limiter: RateLimiter,
    progress: Progress,
) -> dict[str, int]:
    """One call per row at the limiter's pace; ``tolerated`` (an error code) counts as done by someone else."""
    done, skipped = outcomes
    outcome = {done: 0, skipped: 0}
    for row in rows:
        limiter.acquire()
        try:
            call(*row)
            outcome[done] += 1
        except ClientError as exc:
            if _error_code(exc) != tolerated:
                raise
            outcome[skipped] += 1
        progress.step()
    return outcome


def write_attributes(
    hook: CognitoHook, user_pool_id: str, attribute: str, writes: pd.DataFrame, limiter: RateLimiter, label: str
) -> dict[str, int]:
    """AdminUpdateUserAttributes for each planned write, paced; a user deleted meanwhile is skipped."""
    rows = writes[["username", "InternalUserID"]].itertuples(index=False, name=None)
    return _paced_calls(
        rows,
        lambda username, internal_id: hook.set_attribute(user_pool_id, username, attribute, internal_id),
        "UserNotFoundException",
        ("written", "user_gone"),
        limiter,
        Progress(label, len(writes)),
    )


def create_users(
    hook: CognitoHook, user_pool_id: str, attribute: str, creates: pd.DataFrame, limiter: RateLimiter, label: str
) -> dict[str, int]:
    """AdminCreateUser (no invitation) with the id set at creation; a user created by an earlier try is skipped."""

    def create(email: str, internal_id: str, given: Any, family: Any) -> None:
        attributes = {"email": email, attribute: internal_id}
        for name, value in (("given_name", given), ("family_name", family)):
            if isinstance(value, str) and value:
                attributes[name] = value
        hook.create_user(user_pool_id, email, attributes)

    rows = creates[["Email", "InternalUserID", "FirstName", "LastName"]].itertuples(index=False, name=None)
    return _paced_calls(
        rows, create, "UsernameExistsException", ("created", "already_exists"), limiter, Progress(label, len(creates))
    )


def id_coverage(pool: pd.DataFrame) -> dict[str, Any]:
    """How many of the pool's users carry a valid id: the backfill's final check."""
    valid = int(normalise_internal_ids(pool["internal_user_id"]).notna().sum())
    total = len(pool)
    return {"pool_users": total, "with_valid_id": valid, "share": round(valid / total, 4) if total else 1.0}
