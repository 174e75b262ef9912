"""The write's floor: the one UPDATE a re-link cannot avoid, with and without the unique CognitoID index.

Nothing of the product runs here. The new subs are staged (UserID, sub; sorted; LOAD DATA
LOCAL, timed apart) and one ``UPDATE Users JOIN staged SET CognitoID = new`` rewrites
every row in one transaction. Without the unique index the same statement shows what the
index maintenance costs; the index is dropped for those runs and built again afterwards.
"""

from __future__ import annotations

import time
from typing import Any

from bench.data import Population
from devtools.private_mariadb import PrivateMariaDB


def cognito_index(server: PrivateMariaDB, table: str) -> str | None:
    """The name of the index on CognitoID, if any."""
    conn = server.connect_socket()
    try:
        cursor = conn.cursor()
        cursor.execute(f"SHOW INDEX FROM `{table}` WHERE Column_name = 'CognitoID'")
        row = cursor.fetchone()
        return row[2] if row else None
    finally:
        conn.close()


def set_index(server: PrivateMariaDB, table: str, name: str, present: bool) -> dict[str, Any]:
    """Drop the CognitoID index, or build it again (untimed set-up)."""
    conn = server.connect_socket()
    try:
        change = f"ADD UNIQUE KEY `{name}` (CognitoID)" if present else f"DROP INDEX `{name}`"
        conn.cursor().execute(f"ALTER TABLE `{table}` {change}")
    finally:
        conn.close()
    return {}


def floor_task(server: PrivateMariaDB, table: str, population: Population, side: str) -> dict[str, Any]:
    """Stage ``side``'s subs, then the bare UPDATE and its commit; the table moves to ``side``."""
    conn = server.connect_socket(local_infile=1)
    try:
        cursor = conn.cursor()
        cursor.execute("CREATE TEMPORARY TABLE bench_floor (UserID INT PRIMARY KEY, NewCognitoID VARCHAR(45))")
        started = time.perf_counter()
        cursor.execute(
            "LOAD DATA LOCAL INFILE %s INTO TABLE bench_floor FIELDS TERMINATED BY '\\t'",
            (str(population.subs_file(side)),),
        )
        staged = time.perf_counter()
        cursor.execute(f"UPDATE `{table}` u JOIN bench_floor s ON s.UserID = u.UserID SET u.CognitoID = s.NewCognitoID")
        rows = cursor.rowcount
        conn.commit()
        updated = time.perf_counter()
        cursor.execute("DROP TEMPORARY TABLE bench_floor")
    finally:
        conn.close()
    return {"stage_s": staged - started, "update_s": updated - staged, "rows_written": rows}
