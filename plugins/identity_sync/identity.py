"""How identities compare: e-mails case-insensitively, InternalUserIDs as lower-case UUIDs.

Shared by extraction, planning and backfill so that every step agrees on what "the
same e-mail" and "a valid id" mean.
"""

from __future__ import annotations

import unicodedata
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

UUID_PATTERN = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"


@dataclass(frozen=True)
class ColumnLimit:
    """What a text column of the table can hold, as the server declares it.

    A value that does not fit is a per-row conflict in the plan, never a truncation (a
    non-strict server cuts it silently) nor a failed apply (a strict one refuses the
    whole statement). Keyed by column name (CognitoID, Email, FirstName, LastName).
    """

    max_chars: int  # CHARACTER_MAXIMUM_LENGTH
    charset: str  # utf8mb4; utf8mb3/utf8 hold no 4-byte character (emoji); latin1 only Latin-1


# MySQL's latin1 is Windows-1252 plus the five bytes cp1252 leaves undefined (stored as U+0081 etc.).
_LATIN1_EXTRA = frozenset("\x81\x8d\x8f\x90\x9d")
# Which characters a charset can store: None means any; a function judges one non-ASCII value.
_CHARSET_HOLDS = {
    "utf8mb4": None,
    "utf16": None,
    "utf16le": None,
    "utf32": None,
    "binary": None,
    "utf8mb3": lambda v: all(ord(c) <= 0xFFFF for c in v),
    "utf8": lambda v: all(ord(c) <= 0xFFFF for c in v),
    "ucs2": lambda v: all(ord(c) <= 0xFFFF for c in v),
    "latin1": lambda v: all(c in _LATIN1_EXTRA or _encodes(c, "cp1252") for c in v),
    "ascii": lambda v: False,
}


def _encodes(char: str, codec: str) -> bool:
    try:
        char.encode(codec)
    except UnicodeEncodeError:
        return False
    return True


def limit_refusals(values: pd.Series, column: str, limit: ColumnLimit) -> pd.Series:
    """Why each value cannot be stored in ``column`` (text naming the column and its limit), NA where it can.

    The reason never quotes the value. Length is in characters, as VARCHAR counts it.
    Only non-ASCII values are judged one by one (every charset here stores ASCII).
    """
    charset = limit.charset.lower()
    if charset not in _CHARSET_HOLDS:
        raise ValueError(f"column {column}: unknown character set {limit.charset!r}; known: {sorted(_CHARSET_HOLDS)}")
    text = values.astype("string")
    why = pd.Series(pd.NA, index=values.index, dtype="string")
    holds = _CHARSET_HOLDS[charset]
    if holds is not None:
        foreign = text.notna() & ~text.str.isascii().fillna(True)
        if foreign.any():
            unstorable = ~text[foreign].map(holds, na_action="ignore").astype(bool)
            why[unstorable[unstorable].index] = f"{column} holds characters its character set {charset} cannot store"
    too_long = (text.str.len() > limit.max_chars).fillna(False)
    return why.mask(too_long, f"{column} is longer than the column's {limit.max_chars} characters")


def normalise_emails(emails: pd.Series) -> pd.Series:
    """Trimmed and case-folded; blank becomes missing. Cognito and MySQL both compare e-mails without case."""
    folded = emails.astype("string").str.strip().str.lower()
    return folded.mask(folded == "")


def email_keys(emails: pd.Series) -> pd.Series:
    """What a unique index on Email considers equal: MySQL's default collations ignore case AND accents.

    Used to foresee collisions (``jose@`` and ``josé@`` cannot both be stored), never to
    match people, which :func:`normalise_emails` does.
    """
    folded = normalise_emails(emails)
    ascii_only = folded.str.isascii().fillna(True)
    if ascii_only.all():
        return folded
    stripped = folded[~ascii_only].map(
        lambda e: "".join(c for c in unicodedata.normalize("NFKD", e) if not unicodedata.combining(c)).casefold()
    )
    return folded.where(ascii_only, stripped.astype("string"))


def normalise_internal_ids(values: pd.Series) -> pd.Series:
    """Lower-case canonical UUIDs; anything that is not a UUID becomes missing."""
    lowered = values.astype("string").str.strip().str.lower()
    return lowered.where(lowered.str.match(UUID_PATTERN, na=False))


def member_of(values: pd.Series, candidates: Iterable[object] | pd.Series) -> pd.Series:
    """``values.isin(candidates)`` in linear time; missing values are never members.

    pandas' isin on Arrow-backed strings converts every candidate to a scalar one by one
    (seconds per million); Arrow's own hash lookup does the same in milliseconds.
    """
    pool = candidates if isinstance(candidates, pd.Series) else pd.Series(list(candidates), dtype=values.dtype)
    if isinstance(values.dtype, pd.StringDtype) and isinstance(pool.dtype, pd.StringDtype):
        left = pa.array(values, type=pa.large_string(), from_pandas=True)
        right = pa.array(pool.dropna(), type=pa.large_string(), from_pandas=True)
        found = pc.is_in(left, value_set=right).to_numpy(zero_copy_only=False)
        return pd.Series(found, index=values.index, dtype=bool) & values.notna()
    return values.isin(pool) & values.notna()


def _arrow(values: pd.Series) -> pa.Array:
    return pa.array(values, type=pa.large_string(), from_pandas=True)


def positions_in(values: pd.Series, candidates: pd.Series) -> np.ndarray:
    """The position in ``candidates`` of each of ``values`` (its first, -1 where absent or missing):
    a linear-time lookup in Arrow's hash table, for joining on a key unique in ``candidates``."""
    found = pc.index_in(_arrow(values), value_set=_arrow(candidates), skip_nulls=True)
    return found.fill_null(-1).to_numpy(zero_copy_only=False)


def shared_values(values: pd.Series) -> pd.Series:
    """Which entries hold a value that another entry holds too (missing never does): pandas'
    ``notna() & duplicated(keep=False)`` without its factorisation, and one hash pass when
    every value is distinct, as it usually is."""
    array = _arrow(values)
    if pc.count_distinct(array, mode="only_valid").as_py() == len(array) - array.null_count:
        return pd.Series(False, index=values.index, dtype=bool)
    counts = pc.value_counts(array)
    repeated = pc.filter(counts.field("values"), pc.greater(counts.field("counts"), 1))
    found = pc.is_in(array, value_set=repeated).to_numpy(zero_copy_only=False)
    return pd.Series(found, index=values.index, dtype=bool) & values.notna()


def new_internal_id() -> str:
    """A random (version 4) UUID in the stored, lower-case form."""
    return str(uuid.uuid4())
