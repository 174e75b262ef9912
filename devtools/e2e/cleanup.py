"""What a run made outside its folder (databases, services it had to start), written down as it is
made, and undone by ``Deployment.stop`` or, when the Python side died, by scripts/e2e/run.sh's exit
trap: ``python -m devtools.e2e.cleanup RUN_DIR``."""

from __future__ import annotations

import json
import subprocess
import sys
from contextlib import closing
from pathlib import Path
from typing import Any

import MySQLdb

from devtools.e2e.world import MARIADB

POSTGRES = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}
LEDGER = "made.json"


def mariadb() -> Any:
    return MySQLdb.connect(**MARIADB)


def postgres(database: str = "postgres") -> Any:
    import psycopg2  # requirements-deploy.txt: `make test` collects tests/e2e without it

    connection = psycopg2.connect(dbname=database, **POSTGRES)
    connection.autocommit = True
    return connection


def record(root: Path, **made: Any) -> None:
    """Add to the run's ledger: lists are extended, other values set."""
    path = root / LEDGER
    ledger = json.loads(path.read_text()) if path.exists() else {}
    for key, value in made.items():
        ledger[key] = [*ledger.get(key, []), *value] if isinstance(value, list) else value
    path.write_text(json.dumps(ledger, indent=2))


def undo(root: Path) -> None:
    """Drop the run's databases and stop the services it started; the ledger goes once done."""
    path = root / LEDGER
    if not path.exists():
        return
    ledger = json.loads(path.read_text())
    if ledger.get("postgres_database"):
        with closing(postgres()) as db, db.cursor() as cursor:  # e2e_airflow_<hex>, made by this run
            cursor.execute(f'DROP DATABASE IF EXISTS "{ledger["postgres_database"]}" WITH (FORCE)')
    with closing(mariadb()) as db, closing(db.cursor()) as cursor:
        for name in ledger.get("mariadb_databases", []):
            cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")  # e2e_<environment>, made by this run
    for command in ledger.get("stop_commands", []):
        subprocess.run(command, check=False)
    path.unlink()


if __name__ == "__main__":
    undo(Path(sys.argv[1]))
