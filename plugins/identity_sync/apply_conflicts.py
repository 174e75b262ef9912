"""Per-row conflicts the apply finds itself, so that one odd row never blocks an environment.

Two kinds: a value its column cannot hold (too long, or characters outside the column's
character set), checked before staging; and a unique-key collision as the server's own
collation sees it (``ß`` against ``ss``, emoji, legacy ``utf8mb3``), which the server
reports as pairs of ids and :func:`resolve_collisions` turns into demotions. Pure: ids
in, ids out; a value is never quoted in a reason.
"""

from __future__ import annotations

import codecs
from collections.abc import Mapping
from dataclasses import dataclass, field

import pandas as pd

from identity_sync.identity import ColumnLimit

WHOLE_UNICODE = {"utf8mb4", "utf16", "utf16le", "utf32"}
BASIC_PLANE_ONLY = {"utf8mb3", "utf8", "ucs2"}  # no character above U+FFFF (emoji)
CODECS = {"latin1": "cp1252", "ascii": "ascii"}  # MySQL's latin1 is Windows-1252

REASONS = {
    "too_long": "new {column} is longer than the column holds ({detail} characters); checked before writing",
    "charset": "new {column} has characters the column's character set ({detail}) cannot store",
    "held": "new {column} equals another row's {column} under the column's collation (its unique key); "
    "found by the server",
    "twice": "new {column} equals another planned {column} under the column's collation (its unique key); "
    "found by the server",
}


def reason(kind: str, column: str, detail: object = "") -> str:
    return REASONS[kind].format(column=column, detail=detail)


def _in_charset(values: pd.Series, charset: str) -> pd.Series:
    """Whether each value can be stored in ``charset``; unknown character sets accept ASCII only."""
    ok = pd.Series(True, index=values.index)
    wide = values.notna() & ~values.str.isascii().fillna(True)
    if not wide.any() or charset in WHOLE_UNICODE:
        return ok
    if charset in BASIC_PLANE_ONLY:
        ok[wide] = values[wide].map(lambda v: all(ord(c) <= 0xFFFF for c in v)).astype(bool)
        return ok
    codec = CODECS.get(charset, charset)
    try:
        codecs.lookup(codec)
    except LookupError:
        ok[wide] = False
        return ok
    ok[wide] = values[wide].map(lambda v: _encodes(v, codec)).astype(bool)
    return ok


def _encodes(value: str, codec: str) -> bool:
    try:
        value.encode(codec)
    except UnicodeEncodeError:
        return False
    return True


def unfit_reasons(values: pd.Series, column: str, limit: ColumnLimit | None) -> pd.Series:
    """Per value, why the column cannot hold it (missing when it can); NULL always fits."""
    out = pd.Series(pd.NA, index=values.index, dtype="string")
    if limit is None:
        return out
    text = values.astype("string")
    too_long = (text.str.len() > limit.max_chars).fillna(False).astype(bool)
    out[too_long] = reason("too_long", column, limit.max_chars)
    foreign = ~_in_charset(text, limit.charset.lower()) & ~too_long
    out[foreign] = reason("charset", column, limit.charset)
    return out


@dataclass
class Collisions:
    """What the server found for one key column: ids only.

    ``held``: (UserID wanting a value, UserID holding it now); ``inserts_held``:
    (InternalUserID to insert, UserID holding its value); ``twice``: UserIDs and
    InternalUserIDs whose planned values equal each other.
    """

    held: pd.DataFrame
    inserts_held: pd.DataFrame
    twice_rows: set[int] = field(default_factory=set)
    twice_inserts: set[str] = field(default_factory=set)


@dataclass
class Resolution:
    """Demoted changes per column (UserID -> reason kind), demoted inserts, rows to clear first."""

    demoted: dict[str, dict[int, str]]
    demoted_inserts: dict[str, tuple[str, str]]  # InternalUserID -> (column, reason kind)
    clear: dict[str, list[int]]


def resolve_collisions(staged: Mapping[str, set[int]], found: Mapping[str, Collisions]) -> Resolution:
    """Demote every staged value that would break a unique key, until none would.

    A demoted change leaves its row's current value in place, which may be the value
    another staged row wants (a swap with one side in conflict): hence the loop. It ends
    because each round only adds demotions. A row holding a value another row takes, and
    whose own change goes ahead, is cleared first (swaps and chains).
    """
    demoted: dict[str, dict[int, str]] = {c: dict.fromkeys(f.twice_rows, "twice") for c, f in found.items()}
    bad_inserts = {i: (c, "twice") for c, f in found.items() for i in f.twice_inserts}
    changed = True
    while changed:
        changed = False
        for column, f in found.items():
            mine, gone = staged[column], demoted[column]
            keeps = [o not in mine or o in gone for o in f.held.iloc[:, 1]]
            for wanting, keeping in zip(f.held.iloc[:, 0], keeps, strict=True):
                if keeping and wanting not in gone:
                    gone[int(wanting)] = "held"
                    changed = True
            for new_id, holder in zip(f.inserts_held.iloc[:, 0], f.inserts_held.iloc[:, 1], strict=True):
                if new_id not in bad_inserts and (holder not in mine or holder in gone):
                    bad_inserts[str(new_id)] = (column, "held")
    clear = {
        column: sorted({int(o) for s, o in f.held.itertuples(index=False) if s not in demoted[column]})
        for column, f in found.items()
    }
    return Resolution(demoted=demoted, demoted_inserts=bad_inserts, clear=clear)
