"""Time what the product sends to the database, without changing how it sends it.

`TracedConnection` wraps a DB-API connection: every ``execute``/``executemany`` and every
``commit``/``rollback`` is recorded with its start and end, under the name of the
``include/sql`` file it came from. `apply_phases` then cuts the apply's wall time into
stage, drift, checks, update and fallback (``apply_phases``: the optimistic write's
phases, or the careful path's after a refused optimistic write). The product's code is untouched: the bench
hands it a wrapped connection through the hook it already uses.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from identity_sync.sql import SQL_DIR, Dialect


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


@dataclass(frozen=True)
class StatementNames:
    """Names executed SQL after the include/sql file it came from (``file[column]`` where it has one)."""

    patterns: list[tuple[re.Pattern[str], str]]

    def name(self, sql: str) -> str:
        text = _normal(sql)
        for pattern, name in self.patterns:
            match = pattern.fullmatch(text)
            if match:
                return f"{name}[{match.group('column')}]" if "column" in pattern.groupindex else name
        return " ".join(text.split()[:6])


def _pattern(template: str, table_identifier: str) -> re.Pattern[str]:
    text = re.escape(_normal(template)).replace(re.escape("{table}"), re.escape(table_identifier))
    text = text.replace(re.escape("%s"), "%s")
    first = text.find(re.escape("{column}"))
    if first >= 0:
        text = text[:first] + "`?(?P<column>\\w+)`?" + text[first + len(re.escape("{column}")) :]
    for placeholder in ("{column}", "{staged}", "{ids}"):
        text = text.replace(re.escape(placeholder), ".*?")
    return re.compile(text, re.S)


def statement_names(dialect: Dialect, table: str) -> StatementNames:
    """Patterns of every statement in include/sql (shared and ``dialect``'s) for ``table``."""
    patterns = []
    for path in sorted({*SQL_DIR.glob("*.sql"), *(SQL_DIR / dialect.name).glob("*.sql")}):
        lines = [line for line in path.read_text().splitlines() if not line.lstrip().startswith("--")]
        parts = [part for part in "\n".join(lines).split(";") if part.strip()]
        for index, part in enumerate(parts):
            name = path.stem if index == 0 else f"{path.stem}#{index + 1}"
            patterns.append((_pattern(part, dialect.identifier(table)), name))
    return StatementNames(patterns)


class TracedCursor:
    def __init__(self, cursor: Any, trace: Trace, names: StatementNames) -> None:
        self._cursor = cursor
        self._trace = trace
        self._names = names

    def _name(self, sql: Any) -> str:
        return self._names.name(sql.decode() if isinstance(sql, bytes) else str(sql))

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

    def __init__(self, connection: Any, trace: Trace, names: StatementNames) -> None:
        object.__setattr__(self, "_connection", connection)
        object.__setattr__(self, "_trace", trace)
        object.__setattr__(self, "_names", names)

    def cursor(self, *args: Any, **kwargs: Any) -> TracedCursor:
        return TracedCursor(self._connection.cursor(*args, **kwargs), self._trace, self._names)

    def _ends(self, word: str, action: Any) -> None:
        started = time.perf_counter()
        try:
            action()
        finally:
            self._trace.record(word, word, started, 0)

    def commit(self) -> None:
        self._ends("COMMIT", self._connection.commit)

    def rollback(self) -> None:
        self._ends("ROLLBACK", self._connection.rollback)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._connection, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._connection, name, value)


def _writes_users(item: Executed, table: str) -> bool:
    """A write to ``table``: its SQL starts with it, or it is one of the product's key writes
    (``set_keys*`` and ``clear_keys`` start with the staging table when the staged rows drive the join)."""
    if item.name.startswith(("set_keys", "clear_keys", "insert_staged_rows")):
        return True
    pattern = rf"\s*(UPDATE|INSERT\s+INTO|DELETE\s+FROM)\s+`?{re.escape(table)}`?[\s(]"
    return re.match(pattern, item.sql, re.I) is not None


def _is_drift_check(item: Executed) -> bool:
    return item.name.startswith(("lock_", "unsettled_", "count_drifted", "count_present")) or bool(
        re.search(r"\bFOR\s+UPDATE\b", item.sql, re.I)
    )


def _is_collision_check(item: Executed) -> bool:
    return item.name.startswith(("held_by", "inserts_held", "planned_twice"))


# fallback: an optimistic write the server refused (or that found drift), rolled back to its savepoint.
APPLY_PHASES = ("stage", "drift", "checks", "update", "fallback")


def _first(executed: list[Executed], name: str) -> Executed | None:
    return next((item for item in executed if item.name == name), None)


def apply_phases(trace: Trace, table: str, started: float, ended: float) -> dict[str, float]:
    """stage / drift / checks / update / fallback seconds of one apply that ran from ``started`` to ``ended``.

    The optimistic path (a ``savepoint``, then the compare-and-set writes): stage is everything
    before the savepoint, update everything from it (the writes, the insert checks, the commit),
    drift and checks are 0. When the server refused it (``rollback_to_savepoint``), that attempt
    is ``fallback`` and the careful path after it is cut as the careful path alone is: drift at
    the first locking read of the staged rows, checks at the first collision query, update at
    the first write to ``table``; each ends where the next begins. A phase whose statements never
    ran is 0 (a nightly run sends nothing at all).
    """
    executed = trace.executed
    savepoint = _first(executed, "savepoint")
    rolled_back = _first(executed, "rollback_to_savepoint")
    if savepoint is not None and rolled_back is None:
        return {
            "stage": savepoint.started - started,
            "drift": 0.0,
            "checks": 0.0,
            "update": ended - savepoint.started,
            "fallback": 0.0,
        }
    fallback = 0.0
    careful_from = started
    if savepoint is not None and rolled_back is not None:
        fallback = rolled_back.ended - savepoint.started
        executed = [item for item in executed if item.started >= rolled_back.ended]
        careful_from = rolled_back.ended
    markers = (_is_drift_check, _is_collision_check, lambda item: _writes_users(item, table))
    starts: list[float | None] = [careful_from]
    starts += [next((e.started for e in executed if marker(e)), None) for marker in markers]
    starts.append(ended)
    for index in range(len(starts) - 2, 0, -1):  # an absent phase starts (and ends) where the next one does
        if starts[index] is None:
            starts[index] = starts[index + 1]
    bounds = [float(x) for x in starts if x is not None]
    for index in range(1, len(bounds)):
        bounds[index] = max(bounds[index], bounds[index - 1])
    phases = {phase: bounds[k + 1] - bounds[k] for k, phase in enumerate(APPLY_PHASES[:4])}
    phases["stage"] += careful_from - started - fallback  # staging before the savepoint stays stage
    return {**phases, "fallback": fallback}


def per_statement(trace: Trace) -> dict[str, dict[str, float]]:
    """Seconds and calls per statement name: where the apply's time went, for the JSON results."""
    totals: dict[str, dict[str, float]] = {}
    for item in trace.executed:
        entry = totals.setdefault(item.name, {"seconds": 0.0, "calls": 0, "rows": 0})
        entry["seconds"] += item.ended - item.started
        entry["calls"] += 1
        entry["rows"] += max(item.rows, 0)
    return totals
