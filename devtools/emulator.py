"""The local AWS side: moto's HTTP server in-process, and boto3 clients that can only reach it.

Plain functions and context managers (not pytest fixtures) so conftest files
can wrap them with whatever scope they need.

Note: moto keeps its backends in process-global state, so every
``ThreadedMotoServer`` in one process (and any ``mock_aws``) shares the same
data.  Use unique resource names to isolate tests.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3
from botocore.config import Config
from moto.server import ThreadedMotoServer

DUMMY_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
DEFAULT_REGION = "us-east-2"


def start_moto_server(host: str = "127.0.0.1") -> tuple[ThreadedMotoServer, str]:
    """Start moto on a free port of ``host`` and return the server and its URL."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one log line per emulated request is noise
    server = ThreadedMotoServer(ip_address=host, port=0, verbose=False)
    server.start()
    bound_host, port = server.get_host_and_port()
    return server, f"http://{bound_host}:{port}"


@contextmanager
def moto_server(host: str = "127.0.0.1") -> Iterator[str]:
    """Run a moto server for the duration of the block, yielding its URL."""
    server, url = start_moto_server(host)
    try:
        yield url
    finally:
        server.stop()


def aws_client(
    service: str,
    endpoint_url: str,
    region: str = DEFAULT_REGION,
    config: Config | None = None,
) -> Any:
    """boto3 client that can only talk to ``endpoint_url``, with dummy credentials."""
    if not endpoint_url:
        raise ValueError("endpoint_url is required so tests never reach real AWS")
    return boto3.client(
        service,
        region_name=region,
        endpoint_url=endpoint_url,
        config=config,
        **DUMMY_CREDENTIALS,
    )
