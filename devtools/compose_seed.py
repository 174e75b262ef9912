"""docker-compose's one-shot seed: the demo's pools in the moto container, and MySQL tables.

Writes the environments file the Airflow container reads ($COGNITO_SYNC_CONFIG) and prints
the connections to give Airflow (the compose file already sets the same ones).
"""

from __future__ import annotations

import os
from pathlib import Path

import MySQLdb
import yaml

from devtools.demo import seed
from devtools.local_airflow import mysql_connection
from devtools.population import Person
from identity_sync.sql import MYSQL, schema_statement, statement

MYSQL_HOST = os.environ.get("SEED_MYSQL_HOST", "mysql")
MYSQL_PORT = int(os.environ.get("SEED_MYSQL_PORT", "3306"))
MYSQL_USER = os.environ.get("SEED_MYSQL_USER", "root")
MYSQL_PASSWORD = os.environ["SEED_MYSQL_PASSWORD"]


def mysql_table(environment: str, people: list[Person], subs: list[str]) -> str:
    database = f"users_{environment}"
    connection = MySQLdb.connect(host=MYSQL_HOST, port=MYSQL_PORT, user=MYSQL_USER, password=MYSQL_PASSWORD)
    try:
        cursor = connection.cursor()
        cursor.execute(f"DROP DATABASE IF EXISTS `{database}`")  # fixed names: users_dev, users_qa, users_prod
        cursor.execute(f"CREATE DATABASE `{database}` DEFAULT CHARSET utf8mb4")
        cursor.execute(f"USE `{database}`")
        cursor.execute(schema_statement(MYSQL, "Users"))
        cursor.executemany(
            statement("insert_user", MYSQL, "Users"),
            [(p.internal_id, sub, p.email, p.given_name, p.family_name) for p, sub in zip(people, subs, strict=True)],
        )
        connection.commit()
    finally:
        connection.close()
    return mysql_connection(MYSQL_HOST, MYSQL_PORT, database, MYSQL_USER, MYSQL_PASSWORD)


def main() -> None:
    seeded = seed(os.environ["SEED_COGNITO_ENDPOINT"], mysql_table)
    config = Path(os.environ["COGNITO_SYNC_CONFIG"])
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(yaml.safe_dump({"environments": seeded["environments"]}))
    print(f"wrote {config}; expected counts for dev after a restore: {seeded['expected']}")


if __name__ == "__main__":
    main()
