"""Refusals about the pool itself, before anything is written: the id attribute must exist and be write-protected.

The sync trusts ``custom:internal_user_id``: if an app client may write it, any signed-in
user of that client can point their account at another person's id, and the next run
relinks that person's row to them. Per AWS, a client whose ``WriteAttributes`` list names
the attribute can write it; a client with no list may write the standard attributes
only (and DescribeUserPoolClient then returns no list).
"""

from __future__ import annotations

import logging
from typing import Any

from identity_sync.cognito import CognitoHook, schema_attribute
from identity_sync.config import Environment
from identity_sync.guards import RefusedError

log = logging.getLogger(__name__)


def attribute_writers(clients: list[dict[str, Any]], attribute: str) -> list[dict[str, Any]]:
    """The app clients (DescribeUserPoolClient records) whose WriteAttributes names ``attribute``."""
    return [client for client in clients if attribute in (client.get("WriteAttributes") or [])]


def refuse_writable_attribute(env: Environment, hook: CognitoHook) -> int:
    """Refuse when any app client of the pool can write the id attribute; returns how many clients were checked."""
    clients = list(hook.app_clients(env.user_pool_id))
    writers = attribute_writers(clients, env.attribute)
    if writers:
        named = ", ".join(f"{c['ClientId']} ({c.get('ClientName') or 'no name'})" for c in writers)
        raise RefusedError(
            f"environment {env.name!r}: app client(s) {named} of pool {env.user_pool_id} can write {env.attribute} "
            "(it is in their WriteAttributes): any signed-in user could set it to another person's id and take "
            "over that person's row. Remove it from every app client's WriteAttributes. Nothing was written."
        )
    log.info("environment %s: none of the pool's %d app clients can write %s", env.name, len(clients), env.attribute)
    return len(clients)


def refuse_missing_attribute(env: Environment, pool: dict[str, Any]) -> None:
    """Refuse when the configured attribute is not in the pool's schema (DescribeUserPool), e.g. misspelt.

    Without it every user would look as if it had no id, and the sync would quietly become an
    e-mail matcher. The backfill adds a missing attribute instead, so it does not call this.
    """
    if schema_attribute(pool, env.attribute) is not None:
        return
    custom = sorted(a["Name"] for a in pool.get("SchemaAttributes", []) if a.get("Name", "").startswith("custom:"))
    raise RefusedError(
        f"environment {env.name!r}: pool {env.user_pool_id} has no attribute {env.attribute!r} "
        f"(its custom attributes: {', '.join(custom) or 'none'}). Check `attribute` in the config, or run "
        "cognito_user_backfill, which adds it. Nothing was written."
    )


def check_pool(env: Environment, hook: CognitoHook | None = None) -> None:
    """What the sync refuses on before it lists a user: the attribute is missing or an app client can write it."""
    hook = hook or CognitoHook(aws_conn_id=env.aws_conn_id)
    refuse_missing_attribute(env, hook.describe_user_pool(env.user_pool_id))
    refuse_writable_attribute(env, hook)
