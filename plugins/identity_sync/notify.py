"""Alerts through Airflow's notifier interface: a task that failed, or a run waiting for a person.

Where alerts go is chosen per deployment in Airflow's own configuration, section
``[cognito_sync]`` (or the matching ``AIRFLOW__COGNITO_SYNC__<KEY>`` variables); nothing
is configured by default, and then an alert is only logged:

- ``alert_sns_topic_arn``: publish to this SNS topic (the amazon provider's SnsNotifier),
  with the connection ``alert_aws_conn_id`` (default ``aws_default``);
- ``alert_smtp_to``: e-mail these comma-separated addresses (the smtp provider's
  SmtpNotifier), through ``alert_smtp_conn_id`` (default ``smtp_default``), from
  ``alert_smtp_from`` (default: the connection's ``from_email``).

The text is built here from the task context and sent as it is (never rendered as a Jinja
template, so an exception message cannot inject one). It names the DAG, run, task,
environment and try, and carries the exception's message, which in this project names
ids, never e-mail addresses.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from airflow.sdk import BaseNotifier

log = logging.getLogger(__name__)

SECTION = "cognito_sync"
FAILED, WAITING = "failed", "waiting for approval"
SNS_SUBJECT_LIMIT = 100  # SNS: at most 100 printable ASCII characters, no line breaks
MESSAGE_LIMIT = 4000  # of the exception text: enough for every guard's reason, far below SNS's 256 KB


@dataclass(frozen=True)
class AlertChannels:
    """Where alerts go; empty means nowhere (logged only)."""

    sns_topic_arn: str = ""
    aws_conn_id: str = "aws_default"
    smtp_to: tuple[str, ...] = ()
    smtp_conn_id: str = "smtp_default"
    smtp_from: str | None = None

    @classmethod
    def from_config(cls) -> AlertChannels:
        from airflow.sdk.configuration import conf

        def get(key: str, default: str = "") -> str:
            return (conf.get(SECTION, key, fallback=default) or default).strip()

        return cls(
            sns_topic_arn=get("alert_sns_topic_arn"),
            aws_conn_id=get("alert_aws_conn_id", cls.aws_conn_id),
            smtp_to=tuple(a.strip() for a in get("alert_smtp_to").split(",") if a.strip()),
            smtp_conn_id=get("alert_smtp_conn_id", cls.smtp_conn_id),
            smtp_from=get("alert_smtp_from") or None,
        )

    @property
    def configured(self) -> bool:
        return bool(self.sns_topic_arn or self.smtp_to)


@dataclass(frozen=True)
class Alert:
    subject: str
    message: str


def _where(context: Mapping[str, Any]) -> tuple[str, str, str]:
    """(dag id, run id, task label) of the context; the label carries the environment of a mapped task."""
    ti = context.get("ti") or context.get("task_instance")
    dag_id = getattr(ti, "dag_id", None) or getattr(context.get("dag"), "dag_id", "?")
    run_id = context.get("run_id") or getattr(ti, "run_id", "?")
    task_id = getattr(ti, "task_id", "?")
    label = getattr(ti, "rendered_map_index", None) or (
        str(ti.map_index) if getattr(ti, "map_index", -1) not in (-1, None) else ""
    )
    return dag_id, run_id, f"{task_id}[{label}]" if label else task_id


def _one_line(text: str, limit: int) -> str:
    flat = " ".join(text.split()).encode("ascii", "replace").decode("ascii")
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def alert_for(kind: str, context: Mapping[str, Any]) -> Alert:
    """The subject and text of one alert (``kind`` is FAILED or WAITING)."""
    dag_id, run_id, task = _where(context)
    ti = context.get("ti") or context.get("task_instance")
    lines = [f"DAG {dag_id}, run {run_id}, task {task}, try {getattr(ti, 'try_number', '?')}: {kind}."]
    if kind == WAITING:
        operator = context.get("task")
        lines += [
            "",
            str(getattr(operator, "subject", "") or ""),
            "",
            str(getattr(operator, "body", "") or ""),
            "",
            "Answer it in the Airflow UI: the run's Required Actions (or the HITL REST API, /api/v2/hitlDetails).",
        ]
    else:
        error = context.get("exception")
        text = f"{type(error).__name__}: {error}" if error is not None else "no exception recorded"
        lines += ["", text[:MESSAGE_LIMIT]]
    if getattr(ti, "log_url", None):
        lines += ["", f"Log: {ti.log_url}"]
    return Alert(subject=_one_line(f"{dag_id}: {task} {kind} ({run_id})", SNS_SUBJECT_LIMIT), message="\n".join(lines))


def channel_notifiers(channels: AlertChannels, alert: Alert) -> list[BaseNotifier]:
    """The provider notifiers that deliver ``alert`` on every configured channel."""
    notifiers: list[BaseNotifier] = []
    if channels.sns_topic_arn:
        from airflow.providers.amazon.aws.notifications.sns import SnsNotifier

        notifiers.append(
            SnsNotifier(
                aws_conn_id=channels.aws_conn_id,
                target_arn=channels.sns_topic_arn,
                subject=alert.subject,
                message=alert.message,
            )
        )
    if channels.smtp_to:
        from airflow.providers.smtp.notifications.smtp import SmtpNotifier

        notifiers.append(
            SmtpNotifier(
                to=list(channels.smtp_to),
                from_email=channels.smtp_from,
                smtp_conn_id=channels.smtp_conn_id,
                subject=alert.subject,
                html_content=f"<pre>{html.escape(alert.message)}</pre>",
            )
        )
    return notifiers


class SyncAlert(BaseNotifier):
    """Sends one alert on every channel configured for the deployment (see the module's docstring).

    Use it as a task's ``on_failure_callback`` (``SyncAlert(FAILED)``) or in a
    human-in-the-loop operator's ``notifiers`` (``SyncAlert(WAITING)``). The channels are
    read when the alert fires, so a configuration change needs no DAG re-parse.
    """

    def __init__(self, kind: str) -> None:
        super().__init__()
        if kind not in (FAILED, WAITING):
            raise ValueError(f"alert kind must be {FAILED!r} or {WAITING!r}, got {kind!r}")
        self.kind = kind

    def notify(self, context: Any) -> None:
        alert = alert_for(self.kind, context)
        channels = AlertChannels.from_config()
        if not channels.configured:
            log.warning("alert (no channel configured in [%s]): %s", SECTION, alert.subject)
            return
        for notifier in channel_notifiers(channels, alert):
            try:
                notifier.notify(context)  # sent as built: no template rendering of the text
            except Exception:  # an alert that cannot be sent must not stop an approval or hide a failure
                log.exception("alert NOT sent through %s: %s", type(notifier).__name__, alert.subject)
            else:
                log.info("alert sent through %s: %s", type(notifier).__name__, alert.subject)
