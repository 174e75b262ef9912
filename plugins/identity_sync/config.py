"""environments.yaml -> typed, validated settings.

Validation happens when the DAGs are parsed, so a typo in the file fails the import
with a message naming the environment and the key instead of failing a run at 3 am.
Every value is checked exactly: patterns match the whole value (a trailing newline
fails), integers are integers (not 16.0, not true), and the YAML itself may not repeat
a key (a second ``dev:`` would silently win) or use anchors and aliases (an alias bomb
expands a few hundred bytes into gigabytes).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from identity_sync.ratelimit import QUOTAS

CONFIG_ENV_VAR = "COGNITO_SYNC_CONFIG"
SNAPSHOT_BASE_ENV_VAR = "COGNITO_SYNC_SNAPSHOT_BASE"
PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG_PATH = PROJECT_ROOT / "include" / "config" / "environments.yaml"

STALE_POLICIES = ("keep", "clear")
SUB_PREFIX_DIGITS = {1: 0, 16: 1, 256: 2}  # list_users_slices -> hex digits of the sub prefix of each slice
DEFAULT_RETENTION_DAYS = 30
# Anchored with \A and \Z (not ^ and $, which let a trailing newline through), so .match is exact too.
SQL_IDENTIFIER = re.compile(r"\A[A-Za-z_][A-Za-z0-9_]{0,63}\Z")
_POOL_ID = re.compile(r"\A[\w-]+_[0-9a-zA-Z]+\Z", re.ASCII)
_CONN_ID = re.compile(r"\A[\w.-]{1,250}\Z", re.ASCII)
_ATTRIBUTE = re.compile(r"\Acustom:[\w.:-]{1,20}\Z", re.ASCII)
_ENV_NAME = re.compile(r"\A[a-z][a-z0-9_-]{0,31}\Z")
_URL = re.compile(r"\A[a-z][a-z0-9+.-]*://[^\x00-\x1f\x7f]+\Z")


class ConfigError(ValueError):
    """environments.yaml is invalid; the message names the environment and the key."""


@dataclass(frozen=True)
class Environment:
    name: str
    aws_conn_id: str
    user_pool_id: str
    db_conn_id: str
    users_table: str = "Users"
    attribute: str = "custom:internal_user_id"
    stale_cognito_ids: str = "keep"
    max_change_ratio: float = 0.05
    protected: bool = False
    list_users_rps: float = 25.0
    list_users_slices: int = 16

    @property
    def lock_name(self) -> str:
        """Name of the database lock that serialises writers of this environment's table."""
        return f"cognito_sync.{self.name}.{self.users_table}"


@dataclass(frozen=True)
class Settings:
    environments: dict[str, Environment]
    snapshot_base: str
    source: Path = field(compare=False)
    snapshot_retention_days: int = DEFAULT_RETENTION_DAYS

    def environment(self, name: str) -> Environment:
        try:
            return self.environments[name]
        except KeyError:
            known = ", ".join(sorted(self.environments))
            raise ConfigError(f"unknown environment {name!r}; {self.source} defines: {known}") from None

    def select(self, names: list[str] | None) -> list[Environment]:
        """The environments named (all when None or empty), in the order given: the one way to pick them."""
        if not names:
            return list(self.environments.values())
        return [self.environment(name) for name in dict.fromkeys(names)]


# -- values: each check returns the value to keep, or None when it is not acceptable ----------

Check = Callable[[Any], Any]


def _text(pattern: re.Pattern[str]) -> Check:
    return lambda value: value if isinstance(value, str) and pattern.fullmatch(value) else None


def _number(low: float, high: float, *, low_inclusive: bool = True) -> Check:
    def check(value: Any) -> float | None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        above_low = value >= low if low_inclusive else value > low
        return float(value) if above_low and value <= high else None

    return check


def _integer(allowed: Callable[[int], bool]) -> Check:
    """An int in YAML's own sense: 16.0 and true are not integers."""
    return lambda value: value if type(value) is int and allowed(value) else None


def _boolean(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


def _one_of(choices: tuple[str, ...]) -> Check:
    return lambda value: value if isinstance(value, str) and value in choices else None


_LIST_USERS_QUOTA = QUOTAS["ListUsers"]
_SLICES = ", ".join(map(str, SUB_PREFIX_DIGITS))
_KEYS: dict[str, tuple[Check, str]] = {
    "aws_conn_id": (_text(_CONN_ID), "an Airflow connection id"),
    "user_pool_id": (_text(_POOL_ID), "a Cognito user pool id like us-east-2_AbC123"),
    "db_conn_id": (_text(_CONN_ID), "an Airflow connection id"),
    "users_table": (_text(SQL_IDENTIFIER), "a plain SQL identifier (letters, digits, _)"),
    "attribute": (_text(_ATTRIBUTE), "a custom attribute 'custom:<1..20 chars>'"),
    "stale_cognito_ids": (_one_of(STALE_POLICIES), "keep or clear"),
    "max_change_ratio": (_number(0, 1), "a number in [0, 1]"),
    "protected": (_boolean, "true or false"),
    "list_users_rps": (
        _number(0, _LIST_USERS_QUOTA, low_inclusive=False),
        f"a number in (0, {_LIST_USERS_QUOTA:g}] (the ListUsers quota per account and Region)",
    ),
    "list_users_slices": (_integer(SUB_PREFIX_DIGITS.__contains__), f"one of the integers {_SLICES}"),
}
_REQUIRED = ("aws_conn_id", "user_pool_id", "db_conn_id")
_TOP_LEVEL = {"environments", "snapshot_base", "snapshot_retention_days"}


def parse_environment(name: Any, raw: Any) -> Environment:
    if not isinstance(name, str) or not _ENV_NAME.fullmatch(name):
        raise ConfigError(f"environment name {name!r} must be lower-case letters, digits, '-' or '_'")
    if not isinstance(raw, dict):
        raise ConfigError(f"environment {name!r}: expected a mapping of keys, got {type(raw).__name__}")
    unknown = sorted(set(raw) - set(_KEYS), key=str)
    if unknown:
        raise ConfigError(f"environment {name!r}: unknown key {unknown[0]!r} (allowed: {', '.join(sorted(_KEYS))})")
    for key in _REQUIRED:
        if raw.get(key) in (None, ""):
            raise ConfigError(f"environment {name!r}: missing required key {key!r}")
    values = {}
    for key, value in raw.items():
        check, what = _KEYS[key]
        checked = check(value)
        if checked is None:
            raise ConfigError(f"environment {name!r}: key {key!r} must be {what}, got {value!r}")
        values[key] = checked
    return Environment(name=name, **values)


def default_snapshot_base() -> str:
    airflow_home = os.environ.get("AIRFLOW_HOME", str(Path.home() / "airflow"))
    return f"file://{Path(airflow_home).resolve()}/cognito_sync"


def parse_settings(raw: Any, source: Path) -> Settings:
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping with the key 'environments'")
    unknown = sorted(set(raw) - _TOP_LEVEL, key=str)
    if unknown:
        raise ConfigError(f"{source}: unknown top-level key {unknown[0]!r} (allowed: {', '.join(sorted(_TOP_LEVEL))})")
    envs = raw.get("environments")
    if not isinstance(envs, dict) or not envs:
        raise ConfigError(f"{source}: key 'environments' must map at least one environment name to its settings")
    base = os.environ.get(SNAPSHOT_BASE_ENV_VAR) or raw.get("snapshot_base") or default_snapshot_base()
    if not isinstance(base, str) or not _URL.fullmatch(base):
        raise ConfigError(
            f"{source}: key 'snapshot_base' must be a URL like file:///path or s3://bucket/prefix, got {base!r}"
        )
    retention = _integer(lambda days: days >= 1)(raw.get("snapshot_retention_days", DEFAULT_RETENTION_DAYS))
    if retention is None:
        raise ConfigError(
            f"{source}: key 'snapshot_retention_days' must be an integer of at least 1, "
            f"got {raw['snapshot_retention_days']!r}"
        )
    return Settings(
        environments={name: parse_environment(name, env) for name, env in envs.items()},
        snapshot_base=base.rstrip("/"),
        source=source,
        snapshot_retention_days=retention,
    )


class StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses repeated mapping keys, anchors and aliases, naming the line."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            raise ConfigError(
                f"line {event.start_mark.line + 1}: anchors and aliases (& and *) are not allowed in this file; "
                "write every value out"
            )
        return super().compose_node(parent, index)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if not isinstance(key, Hashable):
                continue  # SafeLoader refuses it below, with its own message
            if key in seen:
                raise ConfigError(f"line {line}: key {key!r} repeats the key of line {seen[key]}; each key once")
            seen[key] = line
        return super().construct_mapping(node, deep)


def config_path() -> Path:
    return Path(os.environ.get(CONFIG_ENV_VAR) or DEFAULT_CONFIG_PATH)


def load_settings(path: Path | None = None) -> Settings:
    """Read and validate the environments file (COGNITO_SYNC_CONFIG or the default)."""
    source = path or config_path()
    try:
        raw = yaml.load(source.read_text(), Loader=StrictLoader)  # a SafeLoader subclass
    except FileNotFoundError:
        raise ConfigError(f"config file {source} not found (set {CONFIG_ENV_VAR} to its path)") from None
    except ConfigError as exc:
        raise ConfigError(f"config file {source}, {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {source} is not valid YAML: {exc}") from None
    return parse_settings(raw, source)
