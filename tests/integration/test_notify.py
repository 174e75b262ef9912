"""Alerts go through the amazon provider's SnsNotifier to a real (moto) SNS topic, or nowhere when unconfigured.

The topic has an SQS queue subscribed (raw delivery), so the test reads exactly what a
subscriber receives.
"""

from __future__ import annotations

import email
import json
import socketserver
import threading
import uuid
from types import SimpleNamespace

import pytest

from devtools.emulator import aws_client
from devtools.local_airflow import DEFAULT_REGION, connection_variable
from identity_sync.guards import RefusedError
from identity_sync.notify import FAILED, SNS_SUBJECT_LIMIT, WAITING, AlertChannels, SyncAlert, alert_for


def task_context(**extra) -> dict:
    ti = SimpleNamespace(
        dag_id="cognito_user_sync",
        run_id="scheduled__2026-11-21T02:30:00+00:00",
        task_id="approve",
        map_index=1,
        rendered_map_index="qa",
        try_number=1,
        log_url="http://airflow.example/dags/cognito_user_sync/runs/x/tasks/approve?map_index=1",
    )
    return {"ti": ti, "run_id": ti.run_id, **extra}


@pytest.fixture
def sns_queue(moto_url: str, monkeypatch: pytest.MonkeyPatch):
    """A topic configured as the alert channel, and the SQS queue subscribed to it."""
    sns, sqs = aws_client("sns", moto_url), aws_client("sqs", moto_url)
    topic = sns.create_topic(Name=f"sync-alerts-{uuid.uuid4().hex[:8]}")["TopicArn"]
    queue_url = sqs.create_queue(QueueName=f"alerts-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn, Attributes={"RawMessageDelivery": "false"})
    conn = {
        "conn_type": "aws",
        "login": "testing",
        "password": "testing",
        "extra": {"region_name": DEFAULT_REGION, "endpoint_url": moto_url},
    }
    monkeypatch.setenv(connection_variable("alerts_aws"), json.dumps(conn))
    monkeypatch.setenv("AIRFLOW__COGNITO_SYNC__ALERT_SNS_TOPIC_ARN", topic)
    monkeypatch.setenv("AIRFLOW__COGNITO_SYNC__ALERT_AWS_CONN_ID", "alerts_aws")

    def received() -> list[dict]:
        messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        return [json.loads(m["Body"]) for m in messages.get("Messages", [])]

    return received


def test_a_failure_reaches_the_topic_with_the_guard_reason_and_the_environment(sns_queue) -> None:
    refusal = RefusedError("environment 'qa': 120 of 130 rows (92.3%) would change CognitoID. Nothing was written.")

    SyncAlert(FAILED)(task_context(exception=refusal))

    (message,) = sns_queue()
    assert message["Subject"] == "cognito_user_sync: approve[qa] failed (scheduled__2026-11-21T02:30:00+00:00)"
    assert "RefusedError: environment 'qa': 120 of 130 rows (92.3%) would change CognitoID" in message["Message"]
    assert "try 1" in message["Message"] and "Log: http://airflow.example/" in message["Message"]


def test_a_waiting_approval_carries_its_body_and_where_to_answer(sns_queue) -> None:
    operator = SimpleNamespace(subject="Approve the plan for qa?", body="| relink | 120 |")

    SyncAlert(WAITING)(task_context(task=operator))

    (message,) = sns_queue()
    assert "waiting for approval" in message["Subject"]
    assert "Approve the plan for qa?" in message["Message"] and "| relink | 120 |" in message["Message"]
    assert "/api/v2/hitlDetails" in message["Message"]


def test_jinja_in_an_exception_is_sent_as_text_not_rendered(sns_queue) -> None:
    SyncAlert(FAILED)(task_context(exception=ValueError("bad value {{ 7 * 7 }}")))

    (message,) = sns_queue()
    assert "bad value {{ 7 * 7 }}" in message["Message"]


def test_without_configuration_nothing_is_sent(moto_url: str, monkeypatch: pytest.MonkeyPatch, caplog) -> None:
    monkeypatch.delenv("AIRFLOW__COGNITO_SYNC__ALERT_SNS_TOPIC_ARN", raising=False)
    monkeypatch.delenv("AIRFLOW__COGNITO_SYNC__ALERT_SMTP_TO", raising=False)
    assert not AlertChannels.from_config().configured

    SyncAlert(FAILED)(task_context(exception=RuntimeError("x")))

    assert "no channel configured" in caplog.text


def test_an_unreachable_channel_is_logged_and_does_not_raise(sns_queue, monkeypatch, caplog) -> None:
    monkeypatch.setenv("AIRFLOW__COGNITO_SYNC__ALERT_SNS_TOPIC_ARN", "arn:aws:sns:us-east-2:123456789012:missing")

    SyncAlert(WAITING)(task_context(task=SimpleNamespace(subject="s", body="b")))

    assert "alert NOT sent through SnsNotifier" in caplog.text
    assert sns_queue() == []


def test_the_subject_fits_sns_limits() -> None:
    context = task_context(exception=RuntimeError("x"))
    context["ti"].rendered_map_index = "é" * 300
    subject = alert_for(FAILED, context).subject
    assert len(subject) <= SNS_SUBJECT_LIMIT and subject.isascii() and "\n" not in subject


class _SmtpSink(socketserver.StreamRequestHandler):
    """Just enough SMTP (RFC 5321, no TLS, no auth) to receive one message and keep it."""

    def handle(self) -> None:
        self.wfile.write(b"220 sink\r\n")
        while line := self.rfile.readline():
            verb = line.decode().strip().upper()
            if verb.startswith("DATA"):
                self.wfile.write(b"354 go on\r\n")
                body = b"".join(iter(lambda: self.rfile.readline(), b".\r\n"))
                self.server.messages.append(email.message_from_bytes(body))  # type: ignore[attr-defined]
                self.wfile.write(b"250 kept\r\n")
            elif verb.startswith("QUIT"):
                self.wfile.write(b"221 bye\r\n")
                return
            else:
                self.wfile.write(b"250 ok\r\n")


def test_a_failure_reaches_the_smtp_recipients_as_escaped_html(monkeypatch: pytest.MonkeyPatch) -> None:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _SmtpSink)
    server.messages = []  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    conn = {
        "conn_type": "smtp",
        "host": "127.0.0.1",
        "port": server.server_address[1],
        "extra": {"disable_ssl": True, "disable_tls": True, "from_email": "airflow@example.org"},
    }
    monkeypatch.setenv(connection_variable("alerts_smtp"), json.dumps(conn))
    monkeypatch.delenv("AIRFLOW__COGNITO_SYNC__ALERT_SNS_TOPIC_ARN", raising=False)
    monkeypatch.setenv("AIRFLOW__COGNITO_SYNC__ALERT_SMTP_TO", "oncall@example.org, identity@example.org")
    monkeypatch.setenv("AIRFLOW__COGNITO_SYNC__ALERT_SMTP_CONN_ID", "alerts_smtp")
    try:
        SyncAlert(FAILED)(task_context(exception=RefusedError("environment 'qa': <b>refused</b>")))
    finally:
        server.shutdown()

    (message,) = server.messages  # type: ignore[attr-defined]
    assert message["To"] == "oncall@example.org, identity@example.org"
    assert message["Subject"] == "cognito_user_sync: approve[qa] failed (scheduled__2026-11-21T02:30:00+00:00)"
    html = next(part for part in message.walk() if part.get_content_type() == "text/html").get_payload(decode=True)
    assert b"RefusedError: environment &#x27;qa&#x27;: &lt;b&gt;refused&lt;/b&gt;" in html
