"""Extract a pool's users into a DataFrame: one row per user, the values as Cognito holds them."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from identity_sync.cognito import CognitoHook, user_attributes
from identity_sync.config import Environment
from identity_sync.guards import RefusedError
from identity_sync.identity import normalise_emails
from identity_sync.matching import POOL_INPUT_COLUMNS
from identity_sync.ratelimit import RateLimiter, collector_paused

log = logging.getLogger(__name__)

RECORD_COLUMNS = POOL_INPUT_COLUMNS  # what ListUsers gives; email_norm is derived
_FLAGS = ("enabled", "email_verified")
_SCHEMA = pa.schema([(c, pa.bool_() if c in _FLAGS else pa.string()) for c in RECORD_COLUMNS])
CHUNK_USERS = 4_096  # users a slice holds as Python values before they become Arrow arrays (16 slices: 65,536)


def pool_table(users: Iterable[dict[str, Any]], attribute: str) -> pa.Table:
    """ListUsers records -> an Arrow table of RECORD_COLUMNS, built as the users come.

    Every ``CHUNK_USERS`` users become Arrow arrays and their Python values are dropped, so
    a listing of a million users never holds a million response dicts, or a million Python
    strings per column, at once. ``internal_user_id`` is the raw attribute value.
    ``email_verified`` is True only where the attribute reads "true" (ListUsers returns it
    as a string): an address nobody proved must never link a user to a row.
    """
    batches: list[pa.RecordBatch] = []
    values: list[list[Any]] = [[] for _ in RECORD_COLUMNS]
    (sub, username, email, internal_id, status, enabled, verified, given, family) = values

    def flush() -> None:
        if sub:
            batches.append(
                pa.record_batch([pa.array(v, f.type) for v, f in zip(values, _SCHEMA, strict=True)], _SCHEMA)
            )
            for column in values:
                column.clear()

    for user in users:
        attrs = user_attributes(user)
        sub.append(attrs.get("sub"))
        username.append(user.get("Username"))
        email.append(attrs.get("email"))
        internal_id.append(attrs.get(attribute))
        status.append(user.get("UserStatus"))
        enabled.append(bool(user.get("Enabled", True)))
        verified.append(str(attrs.get("email_verified", "")).strip().lower() == "true")
        given.append(attrs.get("given_name"))
        family.append(attrs.get("family_name"))
        if len(sub) >= CHUNK_USERS:
            flush()
    flush()
    return pa.Table.from_batches(batches, _SCHEMA)


def table_frame(table: pa.Table) -> pd.DataFrame:
    """The pool DataFrame from a table of RECORD_COLUMNS: strings stay in Arrow (no Python object per value)."""
    frame = table.to_pandas(types_mapper={pa.string(): pd.StringDtype("pyarrow")}.get)
    for column in _FLAGS:
        frame[column] = frame[column].fillna(False).astype(bool)  # unknown: not
    frame.insert(3, "email_norm", normalise_emails(frame["email"]))
    return frame


def pool_frame(users: Iterable[dict[str, Any]], attribute: str) -> pd.DataFrame:
    """ListUsers records -> the pool DataFrame (see pool_table)."""
    return table_frame(pool_table(users, attribute))


def records_frame(records: Iterable[tuple[Any, ...] | dict[str, Any]]) -> pd.DataFrame:
    """Pool users given as records of every RECORD_COLUMNS column (email_norm is derived)."""
    frame = pd.DataFrame.from_records(list(records), columns=RECORD_COLUMNS)
    for column in RECORD_COLUMNS:
        if column not in _FLAGS:
            frame[column] = frame[column].astype("string")
    frame["enabled"] = frame["enabled"].astype(bool)
    frame["email_verified"] = frame["email_verified"].astype("boolean").fillna(False).astype(bool)  # unknown: not
    frame.insert(3, "email_norm", normalise_emails(frame["email"]))
    return frame


@dataclass(frozen=True)
class Listing:
    """How complete a pool's listing is known to be; saved with the run so that the audit shows it.

    Complete means: every slice's token chain ran until a page came back without a token
    (a chain that fails raises instead), and the distinct users listed are at least the
    pool's ``EstimatedNumberOfUsers`` read after the listing. A page that silently came
    back short (without its users, or without its token) makes the count fall below the
    estimate. Then every slice is listed again and the passes are merged (ListUsers never
    invents a user, so one seen in either pass exists), up to ``passes`` in all. The
    estimate is eventually consistent: just after deletions it can still count deleted
    users, which makes a listing look short; that errs on the safe side.
    """

    users: int
    estimate: int | None
    passes: int
    complete: bool

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _list_pass(env: Environment, hook: CognitoHook, limiter: RateLimiter) -> pa.Table:
    """One listing of every slice; a user listed twice means the slices or pages are not what we think."""
    started, calls = time.monotonic(), hook.calls
    with collector_paused():
        slices = hook.list_users_sliced(
            env.user_pool_id, env.list_users_slices, limiter, collect=lambda users: pool_table(users, env.attribute)
        )
    elapsed = time.monotonic() - started
    users = pa.concat_tables(slices)
    duplicated = users.num_rows - pc.count_distinct(users["sub"], mode="all").as_py()
    if duplicated:
        raise RuntimeError(
            f"environment {env.name!r}: ListUsers returned {duplicated} users twice across "
            f"{len(slices)} slices; extraction is unreliable"
        )
    log.info(
        "environment %s: %d users in %d slices (largest %d), %d ListUsers calls in %.1fs (%.1f/s), %d throttled",
        env.name,
        users.num_rows,
        len(slices),
        max(part.num_rows for part in slices),
        hook.calls - calls,
        elapsed,
        (hook.calls - calls) / elapsed if elapsed else 0.0,
        hook.throttled,
    )
    return users


def _merged(passes: list[pa.Table]) -> pa.Table:
    """Users seen in any pass, once each: a user's values from the last pass that listed it."""
    if len(passes) == 1:
        return passes[0]
    users = pa.concat_tables(passes)
    subs = users["sub"].to_pandas()
    return users.take(pa.array(subs[~subs.duplicated(keep="last")].index.to_numpy()))


def extract_pool(
    env: Environment, hook: CognitoHook | None = None, *, require_complete: bool | None = None, passes: int = 2
) -> pd.DataFrame:
    """All users of the environment's pool, listed in slices at the environment's ListUsers rate.

    The frame's ``attrs["listing"]`` holds the ``Listing`` (counts only). An incomplete
    listing is refused (``RefusedError``, before anything is written) when
    ``require_complete``, which defaults to ``stale_cognito_ids: clear``: a row's link is
    never cleared on the word of a listing that may have missed its user.

    The users go into Arrow columns page by page (``pool_table``): no response dict
    outlives its page's conversion, and the frame's strings are Arrow-backed.
    """
    hook = hook or CognitoHook(aws_conn_id=env.aws_conn_id)
    limiter = RateLimiter(env.list_users_rps)
    listed: list[pa.Table] = []
    for attempt in range(1, passes + 1):
        listed = [_merged([*listed, _list_pass(env, hook, limiter)])]
        estimate = hook.describe_user_pool(env.user_pool_id).get("EstimatedNumberOfUsers")
        users = listed[0].num_rows
        listing = Listing(users, estimate, attempt, estimate is not None and users >= estimate)
        if listing.complete:
            break
        log.warning("environment %s: listed %d users, the pool estimates %s", env.name, users, estimate)
    log.info("environment %s: listing %s", env.name, listing.as_dict())
    if require_complete is None:
        require_complete = env.stale_cognito_ids == "clear"
    if require_complete and not listing.complete:
        raise RefusedError(
            f"environment {env.name!r}: listed {listing.users} users in {listing.passes} passes over every slice, "
            f"the pool estimates {listing.estimate}: the listing is not known to be complete, and "
            "stale_cognito_ids: clear would clear the links of the users it missed. Nothing was written. Run "
            "again later (the estimate lags deletions), or with stale_cognito_ids: keep."
        )
    frame = table_frame(listed[0])
    del listed
    frame.attrs["listing"] = listing.as_dict()
    return frame
