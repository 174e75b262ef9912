"""``[core] hostname_callable`` for the e2e's Celery workers: two workers on one host, two names."""

from __future__ import annotations

import os
import socket


def from_environment() -> str:
    """$E2E_HOSTNAME when set (each worker gets its own), else the host's name."""
    return os.environ.get("E2E_HOSTNAME") or socket.getfqdn()
