"""`make demo-backfill`: the one-off backfill, then the sync, on embedded defaults.

prod: a pool and a Users table from before the product (no attribute in the pool, no
InternalUserID column). Rows link to users by sub, or only by e-mail (in another case);
some rows have no user, and two users already carry an id of their own (conflicts that
must stay untouched). The backfill runs dry, then for real, then again (nothing to do).
dev: restored from prod's table; its pool has only some of the users. The backfill
creates the missing ones with create_missing_users, and the sync links every row.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import uuid
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from devtools.emulator import aws_client, start_moto_server
from devtools.local_airflow import (
    PROJECT_ROOT,
    airflow_environment,
    aws_connection,
    connection_variable,
    dags_test,
    migrate_metadata,
    sqlite_connection,
)
from devtools.population import ATTRIBUTE, PoolUser, create_pool, create_users
from identity_sync.backfill import id_coverage
from identity_sync.extract import pool_frame
from identity_sync.sql import SQLITE, schema_statement, statement

DEMO_DIR = PROJECT_ROOT / ".demo-backfill"
PEOPLE = 400  # the writes are paced (rate 25/s split over 4 chunks, run one by one by `dags test`)
BY_SUB = 360


def _say(message: str) -> None:
    print(f"[demo-backfill] {message}", flush=True)


def _prod_world(client: Any) -> dict[str, Any]:
    pool = create_pool(client, "prod")  # the attribute exists, but only two users carry a value
    people = [PoolUser(f"person{n:05d}@example.com", None, "Given", f"Family{n}") for n in range(PEOPLE)]
    people[0] = PoolUser(people[0].email, str(uuid.uuid4()), "Has", "OwnId")  # carries an id of its own
    people[1] = PoolUser(people[1].email, "not-a-uuid", "Bad", "Id")
    subs = create_users(client, pool, people)
    database = DEMO_DIR / "users_prod.sqlite"
    with sqlite3.connect(database) as db:
        db.execute(schema_statement(SQLITE, "Users", legacy=True))
        rows = [
            (sub, p.email, p.given_name, p.family_name) for p, sub in zip(people[:BY_SUB], subs[:BY_SUB], strict=True)
        ]
        rows += [(f"lost-{n}", p.email.upper(), p.given_name, p.family_name) for n, p in enumerate(people[BY_SUB:])]
        rows += [(f"former-{n}", f"former{n}@example.com", "Former", "Employee") for n in range(20)]
        db.executemany(statement("insert_legacy_user", SQLITE, "Users"), rows)
    return {"pool": pool, "database": database, "people": people}


def _run(env: dict[str, str], dag_id: str, conf: dict, label: str) -> Path:
    _say(f"{label}: airflow dags test {dag_id} {json.dumps(conf)}")
    return dags_test(env, dag_id, conf, DEMO_DIR / f"{label}.log", DEMO_DIR / "runs")


def _backfill_summary(run: Path, env: str) -> dict:
    summary = json.loads((run / env / "backfill_summary.json").read_text())
    counts = ", ".join(f"{k} {v}" for k, v in summary["planned"].items())
    _say(f"  {env}: {counts}; ids to assign {summary['ids_to_assign']}; billable MAU {summary['billable_mau_writes']}")
    _say(f"  {env}: {summary['outcome']}; written {summary['written']}")
    return summary


def _rows(database: Path) -> list[tuple]:
    """Every row of a demo table, every column: what "writes nothing" is checked against."""
    with sqlite3.connect(database) as db:
        return db.execute("SELECT * FROM Users ORDER BY UserID").fetchall()


def _coverage(client: Any, pool: str) -> tuple[int, int]:
    users = [u for page in client.get_paginator("list_users").paginate(UserPoolId=pool) for u in page["Users"]]
    coverage = id_coverage(pool_frame(users, ATTRIBUTE))
    return coverage["with_valid_id"], coverage["pool_users"]


def main() -> None:
    shutil.rmtree(DEMO_DIR, ignore_errors=True)
    DEMO_DIR.mkdir()
    env = airflow_environment(DEMO_DIR / "airflow")
    _say("preparing Airflow's metadata database (SQLite)")
    migrate_metadata(env)
    server, endpoint = start_moto_server()
    try:
        client = aws_client("cognito-idp", endpoint)
        prod = _prod_world(client)
        dev_pool = create_pool(client, "dev", attribute=None)
        dev_people = prod["people"][2:240]  # some prod users have a dev account (by e-mail), most not
        dev_users = [PoolUser(p.email.title(), None, p.given_name, p.family_name) for p in dev_people]
        create_users(client, dev_pool, dev_users)
        env.update(
            {
                connection_variable("aws_demo"): aws_connection(endpoint),
                connection_variable("users_db_prod"): sqlite_connection(prod["database"]),
                connection_variable("users_db_dev"): sqlite_connection(DEMO_DIR / "users_dev.sqlite"),
                "COGNITO_SYNC_CONFIG": str(DEMO_DIR / "environments.yaml"),
            }
        )
        (DEMO_DIR / "environments.yaml").write_text(
            yaml.safe_dump(
                {
                    "snapshot_base": f"file://{DEMO_DIR / 'runs'}",
                    "environments": {
                        "prod": {
                            "aws_conn_id": "aws_demo",
                            "user_pool_id": prod["pool"],
                            "db_conn_id": "users_db_prod",
                            "protected": True,
                        },
                        "dev": {"aws_conn_id": "aws_demo", "user_pool_id": dev_pool, "db_conn_id": "users_db_dev"},
                    },
                }
            )
        )
        by_email = PEOPLE - BY_SUB
        _say(f"prod: {PEOPLE} users; Users has no InternalUserID ({BY_SUB} rows match by sub, {by_email} by e-mail)")
        _backfill_summary(_run(env, "cognito_user_backfill", {"environments": ["prod"]}, "1-prod-dry-run"), "prod")
        # approved: the demo has nobody to answer the approval (a real run waits for one in Required Actions)
        real = {"environments": ["prod"], "dry_run": False, "apply_migration": True, "rate": 25, "approved": True}
        _backfill_summary(_run(env, "cognito_user_backfill", real, "2-prod-backfill"), "prod")
        with_id, total = _coverage(client, prod["pool"])
        _say(f"  prod pool: {with_id} of {total} users carry a valid id (the 2 conflicts keep theirs)")
        again = _backfill_summary(_run(env, "cognito_user_backfill", real, "3-prod-again"), "prod")
        if again["planned"]["write"] or again["ids_to_assign"] or any(again["written"].values()):
            raise SystemExit("[demo-backfill] the second backfill still wanted to write")
        _say("  second backfill: nothing to write")

        shutil.copy(prod["database"], DEMO_DIR / "users_dev.sqlite")
        _say(
            f"dev: table restored from prod; the dev pool has {len(dev_people)} of the users (e-mails in another case)"
        )
        dev_conf = {"environments": ["dev"], "dry_run": False, "create_missing_users": True, "rate": 25}
        dev_conf["approved"] = True
        _backfill_summary(_run(env, "cognito_user_backfill", dev_conf, "4-dev-backfill"), "dev")
        with_id, total = _coverage(client, dev_pool)
        _say(f"  dev pool: {with_id} of {total} users carry a valid id")
        sync = _run(env, "cognito_user_sync", {"environments": ["dev"], "after_restore": True}, "5-dev-sync")
        counts = json.loads((sync / "dev" / "plan" / "counts.json").read_text())
        _say("  sync: " + ", ".join(f"{k} {v}" for k, v in counts["counts"].items()))
        before = _rows(DEMO_DIR / "users_dev.sqlite")
        sync2 = _run(env, "cognito_user_sync", {"environments": ["dev"], "after_restore": True}, "6-dev-sync-again")
        planned = json.loads((sync2 / "dev" / "plan" / "counts.json").read_text())["metrics"]["rows_to_write"]
        recorded = sum(len(pd.read_csv(path, compression="gzip")) for path in (sync2 / "dev").glob("changes.try-*"))
        if planned or recorded or _rows(DEMO_DIR / "users_dev.sqlite") != before:
            raise SystemExit(f"[demo-backfill] the second sync wrote: {planned} rows planned, {recorded} recorded")
        _say("  second sync: 0 rows to write, 0 values in its record of writes, the dev table unchanged")
    finally:
        server.stop()
        _say("moto server stopped")


if __name__ == "__main__":
    main()
