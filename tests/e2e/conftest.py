"""One real deployment for the whole e2e session (`make e2e`), stopped at the end whatever happens."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devtools.local_airflow import PROJECT_ROOT


@pytest.fixture(scope="session")
def results() -> Path:
    """Where logs, screenshots and the runs' report files go ($E2E_DIR from scripts/e2e/run.sh)."""
    return Path(os.environ.get("E2E_DIR") or PROJECT_ROOT / ".e2e" / "manual")


@pytest.fixture(scope="session")
def deployment(results: Path) -> Iterator[Any]:
    from devtools.e2e.deployment import start_deployment

    running = start_deployment(results)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="session")
def api(deployment: Any) -> Any:
    from devtools.e2e.api import AirflowApi
    from devtools.e2e.deployment import ADMIN_USER

    return AirflowApi(deployment.api_url, ADMIN_USER, deployment.admin_password())


@pytest.fixture(scope="session")
def state() -> dict[str, Any]:
    """What one step leaves for the next (run ids, table checksums): the tests run in file order."""
    return {}
