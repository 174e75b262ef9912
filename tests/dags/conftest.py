"""What every dag.test() run needs: a migrated metadata database, moto, and the strict layer in front."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devtools.emulator import start_moto_server
from devtools.local_airflow import migrate_metadata
from devtools.strict_cognito import StrictCognitoProxy


@pytest.fixture(scope="module")
def cognito() -> Iterator[tuple[str, StrictCognitoProxy]]:
    """moto's server (its URL, for setting up pools) and the stricter layer the DAGs' calls go through."""
    migrate_metadata({})
    server, moto_url = start_moto_server()
    proxy = StrictCognitoProxy(moto_url)
    proxy.start()
    yield moto_url, proxy
    proxy.stop()
    server.stop()
