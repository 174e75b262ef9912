"""Extract a pool's users into a DataFrame: one row per user, the values as Cognito holds them."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pandas as pd

from identity_sync.cognito import CognitoHook, user_attributes
from identity_sync.config import Environment
from identity_sync.guards import RefusedError
from identity_sync.identity import normalise_emails
from identity_sync.ratelimit import RateLimiter, collector_paused

log = logging.getLogger(__name__)

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


def pool_frame(users: Iterable[dict[str, Any]], attribute: str) -> pd.DataFrame:
    """ListUsers records -> the pool DataFrame; ``internal_user_id`` is the raw attribute value.

    ``email_verified`` is True only where the attribute reads "true" (ListUsers returns it
    as a string): an address nobody proved must never link a user to a row.
    """
    records = []
    for user in users:
        attrs = user_attributes(user)
        records.append(
            (
                attrs.get("sub"),
                user.get("Username"),
                attrs.get("email"),
                attrs.get(attribute),
                user.get("UserStatus"),
                bool(user.get("Enabled", True)),
                str(attrs.get("email_verified", "")).strip().lower() == "true",
                attrs.get("given_name"),
                attrs.get("family_name"),
            )
        )
    return records_frame(records)


def records_frame(records: Iterable[tuple[Any, ...] | dict[str, Any]]) -> pd.DataFrame:
    """Pool users given as records of every POOL_COLUMNS column but email_norm, which is derived."""
    columns = [c for c in POOL_COLUMNS if c != "email_norm"]
    frame = pd.DataFrame.from_records(list(records), columns=columns)
    for column in columns:
        if column not in ("enabled", "email_verified"):
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


def _list_pass(env: Environment, hook: CognitoHook, limiter: RateLimiter) -> list[dict[str, Any]]:
    """One listing of every slice; a user listed twice means the slices or pages are not what we think."""
    started, calls = time.monotonic(), hook.calls
    with collector_paused():
        slices = hook.list_users_sliced(env.user_pool_id, env.list_users_slices, limiter)
    elapsed = time.monotonic() - started
    users = [user for part in slices for user in part]
    subs = [user_attributes(user).get("sub") for user in users]
    duplicated = len(subs) - len(set(subs))
    if duplicated:
        raise RuntimeError(
            f"environment {env.name!r}: ListUsers returned {duplicated} users twice across "
            f"{len(slices)} slices; extraction is unreliable"
        )
    log.info(
        "environment %s: %d users in %d slices (largest %d), %d ListUsers calls in %.1fs (%.1f/s), %d throttled",
        env.name,
        len(users),
        len(slices),
        max(map(len, slices)),
        hook.calls - calls,
        elapsed,
        (hook.calls - calls) / elapsed if elapsed else 0.0,
        hook.throttled,
    )
    return users


def extract_pool(
    env: Environment, hook: CognitoHook | None = None, *, require_complete: bool | None = None, passes: int = 2
) -> pd.DataFrame:
    """All users of the environment's pool, listed in slices at the environment's ListUsers rate.

    The frame's ``attrs["listing"]`` holds the ``Listing`` (counts only). An incomplete
    listing is refused (``RefusedError``, before anything is written) when
    ``require_complete``, which defaults to ``stale_cognito_ids: clear``: a row's link is
    never cleared on the word of a listing that may have missed its user.
    """
    hook = hook or CognitoHook(aws_conn_id=env.aws_conn_id)
    limiter = RateLimiter(env.list_users_rps)
    by_sub: dict[Any, dict[str, Any]] = {}
    for attempt in range(1, passes + 1):
        by_sub.update((user_attributes(user).get("sub"), user) for user in _list_pass(env, hook, limiter))
        estimate = hook.describe_user_pool(env.user_pool_id).get("EstimatedNumberOfUsers")
        listing = Listing(len(by_sub), estimate, attempt, estimate is not None and len(by_sub) >= estimate)
        if listing.complete:
            break
        log.warning("environment %s: listed %d users, the pool estimates %s", env.name, len(by_sub), estimate)
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
    frame = pool_frame(by_sub.values(), env.attribute)
    frame.attrs["listing"] = listing.as_dict()
    return frame
