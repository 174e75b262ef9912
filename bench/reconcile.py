"""Reconcile at scale on the real MariaDB: post-restore, nightly, and today's per-row updates.

Each case runs in a process of its own (`python -m bench.reconcile CASE ...`) so that its
peak memory (ru_maxrss) is its own. The parent builds the data once: a pool frame
(Parquet) and two identical tables, one for our path and one for the per-row baseline.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import MySQLdb
import numpy as np
import pandas as pd

from identity_sync.extract import POOL_COLUMNS
from identity_sync.reconcile import plan_changes
from identity_sync.sql import MYSQL, schema_statement, statement
from identity_sync.table import UsersTable

MYSQL_SETTINGS = {"host": "127.0.0.1", "port": 3306, "user": "root", "password": "", "database": "test"}
LOAD_BATCH = 20_000


def connect() -> Any:
    return MySQLdb.connect(charset="utf8mb4", **MYSQL_SETTINGS)


def _uuids(n: int, rng: np.random.Generator) -> list[str]:
    raw = rng.integers(0, 2**63, size=(n, 2), dtype=np.int64).astype(np.uint64)
    return [str(uuid.UUID(int=(int(a) << 64 | int(b)), version=4)) for a, b in raw]


def build(users: int, workdir: Path, seed: int = 7) -> dict[str, str]:
    """Two tables restored from prod (prod subs) and the dev pool's frame (same people, dev subs)."""
    rng = np.random.default_rng(seed)
    ids, prod_subs, dev_subs = _uuids(users, rng), _uuids(users, rng), _uuids(users, rng)
    emails = [f"user{n:07d}@example.com" for n in range(users)]
    pool = pd.DataFrame(
        {
            "sub": dev_subs,
            "username": dev_subs,
            "email": emails,
            "email_norm": emails,
            "internal_user_id": ids,
            "status": "CONFIRMED",
            "enabled": True,
            "email_verified": True,
            "given_name": "Given",
            "family_name": "Family",
        }
    )[POOL_COLUMNS]
    pool_path = workdir / "pool.parquet"
    pool.to_parquet(pool_path, index=False)
    tables = {"ours": f"bench_users_{uuid.uuid4().hex[:8]}", "per_row": f"bench_users_{uuid.uuid4().hex[:8]}"}
    db = connect()
    cursor = db.cursor()
    cursor.execute(schema_statement(MYSQL, tables["ours"]))
    rows = list(zip(ids, prod_subs, emails, ["Given"] * users, ["Family"] * users, strict=True))
    insert = statement("insert_user", MYSQL, tables["ours"])
    for start in range(0, users, LOAD_BATCH):
        cursor.executemany(insert, rows[start : start + LOAD_BATCH])
        db.commit()
    cursor.execute(f"CREATE TABLE `{tables['per_row']}` LIKE `{tables['ours']}`")
    cursor.execute(f"INSERT INTO `{tables['per_row']}` SELECT * FROM `{tables['ours']}`")
    db.commit()
    db.close()
    return {"pool": str(pool_path), **tables}


def drop(tables: dict[str, str]) -> None:
    db = connect()
    for key in ("ours", "per_row"):
        db.cursor().execute(f"DROP TABLE IF EXISTS `{tables[key]}`")
    db.close()


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def case_sync(pool_path: str, table: str) -> dict[str, Any]:
    """Our path, as the DAG runs it after extraction: read the table, plan, apply."""
    pool = pd.read_parquet(pool_path)
    started = time.perf_counter()
    users = UsersTable(connect(), MYSQL, table, f"bench.{table}")
    rows = users.read()
    read = time.perf_counter()
    plan = plan_changes(pool, rows, "keep")
    planned = time.perf_counter()
    result = users.apply(plan)
    applied = time.perf_counter()
    return {
        "seconds": applied - started,
        "read_s": read - started,
        "plan_s": planned - read,
        "apply_s": applied - planned,
        "rows_written": result.rows_updated + result.rows_inserted,
        "peak_mb": _peak_mb(),
    }


def case_per_row(pool_path: str, table: str) -> dict[str, Any]:
    """Today's helper: one UPDATE per user, by e-mail, parameterised, one commit at the end."""
    pool = pd.read_parquet(pool_path, columns=["sub", "email"])
    started = time.perf_counter()
    db = connect()
    cursor = db.cursor()
    sql = f"UPDATE `{table}` SET CognitoID = %s WHERE Email = %s"
    written = 0
    for sub, email in pool.itertuples(index=False, name=None):
        written += cursor.execute(sql, (sub, email))
    db.commit()
    db.close()
    return {"seconds": time.perf_counter() - started, "rows_written": written, "peak_mb": _peak_mb()}


def run_case(case: str, pool_path: str, table: str) -> dict[str, Any]:
    output = subprocess.run(
        [sys.executable, "-m", "bench.reconcile", case, pool_path, table],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(output.strip().splitlines()[-1])


def run(users: int) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        data = build(users, Path(tmp))
        print(f"[bench] reconcile: {users:,} users loaded twice into MariaDB in {time.perf_counter() - started:.0f}s")
        try:
            restore = run_case("sync", data["pool"], data["ours"])
            nightly = run_case("sync", data["pool"], data["ours"])
            per_row = run_case("per_row", data["pool"], data["per_row"])
        finally:
            drop(data)
    return [
        {
            "case": "post-restore (every CognitoID changes)",
            **restore,
            "per_row_ratio": per_row["seconds"] / restore["seconds"],
        },
        {"case": "nightly (nothing changes)", **nightly},
        {"case": "per-row baseline: one UPDATE per user", **per_row},
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("case", choices=["sync", "per_row"])
    parser.add_argument("pool")
    parser.add_argument("table")
    args = parser.parse_args()
    result = (case_sync if args.case == "sync" else case_per_row)(args.pool, args.table)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
