"""The e2e's view of each environment, read straight from MariaDB and moto (not through the product's code)."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable
from contextlib import closing
from typing import Any

import MySQLdb

from devtools.emulator import aws_client

MARIADB = {"host": "127.0.0.1", "port": 3306, "user": "root", "password": ""}


def _connect(database: str) -> Any:
    return MySQLdb.connect(database=database, **MARIADB)


def table_state(database: str) -> str:
    """A digest of what the sync owns in ``Users`` (not UserID or DateCreated, which a restore and a
    re-insert renumber): equal before and after means the sync wrote nothing that matters."""
    with closing(_connect(database)) as db, closing(db.cursor()) as cursor:
        cursor.execute("SELECT InternalUserID, CognitoID, Email, FirstName, LastName FROM Users")
        rows = sorted(repr(row) for row in cursor.fetchall())
    return hashlib.sha256("\n".join(rows).encode()).hexdigest()


def cognito_ids(database: str) -> list[str | None]:
    with closing(_connect(database)) as db, closing(db.cursor()) as cursor:
        cursor.execute("SELECT CognitoID FROM Users")
        return [row[0] for row in cursor.fetchall()]


def restore_from(source: str, target: str) -> None:
    """What the nightly restore does: ``target``'s Users becomes a copy of ``source``'s, in one transaction."""
    with closing(_connect(target)) as db, closing(db.cursor()) as cursor:
        cursor.execute("DELETE FROM Users")
        cursor.execute(f"INSERT INTO Users SELECT * FROM `{source}`.Users")  # e2e_<env>: the harness's own names
        db.commit()


def pool_subs(moto_url: str, pool_id: str) -> set[str]:
    """Every sub in the pool, listed from moto directly."""
    client = aws_client("cognito-idp", moto_url)
    subs = set()
    for page in client.get_paginator("list_users").paginate(UserPoolId=pool_id, PaginationConfig={"PageSize": 60}):
        for user in page["Users"]:
            subs.update(a["Value"] for a in user["Attributes"] if a["Name"] == "sub")
    return subs


def links_by_pool(ids: Iterable[str | None], subs_by_pool: dict[str, set[str]]) -> Counter[str]:
    """How many rows point at each pool's users ("none" for NULL, "other" for a sub of no pool)."""
    counts: Counter[str] = Counter()
    for cognito_id in ids:
        owner = next((name for name, subs in subs_by_pool.items() if cognito_id in subs), None)
        counts[owner or ("none" if cognito_id is None else "other")] += 1
    return counts
