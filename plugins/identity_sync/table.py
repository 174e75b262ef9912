"""The Users table: read it, and apply a Plan in one transaction under a per-environment lock.

Set-based: the changed rows are staged into temporary tables with executemany, then a
handful of statements join them onto Users. Nothing else touches the table, so the
plan is the complete record of what a run changed.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd

from identity_sync.config import Environment
from identity_sync.identity import email_keys, member_of, new_internal_id
from identity_sync.reconcile import TABLE_COLUMNS, Plan
from identity_sync.sql import Dialect, dialect_for, statement, statements

log = logging.getLogger(__name__)


STAGE_BATCH = 50_000  # rows per executemany: bounds the memory of the Python tuples, not the transaction
STAGED_CHANGE_COLUMNS = [  # the order of include/sql/stage_change.sql
    "UserID",
    "ExpectedInternalUserID",
    "SetCognitoID",
    "ClearCognitoID",
    "OldCognitoID",
    "NewCognitoID",
    "SetEmail",
    "ClearEmail",
    "OldEmail",
    "NewEmail",
]
STAGED_INSERT_COLUMNS = ["InternalUserID", "CognitoID", "Email", "FirstName", "LastName"]


class PlanDriftError(RuntimeError):
    """The table changed between planning and applying; nothing was written."""


class UniqueKeyViolationError(RuntimeError):
    """A write would have duplicated a unique key; rolled back. The message names the key, not the value."""


def _unique_key_message(exc: Exception) -> str:
    """MySQL's message quotes the duplicated value (an e-mail, say): keep only the key's name."""
    text = str(exc.args[-1] if exc.args else exc)
    key = re.search(r"for key '([^']+)'", text)
    where = key.group(1) if key else text.split(":", 1)[-1].strip() if "UNIQUE constraint" in text else "unknown"
    return f"a write would duplicate unique key {where}; the transaction was rolled back, nothing was written"


class LockNotAcquiredError(RuntimeError):
    """Another run holds this environment's lock."""


@dataclass(frozen=True)
class ApplyResult:
    rows_updated: int
    rows_inserted: int
    cognito_ids_set: int
    emails_set: int

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def database_hook(conn_id: str) -> Any:
    """The DbApiHook of a connection (MySqlHook or SqliteHook), chosen by its conn_type."""
    from airflow.sdk import BaseHook

    return BaseHook.get_connection(conn_id).get_hook()


class UsersTable:
    """One environment's Users table behind a DB-API connection."""

    def __init__(self, connection: Any, dialect: Dialect, table: str, lock_name: str) -> None:
        self.connection = connection
        self.dialect = dialect
        self.table = table
        self.lock_name = lock_name

    @classmethod
    @contextmanager
    def open(cls, env: Environment) -> Iterator[UsersTable]:
        hook = database_hook(env.db_conn_id)
        dialect = dialect_for(hook.get_connection(env.db_conn_id).conn_type)
        connection = hook.get_conn()
        try:
            yield cls(connection, dialect, env.users_table, env.lock_name)
        finally:
            connection.close()

    def _statement(self, name: str) -> str:
        return statement(name, self.dialect, self.table)

    def _scalar(self, cursor: Any, name: str, params: tuple[Any, ...] = ()) -> Any:
        cursor.execute(self._statement(name), params)
        return cursor.fetchone()[0]

    def read(self) -> pd.DataFrame:
        """UserID, InternalUserID, CognitoID, Email of every row."""
        cursor = self.connection.cursor()
        try:
            cursor.execute(self._statement("read_users"))
            frame = pd.DataFrame.from_records(cursor.fetchall(), columns=TABLE_COLUMNS)
        finally:
            cursor.close()
        frame["UserID"] = frame["UserID"].astype("int64")
        for column in TABLE_COLUMNS[1:]:
            frame[column] = frame[column].astype("string")
        return frame

    def read_for_backfill(self, has_id_column: bool = True) -> pd.DataFrame:
        """The keys and the names (the backfill creates users from them); before migration V1, no ids."""
        cursor = self.connection.cursor()
        try:
            cursor.execute(self._statement("read_users_for_backfill" if has_id_column else "read_users_before_ids"))
            frame = pd.DataFrame.from_records(cursor.fetchall(), columns=[*TABLE_COLUMNS, "FirstName", "LastName"])
        finally:
            cursor.close()
        frame["UserID"] = frame["UserID"].astype("int64")
        return frame.astype({c: "string" for c in frame.columns if c != "UserID"})

    def assign_missing_ids(self, batch_size: int = 50_000, lock_timeout: int = 30) -> int:
        """Give every row without an InternalUserID a new random one; one transaction per batch.

        Rows that have an id are never touched (the UPDATE re-checks IS NULL), so a run that
        dies half way is simply run again.
        """
        cursor = self.connection.cursor()
        try:
            cursor.execute(self._statement("read_rows_without_id"))
            missing = [row[0] for row in cursor.fetchall()]
        finally:
            cursor.close()
        assigned = 0
        for start in range(0, len(missing), batch_size):
            batch = [(user_id, new_internal_id()) for user_id in missing[start : start + batch_size]]
            with self.transaction(lock_timeout) as cursor:
                for name in ("drop_staged_ids", "create_staged_ids"):
                    cursor.execute(self._statement(name))
                cursor.executemany(self._statement("stage_id"), batch)
                cursor.execute(self._statement("assign_staged_ids"))
                assigned += cursor.rowcount
                cursor.execute(self._statement("drop_staged_ids"))
            log.info("assigned InternalUserIDs: %d of %d rows", min(start + batch_size, len(missing)), len(missing))
        return assigned

    @contextmanager
    def transaction(self, lock_timeout: int = 30) -> Iterator[Any]:
        """BEGIN .. COMMIT under the environment's lock; any exception rolls everything back."""
        cursor = self.connection.cursor()
        locked = False
        try:
            if self.dialect.name == "mysql":
                if self._scalar(cursor, "acquire_lock", (self.lock_name, lock_timeout)) != 1:
                    raise LockNotAcquiredError(
                        f"lock {self.lock_name!r} is held by another run (waited {lock_timeout}s); nothing was written"
                    )
                locked = True
            else:
                self.connection.isolation_level = None  # our BEGIN/COMMIT, not sqlite3's implicit ones
            for sql in statements("begin", self.dialect):
                cursor.execute(sql)
            try:
                yield cursor
                self.connection.commit() if self.dialect.name == "mysql" else cursor.execute("COMMIT")
            except BaseException:
                self.connection.rollback() if self.dialect.name == "mysql" else cursor.execute("ROLLBACK")
                raise
        finally:
            if locked:
                cursor.execute(self._statement("release_lock"), (self.lock_name,))
                cursor.fetchall()
            cursor.close()

    def apply(self, plan: Plan, lock_timeout: int = 30) -> ApplyResult:
        """Apply the plan's changes and inserts, all or nothing."""
        changes = staged_changes(plan.changes)
        inserts = plan.inserts[STAGED_INSERT_COLUMNS]
        if changes.empty and inserts.empty:
            return ApplyResult(0, 0, 0, 0)
        try:
            inserted = self._apply_staged(changes, inserts, lock_timeout)
        except Exception as exc:
            if type(exc).__name__ != "IntegrityError":
                raise
            raise UniqueKeyViolationError(_unique_key_message(exc)) from None  # the original quotes the value
        kinds = plan.changes["column"].value_counts()
        return ApplyResult(
            rows_updated=len(changes),
            rows_inserted=inserted,
            cognito_ids_set=int(kinds.get("CognitoID", 0)),
            emails_set=int(kinds.get("Email", 0)),
        )

    def _stage(self, cursor: Any, statement_name: str, frame: pd.DataFrame) -> None:
        """executemany in batches: only one batch of Python tuples is alive at a time."""
        sql = self._statement(statement_name)
        for start in range(0, len(frame), STAGE_BATCH):
            cursor.executemany(sql, _db_rows(frame.iloc[start : start + STAGE_BATCH]))

    def _apply_staged(self, changes: pd.DataFrame, inserts: pd.DataFrame, lock_timeout: int) -> int:
        with self.transaction(lock_timeout) as cursor:
            for name in ("drop_staging", "create_staged_changes", "create_staged_inserts"):
                for sql in statements(name, self.dialect, self.table):
                    cursor.execute(sql)
            self._stage(cursor, "stage_change", changes)
            self._stage(cursor, "stage_insert", inserts)
            drifted = self._scalar(cursor, "count_drifted_rows")
            if drifted:
                raise PlanDriftError(
                    f"{drifted} of {len(changes)} rows to update changed since the plan was made; "
                    "nothing was written: run the sync again"
                )
            present = self._scalar(cursor, "count_present_inserts")
            if present:
                raise PlanDriftError(
                    f"{present} of {len(inserts)} InternalUserIDs to insert appeared since the plan was made; "
                    "nothing was written: run the sync again"
                )
            if changes[["ClearCognitoID", "ClearEmail"]].to_numpy().any():  # swaps and chains only
                cursor.execute(self._statement("clear_changed_keys"))
            if len(changes):
                cursor.execute(self._statement("set_changed_keys"))
            inserted = 0
            if len(inserts):
                cursor.execute(self._statement("insert_staged_rows"))
                inserted = cursor.rowcount
                if inserted != len(inserts):
                    raise RuntimeError(f"inserted {inserted} rows, expected {len(inserts)}; rolled back")
            for sql in statements("drop_staging", self.dialect, self.table):
                cursor.execute(sql)
        return inserted


def staged_changes(changes: pd.DataFrame) -> pd.DataFrame:
    """One staging tuple per row, both columns at once.

    A row must be cleared before the others are set when its old value is another
    staged row's new value (a swap or a chain); only those rows are cleared.
    """
    if changes.empty:
        return pd.DataFrame(columns=STAGED_CHANGE_COLUMNS)
    rows = changes["UserID"].drop_duplicates().reset_index(drop=True)
    frame = pd.DataFrame({"UserID": rows})
    ids = changes.drop_duplicates("UserID").set_index("UserID")["InternalUserID"]
    frame["ExpectedInternalUserID"] = frame["UserID"].map(ids)
    for column, norm in (("CognitoID", lambda s: s.astype("string")), ("Email", email_keys)):
        mine = changes[changes["column"] == column].set_index("UserID")
        wanted = norm(mine["new"])
        frame[f"Set{column}"] = frame["UserID"].isin(mine.index).astype(int)
        frame[f"Old{column}"] = frame["UserID"].map(mine["old"])
        frame[f"New{column}"] = frame["UserID"].map(mine["new"])
        old_norm = norm(frame[f"Old{column}"].astype("string"))
        frame[f"Clear{column}"] = (frame[f"Set{column}"].astype(bool) & member_of(old_norm, wanted)).astype(int)
    return frame[STAGED_CHANGE_COLUMNS]


def _db_rows(frame: pd.DataFrame) -> list[tuple[Any, ...]]:
    """DB-API parameter rows: Python scalars, None for every kind of missing value."""
    plain = frame.astype(object)
    return list(map(tuple, plain.where(frame.notna(), None).to_numpy().tolist()))
