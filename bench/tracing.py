"""Time what the product sends to the database, without changing how it sends it.

`TracedConnection` wraps a DB-API connection: every ``execute``/``executemany`` and every
``commit``/``rollback`` is recorded with its start and end, under the name of the
``include/sql`` file it came from. `apply_phases` then cuts the apply's wall time into
stage (from the start up to the drift check), drift (the check), and update (the first
write to the Users table through the commit). The product's code is untouched: the bench
hands it a wrapped connection through the hook it already uses.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from identity_sync.sql import SQL_DIR, Dialect, statements


@dataclass(frozen=True)
class Executed:
    name: str  # the include/sql file (``name#2`` for its second statement), or the first words of the SQL
    sql: str
    started: float
    ended: float
    rows: int


@dataclass
class Trace:
    """Everything one connection sent, in order."""

    executed: list[Executed] = field(default_factory=list)

    def record(self, name: str, sql: str, started: float, rows: int) -> None:
        self.executed.append(Executed(name, sql, started, time.perf_counter(), rows))


def _normal(sql: str) -> str:
    return " ".join(sql.split())


def statement_names(dialect: Dialect, table: str) -> dict[str, str]:
    """SQL text (whitespace-normalised) -> the include/sql file it comes from, for ``table``."""
    names: dict[str, str] = {}
    for path in sorted({*SQL_DIR.glob("*.sql"), *(SQL_DIR / dialect.name).glob("*.sql")}):
        try:
            parts = statements(path.stem, dialect, table)
        except (ValueError, OSError):
            continue
        for index, sql in enumerate(parts):
            names.setdefault(_normal(sql), path.stem if index == 0 else f"{path.stem}#{index + 1}")
    return names


class TracedCursor:
    def __init__(self, cursor: Any, trace: Trace, names: dict[str, str]) -> None:
        self._cursor = cursor
        self._trace = trace
        self._names = names

    def _name(self, sql: Any) -> str:
        text = _normal(sql.decode() if isinstance(sql, bytes) else str(sql))
        return self._names.get(text) or " ".join(text.split()[:3])

    def execute(self, sql: Any, params: Any = None) -> Any:
        started = time.perf_counter()
        try:
            return self._cursor.execute(sql, params)
        finally:
            self._trace.record(self._name(sql), str(sql), started, self._cursor.rowcount)

    def executemany(self, sql: Any, rows: Any) -> Any:
        started = time.perf_counter()
        try:
            return self._cursor.executemany(sql, rows)
        finally:
            self._trace.record(self._name(sql), str(sql), started, self._cursor.rowcount)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._cursor)

    def __enter__(self) -> TracedCursor:
        return self

    def __exit__(self, *exc: object) -> None:
        self._cursor.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cursor, name)


class TracedConnection:
    """A DB-API connection that records what goes through it; everything else is the connection's own."""

    def __init__(self, connection: Any, trace: Trace, names: dict[str, str]) -> None:
        object.__setattr__(self, "_connection", connection)
        object.__setattr__(self, "_trace", trace)
        object.__setattr__(self, "_names", names)

    def cursor(self, *args: Any, **kwargs: Any) -> TracedCursor:
        return TracedCursor(self._connection.cursor(*args, **kwargs), self._trace, self._names)

    def commit(self) -> None:
        started = time.perf_counter()
        try:
            self._connection.commit()
        finally:
            self._trace.record("COMMIT", "COMMIT", started, 0)

    def rollback(self) -> None:
        started = time.perf_counter()
        try:
            self._connection.rollback()
        finally:
            self._trace.record("ROLLBACK", "ROLLBACK", started, 0)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._connection, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._connection, name, value)


def _writes_users(sql: str, table: str) -> bool:
    return re.match(rf"\s*(UPDATE|INSERT\s+INTO|DELETE\s+FROM)\s+`?{re.escape(table)}`?[\s(]", sql, re.I) is not None


def _is_drift_check(item: Executed) -> bool:
    return "drift" in item.name or "present" in item.name or re.search(r"\bFOR\s+UPDATE\b", item.sql, re.I) is not None


def apply_phases(trace: Trace, table: str, started: float, ended: float) -> dict[str, float]:
    """stage / drift / update seconds of one apply that ran from ``started`` to ``ended``.

    stage: everything before the first drift check (reading the saved plan, building and
    loading the staging rows); drift: from the first drift check to the first write to
    ``table``; update: from that write to the end (the writes, dropping the staging, commit).
    A phase whose marker never ran is 0 (the nightly run sends nothing at all).
    """
    drift_at = next((e.started for e in trace.executed if _is_drift_check(e)), None)
    write_at = next((e.started for e in trace.executed if _writes_users(e.sql, table)), None)
    stage_end = drift_at if drift_at is not None else (write_at if write_at is not None else ended)
    drift_end = write_at if write_at is not None else (ended if drift_at is not None else stage_end)
    return {"stage": stage_end - started, "drift": drift_end - stage_end, "update": ended - drift_end}


def per_statement(trace: Trace) -> dict[str, dict[str, float]]:
    """Seconds and calls per statement name: where the apply's time went, for the JSON results."""
    totals: dict[str, dict[str, float]] = {}
    for item in trace.executed:
        entry = totals.setdefault(item.name, {"seconds": 0.0, "calls": 0, "rows": 0})
        entry["seconds"] += item.ended - item.started
        entry["calls"] += 1
        entry["rows"] += max(item.rows, 0)
    return totals
