"""Extract a pool's users into a DataFrame: one row per user, the values as Cognito holds them."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pandas as pd

from identity_sync.cognito import CognitoHook, user_attributes
from identity_sync.config import Environment
from identity_sync.identity import normalise_emails

POOL_COLUMNS = [
    "sub",
    "username",
    "email",
    "email_norm",
    "internal_user_id",
    "status",
    "enabled",
    "given_name",
    "family_name",
]


def pool_frame(users: Iterable[dict[str, Any]], attribute: str) -> pd.DataFrame:
    """ListUsers records -> the pool DataFrame; ``internal_user_id`` is the raw attribute value."""
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
        if column != "enabled":
            frame[column] = frame[column].astype("string")
    frame["enabled"] = frame["enabled"].astype(bool)
    frame.insert(3, "email_norm", normalise_emails(frame["email"]))
    return frame


def extract_pool(env: Environment, hook: CognitoHook | None = None) -> pd.DataFrame:
    """All users of the environment's pool; fails if Cognito returns the same sub twice."""
    hook = hook or CognitoHook(aws_conn_id=env.aws_conn_id)
    frame = pool_frame(hook.list_users(env.user_pool_id), env.attribute)
    duplicated = int(frame["sub"].duplicated().sum())
    if duplicated:
        raise RuntimeError(
            f"environment {env.name!r}: ListUsers returned {duplicated} users twice; extraction is unreliable"
        )
    return frame
