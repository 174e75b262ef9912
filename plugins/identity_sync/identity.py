"""How identities compare: e-mails case-insensitively, InternalUserIDs as lower-case UUIDs.

Shared by extraction, planning and backfill so that every step agrees on what "the
same e-mail" and "a valid id" mean.
"""

from __future__ import annotations

import uuid

import pandas as pd

UUID_PATTERN = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"


def normalise_emails(emails: pd.Series) -> pd.Series:
    """Trimmed and case-folded; blank becomes missing. Cognito and MySQL both compare e-mails without case."""
    folded = emails.astype("string").str.strip().str.lower()
    return folded.mask(folded == "")


def normalise_internal_ids(values: pd.Series) -> pd.Series:
    """Lower-case canonical UUIDs; anything that is not a UUID becomes missing."""
    lowered = values.astype("string").str.strip().str.lower()
    return lowered.where(lowered.str.match(UUID_PATTERN, na=False))


def new_internal_id() -> str:
    """A random (version 4) UUID in the stored, lower-case form."""
    return str(uuid.uuid4())
