"""What both planners (sync and backfill) compare, computed once: the shared first stage.

``normalise(pool, table)`` gives each side the keys every later stage compares (ids as
lower-case UUIDs, e-mails trimmed and case-folded) and says, per pool user, whether it may
be linked to a row by e-mail at all. Pure; no copy of the input frames' data.
"""

from __future__ import annotations

import pandas as pd

from identity_sync.identity import (
    blank_as_missing,
    lowered,
    normalise_emails,
    normalise_internal_ids,
    shared_values,
    trimmed,
)

EMAIL_LINK_STATUSES = ("CONFIRMED", "EXTERNAL_PROVIDER")
# The pool snapshot's columns (``extract.extract_pool``'s frame); email_norm is derived from email.
POOL_COLUMNS = [
    "sub",
    "username",
    "email",
    "email_norm",
    "internal_user_id",
    "status",
    "enabled",
    "email_verified",
    "given_name",
    "family_name",
]
# What ListUsers gives, and what normalise reads (email_verified may be absent): the plan reads no others.
POOL_INPUT_COLUMNS = [c for c in POOL_COLUMNS if c != "email_norm"]
# The pool columns the planners read; the rest of the pool frame is dropped at once.
NORMALISED_POOL_COLUMNS = [
    "sub",
    "username",
    "email",
    "email_norm",
    "raw_id",
    "has_attr",
    "iid",
    "pool_email_shared",
    "email_refusal",
    "given_name",
    "family_name",
]


def email_link_refusals(pool: pd.DataFrame) -> pd.Series:
    """Why each pool user may NOT be linked to a row by e-mail (text), NA where it may.

    Anyone can sign up with any address: until a confirmed (or federated), enabled user
    has verified it, the address proves nothing, and linking it would hand a stranger the
    row's identity. First reason that applies: "user disabled", "status <STATUS>",
    "e-mail not verified". A frame without ``email_verified`` counts as unverified.
    """
    verified = pool["email_verified"] if "email_verified" in pool else pd.Series(False, index=pool.index)
    status = pool["status"].astype("string")
    why = pd.Series(pd.NA, index=pool.index, dtype="string")
    why = why.mask(~verified.astype("boolean").fillna(False).astype(bool), "e-mail not verified")
    why = why.mask(~status.isin(EMAIL_LINK_STATUSES), "status " + status.fillna("unknown"))
    return why.mask(~pool["enabled"].astype("boolean").fillna(False).astype(bool), "user disabled")


def normalise(pool: pd.DataFrame, table: pd.DataFrame, *, pool_wide: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(pool, table) -> the same two frames keyed for matching, index 0..n-1.

    Pool (NORMALISED_POOL_COLUMNS): ``email`` trimmed, blank as missing (what an insert
    writes); ``email_norm`` case-folded; ``raw_id`` the trimmed attribute; ``has_attr``
    whether it is set at all; ``iid`` the valid UUID or missing; ``pool_email_shared``
    whether another pool user has the same ``email_norm``; ``email_refusal`` as
    :func:`email_link_refusals`. Table: every column it has, plus ``iid`` and ``email_norm``.

    ``pool_wide=False`` leaves out ``pool_email_shared`` and ``email_refusal`` (they look at
    every pool user; the sync planner asks them only for the few users that need them) and
    keeps ``status``, ``enabled`` and ``email_verified`` (when given) for
    :func:`email_link_refusals`.
    """
    pool = pool.reset_index(drop=True)
    raw_id = trimmed(pool["internal_user_id"])
    email = blank_as_missing(trimmed(pool["email"]))
    email_norm = lowered(email)  # normalise_emails(pool["email"]) without trimming twice
    columns = {
        "sub": pool["sub"].astype("string"),
        "username": pool["username"].astype("string"),
        "email": email,
        "email_norm": email_norm,
        "raw_id": raw_id,
        "has_attr": (raw_id.notna() & (raw_id != "")).astype(bool),
        "iid": normalise_internal_ids(raw_id),
    }
    if pool_wide:
        columns |= {"pool_email_shared": shared_values(email_norm), "email_refusal": email_link_refusals(pool)}
    else:
        columns |= {name: pool[name] for name in ("status", "enabled", "email_verified") if name in pool}
    columns |= {"given_name": pool["given_name"].astype("string"), "family_name": pool["family_name"].astype("string")}
    p = pd.DataFrame(columns)
    table = table.reset_index(drop=True)
    t = table.assign(iid=normalise_internal_ids(table["InternalUserID"]), email_norm=normalise_emails(table["Email"]))
    return p, t
