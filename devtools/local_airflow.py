"""A self-contained Airflow for the demo and the DAG tests: its own home, SQLite metadata, our folders.

Connections are given as AIRFLOW_CONN_* environment variables (JSON), the same way a
deployment without a secrets backend would give them; nothing is written to a UI.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_REGION = "us-east-2"


def airflow_environment(home: Path) -> dict[str, str]:
    """Variables that point Airflow at ``home`` and at this project's dags/ and plugins/."""
    return {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT_ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        "PYTHONPATH": os.pathsep.join([str(PROJECT_ROOT / "plugins"), str(PROJECT_ROOT)]),
    }


def aws_connection(endpoint_url: str, region: str = DEFAULT_REGION) -> str:
    """An AWS connection whose cognito-idp calls go to an emulator (dummy credentials)."""
    return json.dumps(
        {
            "conn_type": "aws",
            "login": "testing",
            "password": "testing",
            "extra": {"region_name": region, "service_config": {"cognito-idp": {"endpoint_url": endpoint_url}}},
        }
    )


def sqlite_connection(path: Path) -> str:
    return json.dumps({"conn_type": "sqlite", "host": str(path)})


def mysql_connection(host: str, port: int, schema: str, login: str = "root", password: str = "") -> str:
    return json.dumps(
        {"conn_type": "mysql", "host": host, "port": port, "schema": schema, "login": login, "password": password}
    )


def connection_variable(conn_id: str) -> str:
    return f"AIRFLOW_CONN_{conn_id.upper()}"


def migrate_metadata(env: dict[str, str]) -> None:
    """Create or upgrade the metadata database (idempotent; quick when already current)."""
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        env={**os.environ, **env},
        check=True,
        stdout=subprocess.DEVNULL,
    )


def dags_test(env: dict[str, str], dag_id: str, conf: dict[str, Any], log: Path, runs: Path) -> Path:
    """`airflow dags test DAG_ID -c CONF`, output to ``log``; returns the run's folder under ``runs``.

    On failure, prints the end of the log and exits: the demos stop at the first failed run.
    """
    with log.open("w") as out:
        result = subprocess.run(
            [sys.executable, "-m", "airflow", "dags", "test", dag_id, "-c", json.dumps(conf)],
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    if result.returncode != 0:
        print(log.read_text()[-6000:])
        raise SystemExit(f"airflow dags test {dag_id} failed (exit {result.returncode}); see {log}")
    return max((runs / dag_id).iterdir(), key=lambda p: p.stat().st_mtime)
