"""Extract a pool's users into a DataFrame: one row per user, the values as Cognito holds them."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any

import pandas as pd

from identity_sync.cognito import CognitoHook, user_attributes
from identity_sync.config import Environment
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


def extract_pool(env: Environment, hook: CognitoHook | None = None) -> pd.DataFrame:
    """All users of the environment's pool, listed in slices at the environment's ListUsers rate.

    Fails if a user comes back twice (in two slices, or twice in one), since then the
    slices or the pages are not what we think; a total that differs from the pool's own
    estimate is logged (the estimate is eventually consistent, as ListUsers is).
    """
    hook = hook or CognitoHook(aws_conn_id=env.aws_conn_id)
    limiter = RateLimiter(env.list_users_rps)
    started = time.monotonic()
    with collector_paused():
        slices = hook.list_users_sliced(env.user_pool_id, env.list_users_slices, limiter)
    elapsed = time.monotonic() - started
    frame = pool_frame((user for part in slices for user in part), env.attribute)
    duplicated = int(frame["sub"].duplicated().sum())
    if duplicated:
        raise RuntimeError(
            f"environment {env.name!r}: ListUsers returned {duplicated} users twice across "
            f"{len(slices)} slices; extraction is unreliable"
        )
    estimate = hook.describe_user_pool(env.user_pool_id).get("EstimatedNumberOfUsers")
    log.info(
        "environment %s: %d users in %d slices (largest %d), %d ListUsers calls in %.1fs (%.1f/s), %d throttled; "
        "pool estimate %s",
        env.name,
        len(frame),
        len(slices),
        max(map(len, slices)),
        hook.calls,
        elapsed,
        hook.calls / elapsed if elapsed else 0.0,
        hook.throttled,
        estimate,
    )
    if estimate is not None and estimate != len(frame):
        log.warning("environment %s: listed %d users, the pool estimates %s", env.name, len(frame), estimate)
    return frame
