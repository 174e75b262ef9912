"""docker-compose's one-shot seed: the demo's pools in the moto container, and MySQL tables.

Writes the environments file the Airflow services read ($COGNITO_SYNC_CONFIG). `make e2e`
seeds its MariaDB databases with the same ``mysql_restorer``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import MySQLdb
import yaml

from devtools.demo import seed
from devtools.local_airflow import mysql_connection
from devtools.population import Person
from identity_sync.sql import MYSQL, schema_statement, statement


def mysql_restorer(
    host: str, port: int, user: str, password: str, database_prefix: str
) -> Callable[[str, list[Person], list[str]], str]:
    """``restore_table`` for ``devtools.demo.seed``: database ``<prefix><environment>`` made anew
    holding prod's rows (what a restore leaves); returns the Airflow connection to it."""

    def restore(environment: str, people: list[Person], subs: list[str]) -> str:
        database = MYSQL.identifier(f"{database_prefix}{environment}")
        connection = MySQLdb.connect(host=host, port=port, user=user, password=password)
        try:
            cursor = connection.cursor()
            cursor.execute(f"DROP DATABASE IF EXISTS {database}")  # validated, quoted identifier
            cursor.execute(f"CREATE DATABASE {database} DEFAULT CHARSET utf8mb4")
            cursor.execute(f"USE {database}")
            cursor.execute(schema_statement(MYSQL, "Users"))
            cursor.executemany(
                statement("insert_user", MYSQL, "Users"),
                [(p.internal_id, s, p.email, p.given_name, p.family_name) for p, s in zip(people, subs, strict=True)],
            )
            connection.commit()
        finally:
            connection.close()
        return mysql_connection(host, port, f"{database_prefix}{environment}", user, password)

    return restore


def main() -> None:
    restore = mysql_restorer(
        os.environ.get("SEED_MYSQL_HOST", "mysql"),
        int(os.environ.get("SEED_MYSQL_PORT", "3306")),
        os.environ.get("SEED_MYSQL_USER", "root"),
        os.environ["SEED_MYSQL_PASSWORD"],
        os.environ.get("SEED_MYSQL_DATABASE_PREFIX", "users_"),
    )
    seeded = seed(os.environ["SEED_COGNITO_ENDPOINT"], restore)
    config = Path(os.environ["COGNITO_SYNC_CONFIG"])
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(yaml.safe_dump({"environments": seeded["environments"]}))
    print(f"wrote {config}; expected counts for dev after a restore: {seeded['expected']}")


if __name__ == "__main__":
    main()
