"""The InternalUserID column and its unique index: check them, and add them when allowed.

The scripts are Flyway versioned migrations (include/sql/migrations/V<n>__*.sql), meant
for the team's own Flyway pipeline; the backfill runs them itself only when asked to.
DDL commits implicitly in MySQL, so each script is checked before it runs and can be
run again after a failure.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from identity_sync.sql import migration_statements, statement
from identity_sync.table import UsersTable

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Migration:
    script: str  # file name in include/sql/migrations/
    check: str  # statement that counts what the script creates (0 = missing)
    what: str


MIGRATIONS = (
    Migration("V1__add_internal_user_id_column.sql", "has_internal_user_id_column", "column InternalUserID"),
    Migration(
        "V2__add_internal_user_id_unique_index.sql",
        "has_internal_user_id_unique_index",
        "unique index on InternalUserID",
    ),
)


def pending_migrations(table: UsersTable) -> list[Migration]:
    """The scripts whose effect the table lacks, in order: each builds on the one before."""
    cursor = table.connection.cursor()
    try:
        for position, migration in enumerate(MIGRATIONS):
            cursor.execute(statement(migration.check, table.dialect), (table.table,))
            if not cursor.fetchone()[0]:
                return list(MIGRATIONS[position:])
    finally:
        cursor.close()
    return []


def apply_migrations(table: UsersTable, pending: list[Migration]) -> None:
    cursor = table.connection.cursor()
    try:
        for migration in pending:
            for sql in migration_statements(migration.script, table.dialect, table.table):
                cursor.execute(sql)
            table.connection.commit()
            log.info("applied %s (%s) to %s", migration.script, migration.what, table.table)
    finally:
        cursor.close()
