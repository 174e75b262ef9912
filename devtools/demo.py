"""`make demo`: cognito_user_sync end to end on embedded defaults.

A local moto server plays Cognito (dev, qa and prod pools), SQLite files play each
environment's database, freshly "restored" from prod. The DAG runs for dev with
after_restore through `airflow dags test`, then once more to show that nothing is
left to change. Everything it makes lives under .demo/ and is made anew each time.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

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
from devtools.population import Person, build_scenario, create_pool, create_users, write_sqlite_table
from identity_sync.audit import load_run_record
from identity_sync.reconcile import CATEGORIES
from identity_sync.runfiles import RunFiles

DEMO_DIR = PROJECT_ROOT / ".demo"
DAG_ID = "cognito_user_sync"


def _say(message: str) -> None:
    print(f"[demo] {message}", flush=True)


def seed(
    endpoint: str, restore_table: Callable[[str, list[Person], list[str]], str], prod_users: int = 2500
) -> dict[str, Any]:
    """Create the three pools, and each environment's table from prod's rows (what a restore leaves).

    ``restore_table(environment, people, subs)`` writes one table and returns the Airflow
    connection (JSON) to it. Returns the config's environments, the connections and the
    counts a correct sync of dev reports.
    """
    client = aws_client("cognito-idp", endpoint)
    scenario = build_scenario(prod_users)
    pools = {name: create_pool(client, f"demo-{name}") for name in ("prod", "dev", "qa")}
    started = time.monotonic()
    members = {"prod": scenario.prod_users(), "dev": scenario.dev_users, "qa": scenario.qa_users}
    with ThreadPoolExecutor(max_workers=len(pools)) as workers:  # one writer per pool
        subs = dict(
            zip(pools, workers.map(lambda name: create_users(client, pools[name], members[name]), pools), strict=True)
        )
    prod_subs = subs["prod"]
    _say(
        f"created pools prod ({len(scenario.prod)} users), dev ({len(scenario.dev_users)}), "
        f"qa ({len(scenario.qa_users)}) in {time.monotonic() - started:.1f}s"
    )
    environments, connections = {}, {}
    for name, pool_id in pools.items():
        environments[name] = {
            "aws_conn_id": f"aws_{name}",
            "user_pool_id": pool_id,
            "db_conn_id": f"users_db_{name}",
            **({"protected": True} if name == "prod" else {}),
        }
        connections[connection_variable(f"aws_{name}")] = aws_connection(endpoint)
        connections[connection_variable(f"users_db_{name}")] = restore_table(name, scenario.prod, prod_subs)
    _say("dev and qa tables restored from the prod snapshot: every CognitoID points at a prod user")
    return {"environments": environments, "connections": connections, "expected": scenario.expected_dev}


def _sqlite_table(environment: str, people: list[Person], subs: list[str]) -> str:
    database = DEMO_DIR / f"users_{environment}.sqlite"
    write_sqlite_table(database, people, subs)
    return sqlite_connection(database)


def _run_dag(env: dict[str, str], run: int, reason: str) -> Path:
    conf = {"environments": ["dev"], "after_restore": True, "reason": reason}
    log = DEMO_DIR / f"dags-test-{run}.log"
    _say(f"run {run}: airflow dags test {DAG_ID} (log: {log.relative_to(PROJECT_ROOT)})")
    return dags_test(env, DAG_ID, conf, log, DEMO_DIR / "runs") / "dev"


def _summary(run_dir: Path) -> dict[str, int]:
    record = load_run_record(RunFiles(f"file://{run_dir}"))
    counts, metrics = record.counts, record.metrics
    width = max(map(len, [*CATEGORIES, *metrics]))
    for name in CATEGORIES:
        print(f"    {name:<{width}} {counts[name]:>7,}")
    print(f"    {'-' * (width + 8)}")
    for name, value in metrics.items():
        print(f"    {name:<{width}} {value:>7,}")
    print(f"    outcome: {record.outcome} (triggered {record.trigger.run_type} by {record.trigger.user})")
    for name, location in record.reports.items():
        print(f"    {name}: {Path(location.removeprefix('file://')).relative_to(PROJECT_ROOT)}")
    print(f"    run record: {(run_dir / 'summary.md').relative_to(PROJECT_ROOT)}")
    return {**counts, "rows_to_write": metrics["rows_to_write"], "rows_written": record.rows_written}


def main() -> None:
    shutil.rmtree(DEMO_DIR, ignore_errors=True)
    DEMO_DIR.mkdir()
    home = DEMO_DIR / "airflow"
    env = airflow_environment(home)
    _say("preparing Airflow's metadata database (SQLite)")
    migrate_metadata(env)
    server, endpoint = start_moto_server()
    try:
        _say(f"moto server (local Cognito) on {endpoint}")
        seeded = seed(endpoint, _sqlite_table)
        config = DEMO_DIR / "environments.yaml"
        runs = f"file://{DEMO_DIR / 'runs'}"
        config.write_text(yaml.safe_dump({"snapshot_base": runs, "environments": seeded["environments"]}))
        env.update(seeded["connections"])
        env["COGNITO_SYNC_CONFIG"] = str(config)
        first = _summary(_run_dag(env, 1, "demo: dev restored from the prod snapshot"))
        expected = seeded["expected"]
        mismatched = {k: (first[k], v) for k, v in expected.items() if first[k] != v}
        if mismatched:
            raise SystemExit(f"[demo] counts differ from the scenario (got, expected): {mismatched}")
        _say("first run: every category as the scenario expects")
        second = _summary(_run_dag(env, 2, "demo: second run, nothing should change"))
        if second["rows_to_write"] != 0 or second["rows_written"] != 0:
            raise SystemExit(
                f"[demo] the second run still wanted to write {second['rows_to_write']} rows "
                f"and wrote {second['rows_written']}"
            )
        _say("second run: 0 rows to write, 0 rows written")
    finally:
        server.stop()
        _say("moto server stopped")


if __name__ == "__main__":
    main()
