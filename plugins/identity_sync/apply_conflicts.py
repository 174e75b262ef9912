"""Unique-key collisions as the server's own collation sees them, turned into per-row conflicts.

``ß`` against ``ss``, emoji, legacy ``utf8mb3``: the server reports pairs of ids (never
values) and :func:`resolve_collisions` decides which staged writes cannot go ahead, so
that one odd row never blocks an environment. Pure: ids in, ids out. (Values a column
cannot hold are found before staging, by ``identity.limit_refusals``.)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import pandas as pd

REASONS = {
    "held": "new {column} equals another row's {column} under the column's collation (its unique key); "
    "found by the server",
    "twice": "new {column} equals another planned {column} under the column's collation (its unique key); "
    "found by the server",
}


def reason(kind: str, column: str) -> str:
    return REASONS[kind].format(column=column)


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
