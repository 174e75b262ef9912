"""The bench's people: one population, a table restored from prod, and the pool of each side.

Every person has an InternalUserID and an e-mail that are the same everywhere, and one
``sub`` per side (``prod`` and ``dev``). The table starts with prod's subs, as after a
restore; the pool given to a case is one side's. A post-restore case gives the pool of
the side the table is NOT on (every CognitoID changes, the table flips side); a nightly
case gives the side it is on (nothing changes). Flipping sides instead of reloading
keeps every repetition's work identical and the bench short.

The pool's rows are shuffled: ListUsers returns users in an order unrelated to the
table's, and a per-row loop over e-mails in table order would be kinder to the index
than any real run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from identity_sync.extract import RECORD_COLUMNS, records_frame
from identity_sync.sql import MYSQL, schema_statement

SIDES = ("prod", "dev")


def other(side: str) -> str:
    return SIDES[1 - SIDES.index(side)]


def _uuids(n: int, rng: np.random.Generator) -> list[str]:
    """``n`` random version-4 UUIDs as text (one hex string sliced: 3x quicker than uuid.UUID at 1M)."""
    raw = rng.integers(0, 256, size=(n, 16), dtype=np.uint8)
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40  # version 4
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80  # RFC 4122 variant
    h = raw.tobytes().hex()
    return [
        f"{h[i : i + 8]}-{h[i + 8 : i + 12]}-{h[i + 12 : i + 16]}-{h[i + 16 : i + 20]}-{h[i + 20 : i + 32]}"
        for i in range(0, 32 * n, 32)
    ]


@dataclass(frozen=True)
class Population:
    users: int
    folder: Path

    def pool(self, side: str) -> Path:
        """The pool of ``side`` (Parquet, the frame extract_pool returns), rows in listing order."""
        return self.folder / f"pool-{side}.parquet"

    def subs_file(self, side: str) -> Path:
        """UserID and ``side``'s sub, by UserID (tab-separated): the floor case's staging."""
        return self.folder / f"subs-{side}.tsv"

    @property
    def table_file(self) -> Path:
        """The table as restored from prod: tab-separated, for LOAD DATA."""
        return self.folder / "table-prod.tsv"

    def sample(self, side: str, size: int) -> list[tuple[str, str]]:
        """(sub, email) of the first ``size`` users in listing order: the per-row loop's input."""
        frame = pd.read_parquet(self.pool(side), columns=["sub", "email"]).head(size)
        return list(frame.itertuples(index=False, name=None))

    def sample_rows(self, side: str, size: int) -> list[tuple[str, str]]:
        """(email, sub) of the same users, for the set-based revert of a per-row sample."""
        return [(email, sub) for sub, email in self.sample(side, size)]


def build(users: int, folder: Path, seed: int = 7) -> Population:
    """Write both pools and the table file for ``users`` people under ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    population = Population(users, folder)
    rng = np.random.default_rng(seed)
    ids = _uuids(users, rng)
    subs = {side: _uuids(users, rng) for side in SIDES}
    emails = [f"user{n:07d}@example.com" for n in range(users)]
    order = rng.permutation(users)
    for side in SIDES:
        values: dict[str, Any] = {
            "sub": subs[side],
            "username": subs[side],
            "email": emails,
            "internal_user_id": ids,
            "status": ["CONFIRMED"] * users,
            "enabled": [True] * users,
            "email_verified": [True] * users,
            "given_name": ["Given"] * users,
            "family_name": ["Family"] * users,
        }
        columns = RECORD_COLUMNS
        missing = [c for c in columns if c not in values]
        if missing:
            raise KeyError(f"bench/data.py builds no values for the pool column(s) {missing}")
        frame = records_frame(zip(*(values[c] for c in columns), strict=True))
        frame.take(order).reset_index(drop=True).to_parquet(population.pool(side), index=False)
    table = pd.DataFrame(
        {
            "UserID": np.arange(1, users + 1),
            "InternalUserID": ids,
            "CognitoID": subs["prod"],
            "Email": emails,
            "FirstName": "Given",
            "LastName": "Family",
        }
    )
    table.to_csv(population.table_file, sep="\t", header=False, index=False)
    for side in SIDES:
        pd.DataFrame({"UserID": table["UserID"], "sub": subs[side]}).to_csv(
            population.subs_file(side), sep="\t", header=False, index=False
        )
    return population


def load_table(connection: Any, table: str, population: Population) -> None:
    """Create ``table`` with the reference schema and fill it from the population's table file.

    The unique keys are dropped while the rows load and built again afterwards (one sorted
    build each): 20 s instead of 40-70 s at 1M rows here, at the price of indexes that
    start more compact than after row-by-row inserts.
    """
    cursor = connection.cursor()
    cursor.execute(f"DROP TABLE IF EXISTS `{table}`")
    cursor.execute(schema_statement(MYSQL, table))
    cursor.execute(f"SHOW INDEX FROM `{table}` WHERE Key_name <> 'PRIMARY'")
    keys: dict[str, list[str]] = {}
    kinds: dict[str, str] = {}
    for row in cursor.fetchall():  # Non_unique, Key_name, Column_name, in Seq_in_index order
        keys.setdefault(row[2], []).append(f"`{row[4]}`")
        kinds[row[2]] = "KEY" if row[1] else "UNIQUE KEY"
    if keys:
        cursor.execute(f"ALTER TABLE `{table}` " + ", ".join(f"DROP INDEX `{name}`" for name in keys))
    cursor.execute(
        f"LOAD DATA LOCAL INFILE %s INTO TABLE `{table}` FIELDS TERMINATED BY '\\t' "
        "(UserID, InternalUserID, CognitoID, Email, FirstName, LastName)",
        (str(population.table_file),),
    )
    connection.commit()
    if keys:
        added = ", ".join(f"ADD {kinds[name]} `{name}` ({', '.join(cols)})" for name, cols in keys.items())
        cursor.execute(f"ALTER TABLE `{table}` {added}")
    cursor.close()


def revert_sample(connection: Any, table: str, rows: list[tuple[str, str]]) -> int:
    """Set the CognitoID of the sampled e-mails back (set-based, untimed): the table is one side again."""
    cursor = connection.cursor()
    cursor.execute("CREATE TEMPORARY TABLE bench_revert (Email VARCHAR(100) PRIMARY KEY, CognitoID VARCHAR(45))")
    cursor.executemany("INSERT INTO bench_revert VALUES (%s, %s)", rows)
    cursor.execute(f"UPDATE `{table}` u JOIN bench_revert r ON r.Email = u.Email SET u.CognitoID = r.CognitoID")
    changed = cursor.rowcount
    cursor.execute("DROP TEMPORARY TABLE bench_revert")
    connection.commit()
    cursor.close()
    return changed
