"""Trigger-form params shared by the DAGs, shaped for the form Airflow 3.3 renders.

Two rules of that form decide the shapes below (read from its code and checked by hand):
a param is rendered *required* unless its JSON-schema ``type`` admits ``null``, and a
required field whose value is ``""`` or ``null`` disables the Trigger button. An array is
rendered as a multi-select only when the schema has a top-level ``examples`` (or
``enum``) list; ``items.enum`` alone gives a free-text box, one value per line.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from airflow.sdk import Param

from identity_sync.config import Settings


def environments_param(settings: Settings, what: str) -> Param:
    """A multi-select of the configured environments; empty (or cleared, which the form sends as null) means all."""
    names = list(settings.environments)
    return Param(
        [],
        type=["array", "null"],
        items={"type": "string", "enum": names},
        examples=names,
        uniqueItems=True,
        title="Environments",
        description=f"Environments to {what}. Leave empty for all of them: {', '.join(names)}.",
    )


def text_param(description: str, *, title: str, max_length: int = 500, default: str = "") -> Param:
    """Free text that never blocks Trigger: empty, or cleared to null, is a valid value."""
    return Param(default, type=["string", "null"], maxLength=max_length, title=title, description=description)


def flag_param(default: bool, description: str, *, title: str) -> Param:
    """An on/off switch (a boolean is never empty, so the form never blocks on it)."""
    return Param(default, type="boolean", title=title, description=description)


def number_param(
    default: float, description: str, *, title: str, minimum: float | None = None, maximum: float | None = None
) -> Param:
    """A number above ``minimum`` (exclusive: a rate or a timeout of 0 makes no sense), up to ``maximum``."""
    bounds: dict[str, Any] = {}
    if minimum is not None:
        bounds["exclusiveMinimum"] = minimum
    if maximum is not None:
        bounds["maximum"] = maximum
    return Param(default, type="number", title=title, description=description, **bounds)


def selected_names(value: Iterable[str] | None) -> list[str]:
    """The environments param's value as a list (null, from a cleared multi-select, is the empty list: all)."""
    return list(value or [])
