"""Which environments a run covers, by hand or from restore events."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from identity_sync.config import parse_settings
from identity_sync.guards import RefusedError
from identity_sync.sync import select_environments

SETTINGS = parse_settings(
    {
        "snapshot_base": "file:///tmp/x",
        "environments": {
            name: {"aws_conn_id": f"aws_{name}", "user_pool_id": "us-east-2_Abc", "db_conn_id": f"db_{name}"}
            for name in ("dev", "qa", "prod")
        },
    },
    Path("test.yaml"),
)


def event(**extra: str) -> SimpleNamespace:
    return SimpleNamespace(extra=extra)


def test_no_names_means_every_environment() -> None:
    assert select_environments(SETTINGS, []) == ["dev", "qa", "prod"]


def test_requested_names_in_order_without_duplicates() -> None:
    assert select_environments(SETTINGS, ["qa", "dev", "qa"]) == ["qa", "dev"]


def test_restore_events_name_their_environments() -> None:
    assert select_environments(SETTINGS, [], [event(environment="qa")]) == ["qa"]


def test_an_event_without_environment_is_refused_rather_than_restoring_everything() -> None:
    with pytest.raises(RefusedError, match="environment"):
        select_environments(SETTINGS, [], [event(source="nightly-restore")])


def test_an_unknown_environment_is_refused_naming_it() -> None:
    with pytest.raises(RefusedError, match="'staging'"):
        select_environments(SETTINGS, ["staging"])
