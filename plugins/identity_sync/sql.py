"""The statements in include/sql/, per dialect, with the table name filled in safely.

Values always travel as parameters. The only things substituted into the text are the
table name, which config validates as a plain identifier and which is quoted here, one
of the two unique key columns the sync writes (a fixed list, never input) with its
staging table, and a run of placeholders for a list of ids.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

from identity_sync.config import PROJECT_ROOT
from identity_sync.config import SQL_IDENTIFIER as _IDENTIFIER

SQL_DIR = PROJECT_ROOT / "include" / "sql"


@dataclass(frozen=True)
class Dialect:
    name: str  # "mysql" or "sqlite": the sub-folder of include/sql with its own statements
    placeholder: str
    quote: str

    def identifier(self, name: str) -> str:
        if not _IDENTIFIER.match(name):
            raise ValueError(f"not a plain SQL identifier: {name!r}")
        return f"{self.quote}{name}{self.quote}"


MYSQL = Dialect("mysql", "%s", "`")
SQLITE = Dialect("sqlite", "?", '"')
DIALECTS = {"mysql": MYSQL, "sqlite": SQLITE}
# The unique key columns the apply writes, each staged in a temporary table of its own.
STAGED_KEY_TABLES = {"CognitoID": "sync_staged_cognito_ids", "Email": "sync_staged_emails"}


def dialect_for(conn_type: str) -> Dialect:
    try:
        return DIALECTS[conn_type]
    except KeyError:
        raise ValueError(f"connection type {conn_type!r} is not supported (use mysql or sqlite)") from None


@cache
def _read(path: Path) -> str:
    """The file's text without its comment lines (``--``)."""
    return "\n".join(line for line in path.read_text().splitlines() if not line.lstrip().startswith("--"))


def statements(
    name: str, dialect: Dialect, table: str | None = None, *, column: str | None = None, ids: int = 0
) -> list[str]:
    """The statements of ``include/sql/<dialect>/<name>.sql`` (or the shared ``<name>.sql``).

    ``column`` fills ``{column}`` and ``{staged}`` (a key of STAGED_KEY_TABLES only);
    ``ids`` fills ``{ids}`` with that many placeholders, for ``IN ({ids})``.
    """
    path = SQL_DIR / dialect.name / f"{name}.sql"
    if not path.exists():
        path = SQL_DIR / f"{name}.sql"
    text = _read(path)
    if table is not None:
        text = text.replace("{table}", dialect.identifier(table))
    if column is not None:
        if column not in STAGED_KEY_TABLES:
            raise ValueError(f"not a staged key column: {column!r}")
        text = text.replace("{column}", dialect.identifier(column)).replace("{staged}", STAGED_KEY_TABLES[column])
    text = text.replace("%s", dialect.placeholder).replace("{ids}", ", ".join([dialect.placeholder] * ids))
    return [s.strip() for s in text.split(";") if s.strip()]


def statement(name: str, dialect: Dialect, table: str | None = None, *, column: str | None = None, ids: int = 0) -> str:
    """The single statement of a file."""
    (only,) = statements(name, dialect, table, column=column, ids=ids)
    return only


def schema_statement(dialect: Dialect, table: str, *, legacy: bool = False) -> str:
    """CREATE TABLE for the reference Users table (demo and tests); ``legacy``: before the migrations."""
    path = SQL_DIR / "schema" / f"users{'_legacy' if legacy else ''}.{dialect.name}.sql"
    return _read(path).replace("{table}", dialect.identifier(table)).strip()


def migration_statements(script: str, dialect: Dialect, table: str) -> list[str]:
    """A Flyway script of include/sql/migrations (the dialect's own form if it has one), placeholder filled."""
    path = SQL_DIR / "migrations" / dialect.name / script
    if not path.exists():
        path = SQL_DIR / "migrations" / script
    text = _read(path).replace("${users_table}", dialect.identifier(table))
    return [s.strip() for s in text.split(";") if s.strip()]
