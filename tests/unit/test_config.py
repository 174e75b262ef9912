"""config.load_settings: defaults, environment-variable overrides, and errors naming environment and key."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from identity_sync import config
from identity_sync.config import (
    CONFIG_ENV_VAR,
    DEFAULT_CONFIG_PATH,
    SNAPSHOT_BASE_ENV_VAR,
    ConfigError,
    Environment,
    load_settings,
)

MINIMAL = {"aws_conn_id": "aws_dev", "user_pool_id": "us-east-2_DevPool01", "db_conn_id": "users_db_dev"}


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(CONFIG_ENV_VAR, raising=False)
    monkeypatch.delenv(SNAPSHOT_BASE_ENV_VAR, raising=False)
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "airflow-home"))


def write(tmp_path: Path, content: Any, name: str = "environments.yaml") -> Path:
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else yaml.safe_dump(content))
    return path


def env_file(tmp_path: Path, **overrides: Any) -> Path:
    """One environment 'dev' with the minimal keys, plus overrides (None removes a key)."""
    env = {**MINIMAL, **overrides}
    return write(tmp_path, {"environments": {"dev": {k: v for k, v in env.items() if v is not None}}})


def test_defaults_are_applied(tmp_path: Path) -> None:
    settings = load_settings(env_file(tmp_path))

    assert settings.environments == {
        "dev": Environment(
            name="dev",
            aws_conn_id="aws_dev",
            user_pool_id="us-east-2_DevPool01",
            db_conn_id="users_db_dev",
            users_table="Users",
            attribute="custom:internal_user_id",
            stale_cognito_ids="keep",
            max_change_ratio=0.05,
            protected=False,
        )
    }
    assert settings.snapshot_base == f"file://{(tmp_path / 'airflow-home').resolve()}/cognito_sync"
    assert settings.environments["dev"].lock_name == "cognito_sync.dev.Users"


def test_every_key_is_read(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        {
            "snapshot_base": "s3://bucket/prefix/",
            "environments": {
                "prod": {
                    **MINIMAL,
                    "users_table": "AppUsers",
                    "attribute": "custom:iid",
                    "stale_cognito_ids": "clear",
                    "max_change_ratio": 1,
                    "protected": True,
                },
                "qa": MINIMAL,
            },
        },
    )

    settings = load_settings(path)

    prod = settings.environment("prod")
    assert (prod.users_table, prod.attribute, prod.stale_cognito_ids, prod.protected) == (
        "AppUsers",
        "custom:iid",
        "clear",
        True,
    )
    assert prod.max_change_ratio == 1.0
    assert isinstance(prod.max_change_ratio, float)
    assert settings.snapshot_base == "s3://bucket/prefix"
    assert settings.source == path
    assert [e.name for e in settings.select(None)] == ["prod", "qa"]
    assert [e.name for e in settings.select(["qa", "prod", "qa"])] == ["qa", "prod"]
    with pytest.raises(ConfigError, match=r"unknown environment 'uat'.*prod, qa"):
        settings.environment("uat")


def test_config_path_comes_from_the_environment_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, {"environments": {"sandbox": MINIMAL}}, name="other.yaml")
    monkeypatch.setenv(CONFIG_ENV_VAR, str(path))

    settings = load_settings()

    assert list(settings.environments) == ["sandbox"]
    assert settings.source == path


def test_snapshot_base_from_the_environment_variable_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, {"snapshot_base": "file:///from/yaml", "environments": {"dev": MINIMAL}})
    assert load_settings(path).snapshot_base == "file:///from/yaml"

    monkeypatch.setenv(SNAPSHOT_BASE_ENV_VAR, "s3://override/base/")

    assert load_settings(path).snapshot_base == "s3://override/base"


def test_snapshot_base_must_be_a_url(tmp_path: Path) -> None:
    path = write(tmp_path, {"snapshot_base": "/just/a/path", "environments": {"dev": MINIMAL}})

    with pytest.raises(ConfigError, match="'snapshot_base' must be a URL"):
        load_settings(path)


def test_committed_environments_file_loads() -> None:
    settings = load_settings(DEFAULT_CONFIG_PATH)

    assert set(settings.environments) == {"dev", "qa", "prod"}
    assert settings.environment("prod").protected is True
    assert settings.environment("dev").protected is False
    for env in settings.environments.values():
        assert env.users_table == "Users"
        assert env.stale_cognito_ids in ("keep", "clear")


def test_committed_file_is_the_default() -> None:
    assert load_settings().source == DEFAULT_CONFIG_PATH


def _error(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    return str(info.value)


@pytest.mark.parametrize(
    ("overrides", "key", "detail"),
    [
        ({"max_retries": 3}, "max_retries", "unknown key"),
        ({"aws_conn_id": None}, "aws_conn_id", "missing required key"),
        ({"user_pool_id": None}, "user_pool_id", "missing required key"),
        ({"db_conn_id": ""}, "db_conn_id", "missing required key"),
        ({"stale_cognito_ids": "delete"}, "stale_cognito_ids", "keep or clear"),
        ({"stale_cognito_ids": True}, "stale_cognito_ids", "keep or clear"),
        ({"max_change_ratio": 1.5}, "max_change_ratio", "in [0, 1]"),
        ({"max_change_ratio": -0.1}, "max_change_ratio", "in [0, 1]"),
        ({"max_change_ratio": True}, "max_change_ratio", "in [0, 1]"),
        ({"max_change_ratio": "0.1"}, "max_change_ratio", "in [0, 1]"),
        ({"users_table": "Users; DROP TABLE x"}, "users_table", "plain SQL identifier"),
        ({"users_table": "db.Users"}, "users_table", "plain SQL identifier"),
        ({"users_table": "`Users`"}, "users_table", "plain SQL identifier"),
        ({"attribute": "internal_user_id"}, "attribute", "custom attribute"),
        ({"attribute": "custom:this_name_is_too_long_x"}, "attribute", "custom attribute"),
        ({"user_pool_id": "DevPool01"}, "user_pool_id", "Cognito user pool id"),
        ({"aws_conn_id": "aws dev"}, "aws_conn_id", "connection id"),
        ({"protected": "yes"}, "protected", "true or false"),
        # exact: a trailing newline is not part of a valid value (a pattern ending in $ let it through)
        ({"users_table": "Users\n"}, "users_table", "plain SQL identifier"),
        ({"user_pool_id": "us-east-2_DevPool01\n"}, "user_pool_id", "Cognito user pool id"),
        ({"attribute": "custom:internal_user_id\n"}, "attribute", "custom attribute"),
        ({"aws_conn_id": "aws_dev\n"}, "aws_conn_id", "connection id"),
        ({"db_conn_id": "users_db_dev\n"}, "db_conn_id", "connection id"),
        ({"stale_cognito_ids": "clear\n"}, "stale_cognito_ids", "keep or clear"),
        # integers are integers: 16.0 and true are not
        ({"list_users_slices": 16.0}, "list_users_slices", "one of the integers 1, 16, 256"),
        ({"list_users_slices": True}, "list_users_slices", "one of the integers"),
        ({"list_users_slices": "16"}, "list_users_slices", "one of the integers"),
        ({"list_users_slices": 8}, "list_users_slices", "one of the integers"),
        ({"list_users_rps": True}, "list_users_rps", "(0, 30]"),
        ({"list_users_rps": 0}, "list_users_rps", "(0, 30]"),
        ({"list_users_rps": 30.5}, "list_users_rps", "(0, 30]"),
    ],
)
def test_bad_environment_key_names_environment_and_key(
    tmp_path: Path, overrides: dict[str, Any], key: str, detail: str
) -> None:
    message = _error(env_file(tmp_path, **overrides))

    assert "environment 'dev'" in message
    assert f"'{key}'" in message
    assert detail in message


@pytest.mark.parametrize("ratio", [0, 0.0, 1, 0.5])
def test_max_change_ratio_bounds_are_inclusive(tmp_path: Path, ratio: float) -> None:
    assert load_settings(env_file(tmp_path, max_change_ratio=ratio)).environment("dev").max_change_ratio == ratio


def test_unknown_top_level_key(tmp_path: Path) -> None:
    message = _error(write(tmp_path, {"environments": {"dev": MINIMAL}, "enviroments": {}}))

    assert "unknown top-level key 'enviroments'" in message


@pytest.mark.parametrize("content", ["environments: {}\n", "environments:\n", "snapshot_base: file:///x\n", "[]\n", ""])
def test_empty_or_missing_environments(tmp_path: Path, content: str) -> None:
    message = _error(write(tmp_path, content))

    assert "environments" in message or "mapping" in message


@pytest.mark.parametrize("name", ["Dev", "1dev", "dev env", "dev\n"])
def test_bad_environment_name(tmp_path: Path, name: str) -> None:
    message = _error(write(tmp_path, {"environments": {name: MINIMAL}}))

    assert re.search(rf"environment name {re.escape(repr(name))}", message)


def test_environment_must_be_a_mapping(tmp_path: Path) -> None:
    message = _error(write(tmp_path, {"environments": {"dev": ["aws_dev"]}}))

    assert "environment 'dev': expected a mapping" in message


def test_error_names_the_bad_environment_among_several(tmp_path: Path) -> None:
    path = write(tmp_path, {"environments": {"dev": MINIMAL, "qa": {**MINIMAL, "stale_cognito_ids": "purge"}}})

    message = _error(path)

    assert "environment 'qa'" in message
    assert "'stale_cognito_ids'" in message
    assert "'purge'" in message


def test_missing_file(tmp_path: Path) -> None:
    message = _error(tmp_path / "absent.yaml")

    assert "not found" in message
    assert CONFIG_ENV_VAR in message


def test_invalid_yaml(tmp_path: Path) -> None:
    message = _error(write(tmp_path, "environments: {dev: [unclosed\n"))

    assert "not valid YAML" in message


def test_every_environment_field_has_a_check() -> None:
    fields = {f for f in Environment.__dataclass_fields__ if f != "name"}
    assert set(config._KEYS) == fields


@pytest.mark.parametrize(("slices", "rps"), [(1, 0.5), (16, 30), (256, 12.5)])
def test_good_listing_settings(tmp_path: Path, slices: int, rps: float) -> None:
    env = load_settings(env_file(tmp_path, list_users_slices=slices, list_users_rps=rps)).environment("dev")
    assert (env.list_users_slices, env.list_users_rps) == (slices, rps)
    assert type(env.list_users_slices) is int and type(env.list_users_rps) is float


DEV_YAML = (
    "environments:\n  dev:\n    aws_conn_id: aws_dev\n    user_pool_id: us-east-2_DevPool01\n"
    "    db_conn_id: users_db_dev\n"
)


@pytest.mark.parametrize(
    ("repeated", "expected"),
    [
        # a second `dev:` pointing dev at prod's pool used to win silently
        (
            "  dev:\n    aws_conn_id: aws_prod\n    user_pool_id: us-east-2_ProdPool1\n    db_conn_id: users_db_dev\n",
            "line 6: key 'dev' repeats the key of line 2",
        ),
        ("    user_pool_id: us-east-2_ProdPool1\n", "line 6: key 'user_pool_id' repeats the key of line 4"),
        (
            "snapshot_base: file:///a\nsnapshot_base: file:///b\n",
            "line 7: key 'snapshot_base' repeats the key of line 6",
        ),
    ],
)
def test_a_repeated_key_is_refused_naming_it_and_both_lines(tmp_path: Path, repeated: str, expected: str) -> None:
    message = _error(write(tmp_path, DEV_YAML + repeated))

    assert expected in message


def test_an_alias_bomb_is_refused_at_once_with_a_short_message(tmp_path: Path) -> None:
    """487 bytes that expand to 9**9 strings: refused before anything is expanded."""
    lines = ['a: &a ["x","x","x","x","x","x","x","x","x"]']
    for n, name in enumerate("bcdefghi"):
        previous = "abcdefghi"[n]
        lines.append(f"{name}: &{name} [" + ",".join(f"*{previous}" for _ in range(9)) + "]")
    content = "\n".join(lines) + "\nenvironments: {dev: *i}\n"
    assert len(content) < 600

    message = _error(write(tmp_path, content))

    assert "line 1: anchors and aliases" in message
    assert len(message) < 300


def test_an_alias_of_a_whole_environment_is_refused(tmp_path: Path) -> None:
    content = (
        "environments:\n"
        "  prod: &prod {aws_conn_id: aws_prod, user_pool_id: us-east-2_ProdPool1, db_conn_id: users_db_prod}\n"
        "  dev: *prod\n"
    )
    message = _error(write(tmp_path, content))

    assert "line 2: anchors and aliases" in message


def test_snapshot_retention_days_defaults_to_30(tmp_path: Path) -> None:
    assert load_settings(env_file(tmp_path)).snapshot_retention_days == 30


def test_snapshot_retention_days_is_read(tmp_path: Path) -> None:
    path = write(tmp_path, {"snapshot_retention_days": 7, "environments": {"dev": MINIMAL}})
    assert load_settings(path).snapshot_retention_days == 7


@pytest.mark.parametrize("days", [0, -1, 1.5, 30.0, True, "30", None])
def test_snapshot_retention_days_must_be_a_positive_integer(tmp_path: Path, days: Any) -> None:
    message = _error(write(tmp_path, {"snapshot_retention_days": days, "environments": {"dev": MINIMAL}}))

    assert "'snapshot_retention_days' must be an integer of at least 1" in message


def test_snapshot_base_ending_in_a_newline_is_refused(tmp_path: Path) -> None:
    message = _error(write(tmp_path, {"snapshot_base": "file:///x\n", "environments": {"dev": MINIMAL}}))

    assert "'snapshot_base' must be a URL" in message


def test_committed_file_documents_every_key() -> None:
    text = DEFAULT_CONFIG_PATH.read_text()
    for key in [*config._KEYS, *config._TOP_LEVEL]:
        assert re.search(rf"^#\s+{key}\s", text, re.MULTILINE), key


def test_sql_uses_the_one_identifier_pattern() -> None:
    from identity_sync import sql

    assert sql._IDENTIFIER is config.SQL_IDENTIFIER
    with pytest.raises(ValueError, match="plain SQL identifier"):
        sql.MYSQL.identifier("Users\n")
