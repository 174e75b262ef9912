"""environments.yaml -> typed, validated settings.

Validation happens when the DAGs are parsed, so a typo in the file fails the import
with a message naming the environment and the key instead of failing a run at 3 am.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

CONFIG_ENV_VAR = "COGNITO_SYNC_CONFIG"
SNAPSHOT_BASE_ENV_VAR = "COGNITO_SYNC_SNAPSHOT_BASE"
PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG_PATH = PROJECT_ROOT / "include" / "config" / "environments.yaml"

STALE_POLICIES = ("keep", "clear")
LIST_USERS_QUOTA = 30.0  # ListUsers requests per second, per account and Region (not adjustable)
SLICE_COUNTS = (1, 16, 256)  # a sub prefix of 0, 1 or 2 hex digits
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_POOL_ID = re.compile(r"^[\w-]+_[0-9a-zA-Z]+$")
_CONN_ID = re.compile(r"^[\w.-]{1,250}$")
_ATTRIBUTE = re.compile(r"^custom:[\w.:-]{1,20}$")
_ENV_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")


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

    def environment(self, name: str) -> Environment:
        try:
            return self.environments[name]
        except KeyError:
            known = ", ".join(sorted(self.environments))
            raise ConfigError(f"unknown environment {name!r}; {self.source} defines: {known}") from None

    def select(self, names: list[str] | None) -> list[Environment]:
        """The environments named (all when None or empty), in the order given."""
        if not names:
            return list(self.environments.values())
        return [self.environment(name) for name in dict.fromkeys(names)]


_REQUIRED = ("aws_conn_id", "user_pool_id", "db_conn_id")
_ALLOWED = {f for f in Environment.__dataclass_fields__ if f != "name"}
_TOP_LEVEL = {"environments", "snapshot_base"}


def _check_str(env: str, key: str, value: Any, pattern: re.Pattern[str], what: str) -> str:
    if not isinstance(value, str) or not pattern.match(value):
        raise ConfigError(f"environment {env!r}: key {key!r} must be {what}, got {value!r}")
    return value


def parse_environment(name: Any, raw: Any) -> Environment:
    if not isinstance(name, str) or not _ENV_NAME.match(name):
        raise ConfigError(f"environment name {name!r} must be lower-case letters, digits, '-' or '_'")
    if not isinstance(raw, dict):
        raise ConfigError(f"environment {name!r}: expected a mapping of keys, got {type(raw).__name__}")
    unknown = sorted(set(raw) - _ALLOWED)
    if unknown:
        raise ConfigError(f"environment {name!r}: unknown key {unknown[0]!r} (allowed: {', '.join(sorted(_ALLOWED))})")
    for key in _REQUIRED:
        if raw.get(key) in (None, ""):
            raise ConfigError(f"environment {name!r}: missing required key {key!r}")
    values: dict[str, Any] = {
        "aws_conn_id": _check_str(name, "aws_conn_id", raw["aws_conn_id"], _CONN_ID, "an Airflow connection id"),
        "db_conn_id": _check_str(name, "db_conn_id", raw["db_conn_id"], _CONN_ID, "an Airflow connection id"),
        "user_pool_id": _check_str(
            name, "user_pool_id", raw["user_pool_id"], _POOL_ID, "a Cognito user pool id like us-east-2_AbC123"
        ),
    }
    if "users_table" in raw:
        values["users_table"] = _check_str(
            name, "users_table", raw["users_table"], _IDENTIFIER, "a plain SQL identifier (letters, digits, _)"
        )
    if "attribute" in raw:
        values["attribute"] = _check_str(
            name, "attribute", raw["attribute"], _ATTRIBUTE, "a custom attribute 'custom:<1..20 chars>'"
        )
    if "stale_cognito_ids" in raw:
        policy = raw["stale_cognito_ids"]
        if policy not in STALE_POLICIES:
            raise ConfigError(f"environment {name!r}: key 'stale_cognito_ids' must be keep or clear, got {policy!r}")
        values["stale_cognito_ids"] = policy
    if "max_change_ratio" in raw:
        ratio = raw["max_change_ratio"]
        if isinstance(ratio, bool) or not isinstance(ratio, int | float) or not 0 <= ratio <= 1:
            raise ConfigError(f"environment {name!r}: key 'max_change_ratio' must be a number in [0, 1], got {ratio!r}")
        values["max_change_ratio"] = float(ratio)
    if "protected" in raw:
        if not isinstance(raw["protected"], bool):
            raise ConfigError(f"environment {name!r}: key 'protected' must be true or false, got {raw['protected']!r}")
        values["protected"] = raw["protected"]
    if "list_users_rps" in raw:
        rps = raw["list_users_rps"]
        if isinstance(rps, bool) or not isinstance(rps, int | float) or not 0 < rps <= LIST_USERS_QUOTA:
            raise ConfigError(
                f"environment {name!r}: key 'list_users_rps' must be a number in (0, {LIST_USERS_QUOTA:g}] "
                f"(the ListUsers quota per account and Region), got {rps!r}"
            )
        values["list_users_rps"] = float(rps)
    if "list_users_slices" in raw:
        slices = raw["list_users_slices"]
        if slices not in SLICE_COUNTS or isinstance(slices, bool):
            raise ConfigError(
                f"environment {name!r}: key 'list_users_slices' must be one of {', '.join(map(str, SLICE_COUNTS))}, "
                f"got {slices!r}"
            )
        values["list_users_slices"] = slices
    return Environment(name=name, **values)


def default_snapshot_base() -> str:
    airflow_home = os.environ.get("AIRFLOW_HOME", str(Path.home() / "airflow"))
    return f"file://{Path(airflow_home).resolve()}/cognito_sync"


def parse_settings(raw: Any, source: Path) -> Settings:
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping with the key 'environments'")
    unknown = sorted(set(raw) - _TOP_LEVEL)
    if unknown:
        raise ConfigError(f"{source}: unknown top-level key {unknown[0]!r} (allowed: {', '.join(sorted(_TOP_LEVEL))})")
    envs = raw.get("environments")
    if not isinstance(envs, dict) or not envs:
        raise ConfigError(f"{source}: key 'environments' must map at least one environment name to its settings")
    base = os.environ.get(SNAPSHOT_BASE_ENV_VAR) or raw.get("snapshot_base") or default_snapshot_base()
    if not isinstance(base, str) or "://" not in base:
        raise ConfigError(f"{source}: key 'snapshot_base' must be a URL like file:///path or s3://bucket/prefix")
    return Settings(
        environments={name: parse_environment(name, env) for name, env in envs.items()},
        snapshot_base=base.rstrip("/"),
        source=source,
    )


def config_path() -> Path:
    return Path(os.environ.get(CONFIG_ENV_VAR) or DEFAULT_CONFIG_PATH)


def load_settings(path: Path | None = None) -> Settings:
    """Read and validate the environments file (COGNITO_SYNC_CONFIG or the default)."""
    source = path or config_path()
    try:
        raw = yaml.safe_load(source.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {source} not found (set {CONFIG_ENV_VAR} to its path)") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {source} is not valid YAML: {exc}") from None
    return parse_settings(raw, source)
