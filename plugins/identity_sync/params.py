"""Trigger-form params shared by the DAGs."""

from __future__ import annotations

from airflow.sdk import Param

from identity_sync.config import Settings


def environments_param(settings: Settings, what: str) -> Param:
    """A multi-select of the configured environments; empty means all of them."""
    return Param(
        [],
        type="array",
        items={"type": "string", "enum": list(settings.environments)},
        uniqueItems=True,
        description=f"Environments to {what}; empty means all.",
    )
