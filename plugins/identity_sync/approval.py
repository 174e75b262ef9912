"""A person approves before a run writes: Airflow 3.3's human-in-the-loop ApprovalOperator.

Shared by both DAGs (the backfill's unmapped ``approval`` and the sync's mapped
``approve``). A request decides, from what the run has read and planned, whether to ask
(``ASK``, with a Markdown summary), to go on without asking (``PROCEED``: no guard
tripped, or approved beforehand by a param), to stop (``STOP``: a dry run, nothing to
write) or to refuse at once (``REFUSE``: a run nobody is watching must not hold the run
slot for hours waiting for a person; the task fails, which raises the failure alert).
``WriteApproval`` reads the request from XCom (``request_task_id``); a subclass may build
it itself by overriding ``approval_request`` (the sync builds it from its mapped input).
Reject, or no answer within the timeout (the default answer is Reject), skips the writes
downstream: nothing is written, and the log says who rejected or that nobody answered.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk.exceptions import AirflowSkipException
from airflow.sdk.serde import allow_class

from identity_sync.guards import RefusedError

log = logging.getLogger(__name__)

ASK, PROCEED, STOP, REFUSE = "ask", "proceed", "stop", "refuse"
DEFAULT_TIMEOUT_HOURS = 12.0


@dataclass(frozen=True)
class ApprovalRequest:
    """What the approval task does: ask a person (showing ``body``), proceed, or stop; ``note`` says why."""

    action: str  # ASK, PROCEED, STOP or REFUSE
    subject: str
    body: str  # Markdown: the counts, what trips, where the full report is
    note: str = ""
    timeout_hours: float = DEFAULT_TIMEOUT_HOURS


allow_class(ApprovalRequest)


def approval_outcome(result: dict[str, Any] | None) -> str:
    """One line for the log and the summary: approved by whom, rejected by whom, or no answer."""
    if not result:
        return "no approval asked"
    chosen = result.get("chosen_options") or []
    user = (result.get("responded_by_user") or {}).get("name")
    if chosen == [ApprovalOperator.APPROVE]:
        return f"approved by {user}" if user else f"approved: {result.get('note', 'beforehand')}"
    if user:
        return f"rejected by {user}: nothing was written"
    return "no answer before the approval timed out: nothing was written"


class WriteApproval(ApprovalOperator):
    """Waits for Approve/Reject in the Airflow UI (Required Actions) when the request asks for it."""

    def __init__(self, *, request_task_id: str | None = None, **kwargs: Any) -> None:
        # Asked once: a retry would ask (and wait) again, and a refusal is not a transient fault. A mapped
        # approval must also pass retries=0 to .partial(): the scheduler reads its retries from there.
        kwargs["retries"] = 0
        super().__init__(
            subject="Approve the writes",  # replaced by the request's subject when asking
            defaults=ApprovalOperator.REJECT,  # no answer in time means no
            response_timeout=timedelta(hours=DEFAULT_TIMEOUT_HOURS),
            **kwargs,
        )
        self.request_task_id = request_task_id

    def approval_request(self, context: Any) -> ApprovalRequest:
        """What to do; by default the request the task ``request_task_id`` returned."""
        return context["ti"].xcom_pull(task_ids=self.request_task_id)

    def execute(self, context: Any) -> Any:
        request = self.approval_request(context)
        if request.action == REFUSE:
            raise RefusedError(request.note)
        if request.action == STOP:
            raise AirflowSkipException(request.note)
        if request.action == PROCEED:
            log.info("not asking: %s", request.note)
            return {"chosen_options": [ApprovalOperator.APPROVE], "responded_by_user": None, "note": request.note}
        self.subject, self.body = request.subject, request.body
        self.response_timeout = timedelta(hours=request.timeout_hours)
        log.info("waiting up to %g h for a person to approve: %s", request.timeout_hours, request.subject)
        return super().execute(context)

    def execute_complete(self, context: Any, event: dict[str, Any]) -> Any:
        result = super().execute_complete(context=context, event=event)
        log.warning("%s", approval_outcome(dict(result)))
        return result
