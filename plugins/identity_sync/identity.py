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
    return blank_as_missing(lowered(trimmed(emails)))


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
    text = values.astype("string")
    if pc.all(pc.match_substring_regex(arrow_strings(text), UUID_PATTERN)).as_py() is not False:
        return text  # every id already canonical (nothing to trim or lower-case): one scan, no copy
    ids = lowered(trimmed(text))
    # Arrow's RE2 (no Python fallback): the values are trimmed, so ``$`` never meets a trailing newline.
    valid = pc.match_substring_regex(arrow_strings(ids), UUID_PATTERN).fill_null(False)
    if pc.all(valid).as_py() is not False:
        return ids
    return ids.where(valid.to_numpy(zero_copy_only=False))


def member_of(values: pd.Series, candidates: Iterable[object] | pd.Series) -> pd.Series:
    """``values.isin(candidates)`` in linear time; missing values are never members.

    pandas' isin on Arrow-backed strings converts every candidate to a scalar one by one
    (seconds per million); Arrow's own hash lookup does the same in milliseconds.
    """
    if not len(values):
        return pd.Series(False, index=values.index, dtype=bool)
    pool = candidates if isinstance(candidates, pd.Series) else pd.Series(list(candidates), dtype=values.dtype)
    if not len(pool):
        return pd.Series(False, index=values.index, dtype=bool)
    if isinstance(values.dtype, pd.StringDtype) and isinstance(pool.dtype, pd.StringDtype):
        left = pa.array(values, type=pa.large_string(), from_pandas=True)
        right = pa.array(pool.dropna(), type=pa.large_string(), from_pandas=True)
        found = pc.is_in(left, value_set=right).to_numpy(zero_copy_only=False)
        return pd.Series(found, index=values.index, dtype=bool) & values.notna()
    return values.isin(pool) & values.notna()


def arrow_strings(values: pd.Series) -> pa.Array | pa.ChunkedArray:
    """``values`` as Arrow text: the same memory for Arrow-backed strings (chunked as read), else converted.
    Hash passes, lookups and takes on it work on the column's own buffers."""
    return pa.array(values, type=pa.large_string(), from_pandas=True)


def _chunks(values: pd.Series) -> list[pa.Array]:
    arrow = arrow_strings(values)
    return arrow.chunks if isinstance(arrow, pa.ChunkedArray) else [arrow]


def shared_values(values: pd.Series) -> pd.Series:
    """Which entries hold a value that another entry holds too (missing never does): pandas'
    ``notna() & duplicated(keep=False)`` in one Arrow hash pass (``key_codes``) and a count."""
    (codes,) = key_codes(values)
    return pd.Series(occurrences(codes, codes) > 1, index=values.index, dtype=bool)


def key_codes(*columns: pd.Series) -> list[np.ndarray]:
    """One integer per distinct value over all ``columns`` together (equal text, equal code), -1 where missing.

    A single hash pass over every value (Arrow's dictionary encoding); afterwards every
    membership test, count or lookup on these keys is array indexing, not another hash.
    """
    lengths = [len(column) for column in columns]
    chunks = [chunk for column in columns for chunk in _chunks(column)]
    encoded = pc.dictionary_encode(pa.chunked_array(chunks, type=pa.large_string()))
    indices = pa.chunked_array([chunk.indices for chunk in encoded.chunks], type=pa.int32())
    flat = indices.fill_null(-1).to_numpy().astype(np.int64, copy=False)
    return np.split(flat, np.cumsum(lengths)[:-1])


def occurrences(codes: np.ndarray, among: np.ndarray) -> np.ndarray:
    """For each of ``codes``: how many times ``among`` holds it (0 for -1, a missing value)."""
    size = max(int(codes.max(initial=-1)), int(among.max(initial=-1))) + 2
    counts = np.bincount(among + 1, minlength=size)  # shifted by one: slot 0 counts the missing
    counts[0] = 0
    return counts[codes + 1]


def trimmed(values: pd.Series) -> pd.Series:
    """``values.str.strip()`` as text, sharing ``values``' memory when nothing needed trimming."""
    text = values.astype("string")
    stripped = text.str.strip()
    return text if _same(stripped, text) else stripped


def lowered(text: pd.Series) -> pd.Series:
    """``text.str.lower()``, sharing ``text``'s memory when nothing was upper-case."""
    folded = text.str.lower()
    return text if _same(folded, text) else folded


def _same(a: pd.Series, b: pd.Series) -> bool:
    """Equal text at every position (``a`` is ``b`` transformed value by value: missing in the same places)."""
    if a.isna().sum() != b.isna().sum():
        return False
    return pc.all(pc.equal(arrow_strings(a), arrow_strings(b))).as_py() is not False


def blank_as_missing(text: pd.Series) -> pd.Series:
    """``text.mask(text == "")``, without a copy when nothing is blank."""
    blank = text == ""
    return text.mask(blank) if blank.any() else text


def new_internal_id() -> str:
    """A random (version 4) UUID in the stored, lower-case form."""
    return str(uuid.uuid4())
