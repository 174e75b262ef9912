"""The sync's ``approve`` task: a person decides when a guard trips, in a run a person started.

Per environment (mapped), from the ``Planned`` record:

- dry run: stop (skipped), nothing to apply;
- no guard tripped, or ``allow_mass_change``: go on without asking;
- a guard tripped in a run started by hand (the UI, the REST API): wait in the UI's
  Required Actions for Approve/Reject, showing the counts, the share of CognitoIDs that
  would change, why the guard tripped and where the full plan is, for at most
  ``approval_timeout_hours`` (default 12); Approve applies exactly that plan (apply
  checks its digest, and the table's drift check still holds); Reject or no answer
  skips the apply: nothing is written, and the run record says who rejected;
- a guard tripped in a scheduled or asset-triggered run: refuse at once (the task fails
  and the failure alert fires) instead of holding the DAG's only run slot for hours.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

from airflow.providers.standard.operators.hitl import ApprovalOperator

from identity_sync.approval import ASK, PROCEED, REFUSE, STOP, ApprovalRequest, WriteApproval, approval_outcome
from identity_sync.audit import RunAudit, load_run_record, record_outcome, summary_markdown
from identity_sync.guards import RefusedError
from identity_sync.links import PlanReportLink, RunRecordLink
from identity_sync.runfiles import RunFiles, report_links_markdown
from identity_sync.sync import plan_digest
from identity_sync.sync_records import Approved, Planned, RunContext

log = logging.getLogger(__name__)


def change_share(metrics: dict[str, int]) -> str:
    """'120 of 130 rows (92.3%)': how many rows' CognitoID the plan changes."""
    rows, changes = metrics.get("table_rows", 0), metrics.get("cognito_id_changes", 0)
    return f"{changes:,} of {rows:,} rows ({changes / rows:.1%})" if rows else f"{changes:,} of 0 rows"


def approval_body(planned: Planned, run: RunContext, summary: str) -> str:
    """The Markdown a person reads before deciding; ``summary`` is the run record's (counts, trigger, reports)."""
    hours = float(run.params.get("approval_timeout_hours") or 0)
    why = "\n".join(f"- {reason}" for reason in planned.refusals)
    return "\n".join(
        [
            f"**A guard tripped for `{planned.environment}`. Nothing has been written.**",
            "",
            why,
            "",
            f"CognitoIDs that would change: **{change_share(planned.metrics)}**; rows to write: "
            f"**{planned.metrics.get('rows_to_write', 0):,}**.",
            "",
            f"**Approve** applies exactly this plan (digest `{planned.digest[:12]}`, checked again before writing; "
            "a row that changed since the snapshot is not overwritten). **Reject**, or no answer within "
            f"{hours:g} h, ends this environment's run with nothing written.",
            "",
            "Full plan (every value that would be written):",
            report_links_markdown({k: v for k, v in planned.reports.items() if k in ("plan", "issues")}),
            "",
            summary,
        ]
    )


def approval_request(planned: Planned, run: RunContext, summary: str = "") -> ApprovalRequest:
    """What ``approve`` does for this environment and run (see the module's docstring)."""
    env, timeout = planned.environment, float(run.params.get("approval_timeout_hours") or 0)
    if run.mode.dry_run:
        return ApprovalRequest(STOP, "", "", note=f"dry run: the plan for {env} is written, nothing is applied")
    if not planned.refusals:
        lifted = " (guards lifted by allow_mass_change)" if planned.tripped else ""
        return ApprovalRequest(PROCEED, "", "", note=f"no approval needed for {env}{lifted}")
    if not run.attended:
        return ApprovalRequest(
            REFUSE,
            "",
            "",
            note="; ".join(planned.refusals)
            + f". A {run.trigger.run_type} run does not wait for a person (it would hold the DAG's only run slot): "
            "nothing was written. Trigger cognito_user_sync by hand to review and approve the plan.",
        )
    subject = f"cognito_user_sync: apply the plan for {env}? ({change_share(planned.metrics)} change CognitoID)"
    return ApprovalRequest(ASK, subject, approval_body(planned, run, summary), timeout_hours=timeout)


class PlanApproval(WriteApproval):
    """``approve``, mapped over ``plan``: returns an ``Approved`` record for ``apply`` (see the module docstring)."""

    operator_extra_links = (PlanReportLink(), RunRecordLink())

    def __init__(self, *, planned: Planned, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.planned = planned

    def approval_request(self, context: Any) -> ApprovalRequest:
        run, files = RunContext.from_context(context), RunFiles(self.planned.files)
        summary = ""  # shown only when asking, which needs a tripped guard outside a dry run
        if self.planned.refusals and not run.mode.dry_run:
            summary = summary_markdown(self._record(files, "waiting for approval: nothing written yet", "waiting"))
        request = approval_request(self.planned, run, summary)
        if request.action == REFUSE:
            self._record(files, f"refused: {request.note}", "refused")
        return request

    def execute(self, context: Any) -> Any:
        return self._approved(context, super().execute(context))

    def execute_complete(self, context: Any, event: dict[str, Any]) -> Any:
        return self._approved(context, super().execute_complete(context=context, event=event))

    def _record(self, files: RunFiles, outcome: str, approval: str, by: str | None = None) -> RunAudit:
        audit = load_run_record(files)
        return record_outcome(files, outcome, replace(audit.mode, approval=approval, approved_by=by))

    def _approved(self, context: Any, result: Any) -> Approved:
        """The decision as a record; an approval is bound to the plan on disk (its digest) before anything runs."""
        planned, files = self.planned, RunFiles(self.planned.files)
        chosen = list(result.get("chosen_options") or [])
        user = (result.get("responded_by_user") or {}).get("name")
        if chosen != [ApprovalOperator.APPROVE]:  # Reject, or the default answer at the timeout
            outcome = approval_outcome(dict(result))
            self._record(files, outcome, "rejected" if user else "timed out", user)
            return Approved(
                planned.environment, planned.files, planned.digest, "rejected" if user else "timed out", user
            )
        if plan_digest(files) != planned.digest:
            raise RefusedError(
                f"environment {planned.environment!r}: the plan changed after it was shown; nothing written"
            )
        if user:
            self._record(files, f"approved by {user}; applying", "approved", user)
            return Approved(planned.environment, planned.files, planned.digest, "approved", user)
        grounds = "lifted by allow_mass_change" if planned.tripped else "not needed"
        return Approved(planned.environment, planned.files, planned.digest, grounds)
