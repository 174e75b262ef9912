"""One chunk of the backfill's Cognito writes: re-checked, paced, resumable, reported user by user.

- Just before a batch is written its rows are read again (on a fresh connection, so
  not from an old snapshot): a row whose InternalUserID or link changed since the plan
  (a concurrent sync relinked it, an application changed it) is skipped and reported.
- Every ``CHECKPOINT_EVERY`` users the chunk saves how far it got, with its counts and
  issues: a retry after a crash, or after the process was killed, starts there instead
  of writing every user again (at most that many calls are repeated, and repeating one
  is harmless: the same value again, or a creation that finds its own user).
- AdminCreateUser that meets a user created meanwhile (UsernameExists/AliasExists) looks
  that user up (ListUsers by e-mail: not billable): carrying our id, it is ours from an
  earlier try; otherwise it is someone else's and is reported, never touched. The other
  users of the chunk go on.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from botocore.exceptions import ClientError

from identity_sync.backfill import BACKFILL_ISSUE_COLUMNS, Progress
from identity_sync.backfill_records import Chunk, ChunkOutcome
from identity_sync.cognito import CognitoHook, user_attributes
from identity_sync.config import Environment
from identity_sync.identity import normalise_emails, normalise_internal_ids
from identity_sync.ratelimit import RateLimiter
from identity_sync.report import RunFiles, write_frame_report
from identity_sync.sql import statement
from identity_sync.table import UsersTable

log = logging.getLogger(__name__)

RECHECK_BATCH = 100  # rows read again at once, just before they are written (~20 s of writes at 5/s)
CHECKPOINT_EVERY = 25  # users between saved checkpoints: what a killed chunk may repeat
LOOKUP_RPS = 2.0  # ListUsers by e-mail after a collision: rare, and the quota is shared
COLLISION_CODES = frozenset({"UsernameExistsException", "AliasExistsException"})

WRITE_ISSUE = {
    "row_changed": "the row's InternalUserID or link changed after the plan: skipped, the next run re-plans it",
    "user_gone": "the user was deleted after the plan: skipped",
    "collided": "a user with this e-mail was created meanwhile by someone else: left alone, the next run links it",
}


def _error_code(exc: ClientError) -> str:
    return exc.response.get("Error", {}).get("Code", "")


def read_current_rows(env: Environment, user_ids: list[int]) -> pd.DataFrame:
    """UserID, InternalUserID, CognitoID, Email of the given rows, as committed now."""
    with UsersTable.open(env) as table:
        cursor = table.connection.cursor()
        try:
            cursor.execute(statement("read_rows_by_ids", table.dialect, table.table), (json.dumps(user_ids),))
            rows = list(cursor.fetchall())
        finally:
            cursor.close()
    frame = pd.DataFrame.from_records(rows, columns=["UserID", "InternalUserID", "CognitoID", "Email"])
    frame["UserID"] = frame["UserID"].astype("int64")
    return frame.astype({c: "string" for c in ("InternalUserID", "CognitoID", "Email")})


def changed_since_plan(planned: pd.DataFrame, current: pd.DataFrame, kind: str) -> pd.Series:
    """Planned rows that vanished, or whose id or link is no longer what the plan saw."""
    now = planned[["UserID"]].merge(current.assign(present=True), on="UserID", how="left")
    now.index = planned.index
    present = now["present"].eq(True)
    same_id = normalise_internal_ids(now["InternalUserID"]).eq(planned["InternalUserID"]).fillna(False)
    if kind == "write":
        by_sub = now["CognitoID"].eq(planned["sub"]).fillna(False)
        by_email = planned["matched_by"].eq("e-mail") & normalise_emails(now["Email"]).eq(planned["email_norm"])
        link_holds = by_sub | by_email.fillna(False)
    else:  # a creation: the row still has no user of ours, and the e-mail to create it with
        same_sub = (
            now["CognitoID"].eq(planned["CognitoID"]).fillna(now["CognitoID"].isna() & planned["CognitoID"].isna())
        )
        link_holds = same_sub & now["Email"].eq(planned["Email"]).fillna(False)
    return ~(present & same_id & link_holds.astype(bool))


@dataclass
class ChunkProgress:
    """How far a chunk got, kept next to it: counts, the next row to do, and the users to report."""

    next_row: int = 0
    counts: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(("done", "already_done", "user_gone", "row_changed", "collided"), 0)
    )
    issues: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def load(cls, files: RunFiles, name: str) -> ChunkProgress:
        try:
            return cls(**json.loads(files.read_text(name)))
        except FileNotFoundError:
            return cls()

    def save(self, files: RunFiles, name: str) -> None:
        files.write_text(name, json.dumps({"next_row": self.next_row, "counts": self.counts, "issues": self.issues}))

    def report(self, row: Any, category: str) -> None:
        self.counts[category] += 1
        values = {c: getattr(row, c, None) for c in BACKFILL_ISSUE_COLUMNS}
        values.update(category=category, reason=WRITE_ISSUE[category])
        self.issues.append({k: None if pd.isna(v) else v for k, v in values.items()} | {"UserID": int(row.UserID)})


def _batches(frame: pd.DataFrame, start: int) -> Iterator[pd.DataFrame]:
    for first in range(start, len(frame), RECHECK_BATCH):
        yield frame.iloc[first : first + RECHECK_BATCH]


class ChunkWriter:
    """Runs one chunk: ``write_one(row)`` returns the outcome category of one user."""

    def __init__(self, env: Environment, hook: CognitoHook, chunk: Chunk, limiter: RateLimiter) -> None:
        self.env, self.hook, self.chunk, self.limiter = env, hook, chunk, limiter
        self.files = RunFiles(chunk.files)
        self.lookups = RateLimiter(LOOKUP_RPS)

    def run(self, frame: pd.DataFrame) -> ChunkOutcome:
        progress = ChunkProgress.load(self.files, self.chunk.progress_name)
        resumed_at = progress.next_row
        if resumed_at:
            log.info(
                "%s: resuming at user %d of %d, where an earlier try stopped", self.chunk.label, resumed_at, len(frame)
            )
        write_one = self.write_attribute if self.chunk.kind == "write" else self.create_user
        meter = Progress(self.chunk.label, len(frame) - progress.next_row)
        try:
            for batch in _batches(frame, progress.next_row):
                current = read_current_rows(self.env, batch["UserID"].astype(int).tolist())
                changed = changed_since_plan(batch, current, self.chunk.kind)
                for row, skip in zip(batch.itertuples(index=False), changed, strict=True):
                    if skip:
                        progress.report(row, "row_changed")
                    else:
                        outcome = write_one(row)
                        if outcome in WRITE_ISSUE:
                            progress.report(row, outcome)
                        else:
                            progress.counts[outcome] += 1
                    progress.next_row += 1
                    meter.step()
                    if progress.next_row % CHECKPOINT_EVERY == 0:
                        progress.save(self.files, self.chunk.progress_name)
        finally:
            progress.save(self.files, self.chunk.progress_name)
        return self._outcome(progress, resumed_at)

    def _outcome(self, progress: ChunkProgress, resumed_at: int) -> ChunkOutcome:
        issues = None
        if progress.issues:
            frame = pd.DataFrame(progress.issues, columns=BACKFILL_ISSUE_COLUMNS)
            issues = write_frame_report(self.files, f"{self.chunk.name}.issues.csv.gz", frame)
        return ChunkOutcome(
            environment=self.env.name,
            kind=self.chunk.kind,
            part=self.chunk.part,
            **progress.counts,
            resumed_at=resumed_at,
            throttled=self.hook.throttled,
            issues=issues,
        )

    def write_attribute(self, row: Any) -> str:
        self.limiter.acquire()
        try:
            self.hook.set_attribute(self.env.user_pool_id, row.username, self.env.attribute, row.InternalUserID)
        except ClientError as exc:
            if _error_code(exc) != "UserNotFoundException":
                raise
            return "user_gone"
        return "done"

    def create_user(self, row: Any) -> str:
        attributes = {"email": row.Email, self.env.attribute: row.InternalUserID}
        for name, value in (("given_name", row.FirstName), ("family_name", row.LastName)):
            if isinstance(value, str) and value:
                attributes[name] = value
        self.limiter.acquire()
        try:
            self.hook.create_user(self.env.user_pool_id, row.Email, attributes)
        except ClientError as exc:
            if _error_code(exc) not in COLLISION_CODES:
                raise
            return "already_done" if self._carries_our_id(row) else "collided"
        return "done"

    def _carries_our_id(self, row: Any) -> bool:
        """After a collision: is the user holding this e-mail the one an earlier try created?"""
        if any(c in row.Email for c in '"\\'):
            return False  # not expressible in a ListUsers filter; reported, never guessed
        page = self.hook.call(
            "ListUsers", self.lookups, UserPoolId=self.env.user_pool_id, Filter=f'email = "{row.Email}"', Limit=60
        )
        carried = [user_attributes(user).get(self.env.attribute) for user in page.get("Users", [])]
        ours = normalise_internal_ids(pd.Series(carried, dtype="string")).eq(row.InternalUserID)
        return bool(ours.fillna(False).any())


def write_chunk(env: Environment, hook: CognitoHook, chunk: Chunk, limiter: RateLimiter) -> ChunkOutcome:
    """The chunk's file, written at the limiter's pace; see the module docstring for what is skipped."""
    frame = RunFiles(chunk.files).read_parquet(chunk.name)
    return ChunkWriter(env, hook, chunk, limiter).run(frame)
