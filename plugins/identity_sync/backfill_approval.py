"""The backfill's approval: the shared WriteApproval, with its outcome kept where the report finds it.

A Reject skips the writes by raising inside the operator, so its return value never
reaches XCom; the outcome line (approved by whom, rejected by whom, no answer in time)
is pushed under ``OUTCOME_KEY`` first, on every path, for the ``report`` task.
"""

from __future__ import annotations

from typing import Any

from identity_sync.approval import PROCEED, WriteApproval, approval_outcome

OUTCOME_KEY = "outcome"


class BackfillApproval(WriteApproval):
    """Approve/Reject before the backfill's first write; the outcome goes to XCom key ``outcome``."""

    def execute(self, context: Any) -> Any:
        request = self.approval_request(context)
        if request.action == PROCEED:
            context["ti"].xcom_push(key=OUTCOME_KEY, value=request.note)
        return super().execute(context)

    def execute_complete(self, context: Any, event: dict[str, Any]) -> Any:
        answer = {k: event.get(k) for k in ("chosen_options", "responded_by_user")} if "error" not in event else {}
        context["ti"].xcom_push(key=OUTCOME_KEY, value=approval_outcome(answer or {"chosen_options": ["Reject"]}))
        return super().execute_complete(context=context, event=event)


def recorded_outcome(ti: Any, *, dry_run: bool) -> str:
    """What the approval decided, for the report: a dry run asks nobody."""
    if dry_run:
        return "dry run: nothing written"
    return ti.xcom_pull(task_ids="approval", key=OUTCOME_KEY) or "no approval given: nothing was written"
