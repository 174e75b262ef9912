"""The Users table: read it, and apply a Plan in one transaction under a per-environment lock.

Set-based and lean: each changed key column is staged on its own (UserID, expected id,
old and new value, sorted by UserID; in bulk through ``staging``), every row to change is
locked before it is checked (no lost update), the checks compare exact stored values,
the server finds unique-key collisions with the column's own collation and each becomes a
per-row conflict, and one plain ``UPDATE ... JOIN`` per column writes exactly the staged
rows. Nothing else touches the table, so the plan is the complete record of a run.
"""

from __future__ import annotations

import gc
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from identity_sync.apply_conflicts import Collisions, reason, resolve_collisions
from identity_sync.config import Environment
from identity_sync.guards import RefusedError
from identity_sync.identity import ColumnLimit, arrow_strings, limit_refusals, new_internal_id
from identity_sync.reconcile import INSERT_COLUMNS, LIMITED_COLUMNS, SYNC_ISSUE_COLUMNS, TABLE_COLUMNS, Plan
from identity_sync.sql import STAGED_KEY_TABLES, Dialect, dialect_for, statement, statements
from identity_sync.staging import Stager

log = logging.getLogger(__name__)

KEY_COLUMNS = list(STAGED_KEY_TABLES)  # CognitoID, Email: the unique keys an update writes
STAGED_KEY_COLUMNS = ["UserID", "ExpectedInternalUserID", "OldValue", "NewValue"]
TABLE_FIRST_SHARE = 0.3  # above this share of the table changing, Users drives the UPDATE's join
IDS_PER_STATEMENT = 1000  # ids per ``IN (...)`` list
DRIFT_IDS_SHOWN = 20
READ_BATCH = 50_000  # rows converted at a time when reading the table
SWAP_CHECK_ROWS = 100_000  # up to this many changes of a column, look for swaps before the optimistic write


class PlanDriftError(RefusedError):
    """The table changed between planning and applying; nothing was written. Not retried: re-plan."""


class UniqueKeyViolationError(RuntimeError):
    """A write would have duplicated a unique key; rolled back. The message names the key, not the value."""


class LockNotAcquiredError(RuntimeError):
    """Another run holds this environment's lock."""


def _unique_key_message(exc: Exception) -> str:
    """MySQL's message quotes the duplicated value (an e-mail, say): keep only the key's name."""
    text = str(exc.args[-1] if exc.args else exc)
    key = re.search(r"for key '([^']+)'", text)
    where = key.group(1) if key else text.split(":", 1)[-1].strip() if "UNIQUE constraint" in text else "unknown"
    return f"a write would duplicate unique key {where}; the transaction was rolled back, nothing was written"


def _empty_conflicts() -> pd.DataFrame:
    return pd.DataFrame(columns=SYNC_ISSUE_COLUMNS)


@dataclass(frozen=True)
class ApplyResult:
    """What one apply wrote (only what was really written) and the rows it turned into conflicts."""

    rows_updated: int
    rows_inserted: int
    cognito_ids_set: int
    emails_set: int
    conflicts: pd.DataFrame = field(default_factory=_empty_conflicts, compare=False, repr=False)
    already_applied: bool = False  # a retry after our own commit: the table was at the plan's target

    def as_dict(self) -> dict[str, int | bool]:
        return {
            "rows_updated": self.rows_updated,
            "rows_inserted": self.rows_inserted,
            "cognito_ids_set": self.cognito_ids_set,
            "emails_set": self.emails_set,
            "conflicts": len(self.conflicts),
            "already_applied": self.already_applied,
        }


@dataclass
class StagedWork:
    """The plan as the apply stages it: per key column the rows that change it, and the inserts."""

    keys: dict[str, pd.DataFrame]
    inserts: pd.DataFrame
    table_rows: int = 0  # from the plan's metrics: how large a share of the table changes
    conflicts: list[pd.DataFrame] = field(default_factory=list)
    clear: dict[str, list[int]] = field(default_factory=dict)  # rows whose value another staged row takes
    already_done: int = 0

    @classmethod
    def from_plan(cls, plan: Plan) -> StagedWork:
        """Per key column its changes in UserID order, and the inserts in InternalUserID order.

        Built with Arrow takes over the plan's own columns (no pandas sort or re-typing of
        whole frames): the plan may hold a million changes.
        """
        changes = plan.changes
        user_ids = changes["UserID"].to_numpy(dtype="int64")
        keys = {}
        for column in KEY_COLUMNS:
            rows = np.flatnonzero((changes["column"] == column).to_numpy(dtype=bool, na_value=False))
            mine = user_ids[rows]
            if len(mine) > 1 and not (mine[1:] > mine[:-1]).all():
                order = np.argsort(mine, kind="stable")
                rows, mine = rows[order], mine[order]
            keys[column] = pd.DataFrame(
                {
                    "UserID": mine,
                    "ExpectedInternalUserID": _take_strings(changes["InternalUserID"], rows),
                    "OldValue": _take_strings(changes["old"], rows),
                    "NewValue": _take_strings(changes["new"], rows),
                    "sub": _take_strings(changes["sub"], rows),
                }
            )
        inserts = plan.inserts
        order = (
            pc.sort_indices(arrow_strings(inserts["InternalUserID"].astype("string"))).to_numpy()
            if len(inserts)
            else []
        )
        inserts = pd.DataFrame({name: _take_strings(inserts[name], order) for name in INSERT_COLUMNS})
        return cls(keys=keys, inserts=inserts, table_rows=int(plan.metrics.get("table_rows", 0)))

    @property
    def empty(self) -> bool:
        return self.inserts.empty and all(frame.empty for frame in self.keys.values())

    def demote_rows(self, column: str, reasons: dict[int, str]) -> None:
        """Take these rows' change of ``column`` out of the apply, each a conflict with its reason."""
        frame = self.keys[column]
        hit = frame["UserID"].isin(list(reasons))
        out = frame[hit]
        self._add_conflicts(out["sub"], out["ExpectedInternalUserID"], out["UserID"], out["UserID"].map(reasons))
        self.keys[column] = frame[~hit].reset_index(drop=True)

    def demote_inserts(self, reasons: dict[str, str]) -> None:
        hit = self.inserts["InternalUserID"].isin(list(reasons))
        out = self.inserts[hit]
        self._add_conflicts(out["CognitoID"], out["InternalUserID"], pd.NA, out["InternalUserID"].map(reasons))
        self.inserts = self.inserts[~hit].reset_index(drop=True)

    def _add_conflicts(self, sub: pd.Series, internal_id: pd.Series, user_id: Any, why: pd.Series) -> None:
        self.conflicts.append(
            pd.DataFrame(
                {
                    "sub": sub.to_numpy(),
                    "username": pd.NA,
                    "InternalUserID": internal_id.to_numpy(),
                    "UserID": user_id.to_numpy() if isinstance(user_id, pd.Series) else user_id,
                    "email": pd.NA,
                    "category": "conflict",
                    "reason": why.to_numpy(),
                }
            )
        )

    def demote_unfit(self, limits: dict[str, ColumnLimit]) -> None:
        """Values their column cannot hold become conflicts here, before anything is staged."""
        for column, frame in self.keys.items():
            if column in limits:
                why = limit_refusals(frame["NewValue"], column, limits[column])
                self.demote_rows(column, dict(zip(frame.loc[why.notna(), "UserID"], why.dropna(), strict=True)))
        why = pd.Series(pd.NA, index=self.inserts.index, dtype="string")
        for column in LIMITED_COLUMNS:
            if column in limits:
                why = why.fillna(limit_refusals(self.inserts[column], column, limits[column]))
        self.demote_inserts(dict(zip(self.inserts.loc[why.notna(), "InternalUserID"], why.dropna(), strict=True)))

    def result(self, inserted: int) -> ApplyResult:
        """What was written; ``already_applied`` when rows held the plan's values already and none was written."""
        updated = pd.concat([frame["UserID"] for frame in self.keys.values()]).nunique()
        parts = [c for c in self.conflicts if len(c)]
        conflicts = pd.concat(parts, ignore_index=True) if parts else _empty_conflicts()
        return ApplyResult(
            rows_updated=int(updated),
            rows_inserted=inserted,
            cognito_ids_set=len(self.keys["CognitoID"]),
            emails_set=len(self.keys["Email"]),
            conflicts=conflicts[SYNC_ISSUE_COLUMNS],
            already_applied=self.already_done > 0 and not (updated or inserted),
        )


def database_hook(conn_id: str) -> Any:
    """The DbApiHook of a connection (MySqlHook or SqliteHook), chosen by its conn_type.

    MySqlHook enables the client's LOAD DATA LOCAL only when asked (a hook argument, not
    an extra it reads): the connection's extra ``{"local_infile": true}`` asks for it.
    """
    from airflow.sdk import BaseHook

    connection = BaseHook.get_connection(conn_id)
    wants_bulk = connection.conn_type == "mysql" and bool(connection.extra_dejson.get("local_infile"))
    return connection.get_hook(hook_params={"local_infile": True} if wants_bulk else None)


def _quietly(action: Any, what: str) -> None:
    """Clean-up while an error (or a commit) decides the outcome: its own failure must not mask that."""
    try:
        action()
    except Exception as exc:  # the server may be gone: that is what the first error already says
        log.warning("%s failed too (%s %s); the first error is the one that counts", what, type(exc).__name__, exc)


class UsersTable:
    """One environment's Users table behind a DB-API connection."""

    def __init__(self, connection: Any, dialect: Dialect, table: str, lock_name: str) -> None:
        self.connection = connection
        self.dialect = dialect
        self.table = table
        self.lock_name = lock_name
        bulk = dialect.name == "mysql"  # LOAD DATA LOCAL, and its warning count, are MySQL's
        self.stager = Stager(bulk=bulk, warning_count_sql=self._sql("warning_count") if bulk else "")

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

    def _sql(self, name: str, column: str | None = None, ids: int = 0) -> str:
        return statement(name, self.dialect, self.table, column=column, ids=ids)

    def _scalar(self, cursor: Any, name: str, params: tuple[Any, ...] = ()) -> Any:
        cursor.execute(self._sql(name), params)
        return cursor.fetchone()[0]

    def _rows(self, cursor: Any, name: str, column: str | None = None) -> list[tuple[Any, ...]]:
        cursor.execute(self._sql(name, column))
        return list(cursor.fetchall())

    def read(self) -> pd.DataFrame:
        """UserID, InternalUserID, CognitoID, Email of every row."""
        return self._read_frame("read_users", TABLE_COLUMNS)

    def read_for_backfill(self, has_id_column: bool = True) -> pd.DataFrame:
        """The keys and the names (the backfill creates users from them); before migration V1, no ids."""
        name = "read_users_for_backfill" if has_id_column else "read_users_before_ids"
        return self._read_frame(name, [*TABLE_COLUMNS, "FirstName", "LastName"])

    def _read_frame(self, name: str, columns: list[str]) -> pd.DataFrame:
        """The rows of a SELECT whose first column is UserID and the others text: int64 and Arrow-backed
        ``string`` columns, filled READ_BATCH rows at a time (no list of every row, no object frame).

        MySQL streams the rows (an unbuffered cursor) instead of holding the whole result first.
        """
        cursor = self._streaming_cursor()
        parts: list[list[pa.Array]] = [[] for _ in columns]
        types = [pa.int64(), *[pa.string()] * (len(columns) - 1)]  # large_string from a tuple is 30x slower
        try:
            with _without_cyclic_gc():
                cursor.execute(self._sql(name))
                while rows := cursor.fetchmany(READ_BATCH):
                    for part, kind, values in zip(parts, types, zip(*rows, strict=True), strict=True):
                        part.append(pa.array(values, type=kind))
                    del rows
        finally:
            cursor.close()
        chunked = [pa.chunked_array(part, type=kind) for part, kind in zip(parts, types, strict=True)]
        frame = {columns[0]: chunked[0].to_numpy()}
        for column, values in zip(columns[1:], chunked[1:], strict=True):
            frame[column] = pd.arrays.ArrowStringArray(values.cast(pa.large_string()))
        return pd.DataFrame(frame)

    def _streaming_cursor(self) -> Any:
        """MySQL: an unbuffered cursor (rows come as they are fetched); elsewhere the connection's own."""
        if self.dialect.name == "mysql":
            try:
                from MySQLdb.cursors import SSCursor

                return self.connection.cursor(SSCursor)
            except (ImportError, TypeError):  # another driver, or a wrapper whose cursor() takes no class
                pass
        return self.connection.cursor()

    def column_limits(self) -> dict[str, ColumnLimit]:
        """Width and character set of CognitoID, Email, FirstName, LastName (SQLite: none, {})."""
        if self.dialect.name != "mysql":
            return {}
        cursor = self.connection.cursor()
        try:
            cursor.execute(self._sql("column_limits"), (self.table,))
            rows = cursor.fetchall()
        finally:
            cursor.close()
        return {str(name): ColumnLimit(int(width), str(charset)) for name, width, charset in rows if width}

    def assign_missing_ids(self, batch_size: int = 50_000, lock_timeout: int = 30) -> int:
        """Give every row without an InternalUserID a new random one; one transaction per batch.

        Rows that have an id are never touched (the UPDATE re-checks IS NULL), so a run that
        dies half way is simply run again.
        """
        cursor = self.connection.cursor()
        try:
            cursor.execute(self._sql("read_rows_without_id"))
            missing = [row[0] for row in cursor.fetchall()]
        finally:
            cursor.close()
        assigned = 0
        for start in range(0, len(missing), batch_size):
            batch = [(user_id, new_internal_id()) for user_id in missing[start : start + batch_size]]
            with self.transaction(lock_timeout) as cursor:
                for name in ("drop_staged_ids", "create_staged_ids"):
                    cursor.execute(self._sql(name))
                cursor.executemany(self._sql("stage_id"), batch)
                cursor.execute(self._sql("assign_staged_ids"))
                assigned += cursor.rowcount
                cursor.execute(self._sql("drop_staged_ids"))
            log.info("assigned InternalUserIDs: %d of %d rows", min(start + batch_size, len(missing)), len(missing))
        return assigned

    # -- transactions ------------------------------------------------------------------------

    @contextmanager
    def transaction(self, lock_timeout: int = 30) -> Iterator[Any]:
        """BEGIN .. COMMIT under the environment's lock, in a strict session; any exception rolls back.

        BEGIN, COMMIT and ROLLBACK are all statements of include/sql. When the server dies,
        the error raised is the one that failed first, never the follow-on of the clean-up.
        """
        cursor = self.connection.cursor()
        try:
            with self._environment_lock(cursor, lock_timeout), self._strict_session(cursor):
                self._run(cursor, "begin")
                try:
                    yield cursor
                except BaseException:
                    _quietly(lambda: cursor.execute(self._sql("rollback")), "ROLLBACK")
                    raise
                cursor.execute(self._sql("commit"))
        finally:
            _quietly(cursor.close, "closing the cursor")

    @contextmanager
    def _environment_lock(self, cursor: Any, lock_timeout: int) -> Iterator[None]:
        """MySQL's named lock per environment (SQLite: BEGIN IMMEDIATE is the lock)."""
        if self.dialect.name != "mysql":
            yield
            return
        if self._scalar(cursor, "acquire_lock", (self.lock_name, lock_timeout)) != 1:
            raise LockNotAcquiredError(
                f"lock {self.lock_name!r} is held by another run (waited {lock_timeout}s); nothing was written"
            )

        def release() -> None:
            cursor.execute(self._sql("release_lock"), (self.lock_name,))
            cursor.fetchall()

        try:
            yield
        finally:
            _quietly(release, "releasing the environment lock")

    @contextmanager
    def _strict_session(self, cursor: Any) -> Iterator[None]:
        """STRICT_ALL_TABLES for this session while we write (a value that does not fit fails, never
        shrinks); the session's own mode is put back after. SQLite: our own BEGIN/COMMIT."""
        if self.dialect.name != "mysql":
            self.connection.isolation_level = None  # no implicit transactions of sqlite3
            yield
            return
        saved = self._scalar(cursor, "read_sql_mode")
        cursor.execute(self._sql("strict_sql_mode"))
        try:
            yield
        finally:
            _quietly(lambda: cursor.execute(self._sql("restore_sql_mode"), (saved,)), "restoring sql_mode")

    # -- apply -------------------------------------------------------------------------------

    def apply(self, plan: Plan, lock_timeout: int = 30) -> ApplyResult:
        """Apply the plan's changes and inserts, all or nothing; rows that cannot be written are conflicts.

        Raises PlanDriftError (a RefusedError: no retry) when a row changed since the plan,
        UniqueKeyViolationError when a concurrent write took a value meanwhile.
        """
        work = StagedWork.from_plan(plan)
        if work.empty:
            return work.result(0)
        work.demote_unfit(self.column_limits())
        if work.empty:
            return work.result(0)
        try:
            with self.transaction(lock_timeout) as cursor:
                return self._apply_staged(cursor, work)
        except Exception as exc:
            if type(exc).__name__ != "IntegrityError":
                raise
            raise UniqueKeyViolationError(_unique_key_message(exc)) from None  # the original quotes the value

    def _apply_staged(self, cursor: Any, work: StagedWork) -> ApplyResult:
        self._run(cursor, "drop_staging")
        self._stage(cursor, work)
        if self._optimistic_fits(cursor, work):
            inserted = self._write_optimistically(cursor, work)
            if inserted is not None:
                self._run(cursor, "drop_staging")
                return work.result(inserted)
        return self._apply_carefully(cursor, work)

    def _apply_carefully(self, cursor: Any, work: StagedWork) -> ApplyResult:
        """Lock, settle (drift, already applied), resolve collisions row by row, clear, then write."""
        self._settle(cursor, work)
        if work.empty:
            self._run(cursor, "drop_staging")
            log.info("every staged row already holds the planned values: applied before, nothing written")
            return work.result(0)
        self._resolve_collisions(cursor, work)
        for column in KEY_COLUMNS:
            self._write_column(cursor, column, work)
        inserted = 0
        if len(work.inserts):
            cursor.execute(self._sql("insert_staged_rows"))
            inserted = cursor.rowcount
            _check_count("INSERT", inserted, len(work.inserts))
        self._run(cursor, "drop_staging")
        return work.result(inserted)

    # -- the optimistic write -----------------------------------------------------------------

    def _optimistic_fits(self, cursor: Any, work: StagedWork) -> bool:
        """Whether the plain write may go first: MySQL, a single-column unique index on every key the
        write relies on the server to guard, and no staged value that another staged row holds now
        (a swap or a chain would fail mid-UPDATE: it goes the careful way at once, clear then set).
        """
        if self.dialect.name != "mysql":
            return False
        unchanged = [column for column, frame in work.keys.items() if _sets_a_value_it_holds(frame)]
        if unchanged:  # the careful path reports such a row as not written, as it always has
            log.info("careful apply: a staged %s value equals its old value", ", ".join(unchanged))
            return False
        likely = [column for column, frame in work.keys.items() if _takes_staged_values(frame)]
        if likely:
            log.info("careful apply: staged %s values are taken from other staged rows (swaps)", ", ".join(likely))
            return False
        needed = {column for column, frame in work.keys.items() if len(frame)}
        if len(work.inserts):
            needed |= {"InternalUserID", *KEY_COLUMNS}
        cursor.execute(self._sql("unique_key_columns"), (self.table,))
        columns: dict[str, set[str]] = {}
        for index, column in cursor.fetchall():
            columns.setdefault(str(index), set()).add(str(column))
        guarded = {next(iter(c)) for c in columns.values() if len(c) == 1}
        if not needed <= guarded:
            log.info("careful apply: no single-column unique index on %s", ", ".join(sorted(needed - guarded)))
            return False
        return True

    def _write_optimistically(self, cursor: Any, work: StagedWork) -> int | None:
        """One compare-and-set UPDATE per column, then the INSERT, after a savepoint; rows inserted.

        Every staged row must be written exactly as staged: a row not as the plan found it (drift,
        or our own earlier commit) makes a count short, a collision under the column's collation
        makes the server refuse the duplicate key. Either way everything since the savepoint is
        undone (the row locks stay) and None sends the apply down the careful path, which then
        reaches exactly the outcome it reaches without this attempt. Any other error is the apply's.
        The smallest column goes first: a refusal costs least there.
        """
        self._run(cursor, "savepoint")
        try:
            for column, frame in sorted(work.keys.items(), key=lambda item: len(item[1])):
                if frame.empty:
                    continue
                table_first = self._table_first(len(frame), work)
                cursor.execute(
                    self._sql("set_keys_as_planned_table_first" if table_first else "set_keys_as_planned", column)
                )
                if cursor.rowcount != len(frame):
                    return self._fall_back(cursor, f"{column}: {cursor.rowcount} of {len(frame)} rows as planned")
            inserted = 0
            if len(work.inserts):
                taken = self._inserts_taken(cursor)
                if taken:
                    return self._fall_back(cursor, taken)
                cursor.execute(self._sql("insert_staged_rows"))
                inserted = cursor.rowcount
                if inserted != len(work.inserts):
                    return self._fall_back(cursor, f"{inserted} of {len(work.inserts)} rows inserted")
        except Exception as exc:
            if type(exc).__name__ != "IntegrityError":
                raise
            return self._fall_back(cursor, f"the server refused a duplicate key (error {exc.args[0]})")
        log.info("optimistic apply: every staged row written as planned, no separate check needed")
        return inserted

    def _inserts_taken(self, cursor: Any) -> str:
        """Why the staged inserts cannot all go in now (after the UPDATEs), or "" when they can.

        Checked before the INSERT rather than left to its duplicate-key error, which would spend
        AUTO_INCREMENT values the careful path would not: locking reads of the ids and key values
        the inserts take, as the table stands after the UPDATEs, and duplicates among the inserts.
        """
        if self._rows(cursor, "unsettled_inserts"):
            return "an InternalUserID to insert is in the table"
        for column in KEY_COLUMNS:
            for name, what in (("inserts_taken", "held by a row"), ("inserts_planned_twice", "planned twice")):
                cursor.execute(self._sql(name, column))
                if cursor.fetchone()[0]:
                    return f"a {column} to insert is {what}"
        return ""

    def _fall_back(self, cursor: Any, why: str) -> None:
        self._run(cursor, "rollback_to_savepoint")
        log.info("optimistic apply undone (%s): the careful path decides", why)

    def _run(self, cursor: Any, name: str) -> None:
        for sql in statements(name, self.dialect, self.table):
            cursor.execute(sql)

    def _stage(self, cursor: Any, work: StagedWork) -> None:
        """Create the staging tables and fill them: lean columns, primary-key order, in bulk if allowed."""
        bulk = self.dialect.name == "mysql"
        for column, frame in work.keys.items():
            cursor.execute(self._sql(f"create_{STAGED_KEY_TABLES[column].removeprefix('sync_')}", column))
            load = self._sql("load_staged_keys", column) if bulk else None
            self.stager.stage(cursor, frame[STAGED_KEY_COLUMNS], load, self._sql("stage_keys", column))
        cursor.execute(self._sql("create_staged_inserts"))
        load = self._sql("load_staged_inserts") if bulk else None
        self.stager.stage(cursor, work.inserts, load, self._sql("stage_insert"))

    def _settle(self, cursor: Any, work: StagedWork) -> None:
        """Lock the rows to change, then compare them exactly with what the plan found.

        A row already holding the new value is taken out (our own commit, retried); any other
        difference is drift: refuse, naming what changed, before anything is written.
        """
        unsettled: dict[str, list[tuple[Any, ...]]] = {}
        for column, frame in work.keys.items():
            if frame.empty:
                continue
            cursor.execute(self._sql("lock_staged_keys", column))
            staged, pending = cursor.fetchone()
            if int(pending) < int(staged):
                unsettled[column] = self._rows(cursor, "unsettled_keys", column)
        appeared = self._rows(cursor, "unsettled_inserts") if len(work.inserts) else []
        drift = {c: [r for r in rows if r[2] != "done"] for c, rows in unsettled.items()}
        missing = [r[0] for r in appeared if r[1] != "done"]
        if any(drift.values()) or missing:
            raise PlanDriftError(_drift_message(self.table, work, drift, missing))
        for column, rows in unsettled.items():
            done = [int(r[0]) for r in rows]
            self._unstage(cursor, "unstage_keys", column, done)
            work.keys[column] = work.keys[column][~work.keys[column]["UserID"].isin(done)].reset_index(drop=True)
            work.already_done += len(done)
        done_inserts = [str(r[0]) for r in appeared]
        self._unstage(cursor, "unstage_inserts", None, done_inserts)
        work.inserts = work.inserts[~work.inserts["InternalUserID"].isin(done_inserts)].reset_index(drop=True)
        work.already_done += len(done_inserts)

    def _unstage(self, cursor: Any, name: str, column: str | None, ids: list[Any]) -> None:
        for start in range(0, len(ids), IDS_PER_STATEMENT):
            chunk = ids[start : start + IDS_PER_STATEMENT]
            cursor.execute(self._sql(name, column, ids=len(chunk)), tuple(chunk))

    def _resolve_collisions(self, cursor: Any, work: StagedWork) -> None:
        """Ask the server which staged values its unique indexes would refuse; demote those rows."""
        found = {}
        for column in KEY_COLUMNS:
            held = pd.DataFrame(self._rows(cursor, "held_by_other_rows", column), columns=["wants", "holds"])
            inserts_held = pd.DataFrame(self._rows(cursor, "inserts_held_by_rows", column), columns=["new", "holds"])
            twice = (
                self._rows(cursor, "planned_twice", column)
                if self._rows(cursor, "count_planned_twice", column)[0][0]
                else []
            )
            found[column] = Collisions(
                held=held,
                inserts_held=inserts_held,
                twice_rows={int(r[0]) for r in twice if r[0] is not None},
                twice_inserts={str(r[1]) for r in twice if r[1] is not None},
            )
        staged = {column: set(work.keys[column]["UserID"].tolist()) for column in KEY_COLUMNS}
        resolution = resolve_collisions(staged, found)
        for column, demoted in resolution.demoted.items():
            if demoted:
                self._unstage(cursor, "unstage_keys", column, sorted(demoted))
                work.demote_rows(column, {uid: reason(kind, column) for uid, kind in demoted.items()})
        if resolution.demoted_inserts:
            self._unstage(cursor, "unstage_inserts", None, sorted(resolution.demoted_inserts))
            work.demote_inserts({i: reason(kind, c) for i, (c, kind) in resolution.demoted_inserts.items()})
        work.clear = resolution.clear

    def _table_first(self, rows: int, work: StagedWork) -> bool:
        """Whether Users drives an UPDATE's join (in primary-key order): MySQL, and a large share changing."""
        return self.dialect.name == "mysql" and bool(work.table_rows) and rows / work.table_rows > TABLE_FIRST_SHARE

    def _write_column(self, cursor: Any, column: str, work: StagedWork) -> None:
        """Clear the values other staged rows take (swaps, chains), then one plain UPDATE of the staged rows.

        The join order follows the share of the table that changes: the staged rows drive a
        small change, Users (in primary-key order) a large one.
        """
        frame = work.keys[column]
        if frame.empty:
            return
        clear = work.clear.get(column, [])
        for start in range(0, len(clear), IDS_PER_STATEMENT):
            chunk = clear[start : start + IDS_PER_STATEMENT]
            cursor.execute(self._sql("clear_keys", column, ids=len(chunk)), tuple(chunk))
            _check_count(f"clearing {column}", cursor.rowcount, len(chunk))
        table_first = self._table_first(len(frame), work)
        cursor.execute(self._sql("set_keys_table_first" if table_first else "set_keys", column))
        # MySQL counts the rows an UPDATE changed: a row cleared above whose new value is NULL is not.
        unchanged = frame["UserID"].isin(clear) & frame["NewValue"].isna() if self.dialect.name == "mysql" else False
        _check_count(f"setting {column}", cursor.rowcount, len(frame) - int(pd.Series(unchanged).sum()))


@contextmanager
def _without_cyclic_gc() -> Iterator[None]:
    """The cyclic collector paused while a million row tuples are made and dropped: none of them can
    be part of a cycle, and its passes over them cost twice the read itself (2 s of 3 at 1M rows)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _take_strings(values: pd.Series, rows: Any) -> pd.arrays.ArrowStringArray:
    """``values`` at positions ``rows``, as pandas' Arrow-backed ``string``."""
    return pd.arrays.ArrowStringArray(
        pa.chunked_array(arrow_strings(values.astype("string")).take(pa.array(rows, type=pa.int64())))
    )


def _sets_a_value_it_holds(frame: pd.DataFrame) -> bool:
    """Whether a staged row's new value is its old value byte for byte (a plan never asks for that)."""
    new, old = (pa.array(frame[name], from_pandas=True) for name in ("NewValue", "OldValue"))
    same = pc.or_kleene(pc.equal(new, old), pc.and_(pc.is_null(new), pc.is_null(old)))
    return bool(pc.any(pc.fill_null(same, False)).as_py())


def _takes_staged_values(frame: pd.DataFrame) -> bool:
    """Whether a staged new value equals, in lower case, another staged row's old value: a likely swap.

    Only chooses the path: a collision this misses (the collation's own rule, or a column of more
    than SWAP_CHECK_ROWS changes, where the check would cost more than it saves: a restore's
    relink of every CognitoID moves to subs no row holds) is still refused by the unique index,
    and undone. A row changing only the case of its own value is no swap.
    """
    if not 2 <= len(frame) <= SWAP_CHECK_ROWS:
        return False
    new, old = (
        pc.utf8_lower(pa.array(frame[name], type=pa.string(), from_pandas=True)) for name in ("NewValue", "OldValue")
    )
    hit = pc.fill_null(pc.is_in(new, value_set=pc.drop_null(old)), False)
    if not pc.any(hit).as_py():
        return False
    if not pc.all(pc.fill_null(pc.equal(pc.filter(new, hit), pc.filter(old, hit)), False)).as_py():
        return True  # a row takes a value another row holds
    counts = pc.value_counts(pc.filter(old, pc.is_in(old, value_set=pc.filter(new, hit))))
    return bool(pc.max(counts.field("counts")).as_py() > 1)


def _check_count(what: str, written: int, expected: int) -> None:
    """Every locked, checked row is written, or none is: a short count rolls the whole apply back."""
    if written != expected:
        raise RuntimeError(f"{what}: {written} rows written, {expected} expected; rolled back, nothing was written")


def _drift_message(table: str, work: StagedWork, drift: dict[str, list[tuple[Any, ...]]], appeared: list[str]) -> str:
    """What changed since the plan: counts per column and ids, never a value."""
    parts, ids = [], []
    for column, rows in drift.items():
        for state in ("changed", "InternalUserID", "vanished"):
            hit = [r for r in rows if r[2] == state]
            if hit:
                what = {"changed": f"{column} changed", "InternalUserID": "InternalUserID changed"}.get(
                    state, "deleted"
                )
                parts.append(f"{len(hit)} rows: {what}")
                ids += [f"UserID {r[0]} (InternalUserID {r[1]})" for r in hit]
    if appeared:
        parts.append(f"{len(appeared)} InternalUserIDs to insert appeared")
        ids += [f"InternalUserID {i}" for i in appeared]
    staged = sum(len(frame) for frame in work.keys.values()) + len(work.inserts)
    shown = ", ".join(ids[:DRIFT_IDS_SHOWN]) + (
        f" and {len(ids) - DRIFT_IDS_SHOWN} more" if len(ids) > DRIFT_IDS_SHOWN else ""
    )
    return (
        f"{table} changed since the plan was made ({'; '.join(parts)}; of {staged} staged writes): {shown}. "
        "Nothing was written. Not retried: a new run re-plans from the table as it is now"
    )
