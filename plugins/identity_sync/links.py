"""Where the sync's tasks point a person in the UI: extra links to the run's reports and records.

Airflow 3 computes an operator's extra links in the worker when the task finishes, stores
each under its XCom key, and the UI reads them from there (no plugin needed). A
``file://`` location is shown as it is (it opens on the worker's machine only); an
``s3://`` one becomes the AWS console's page (``runfiles.report_url``).
"""

from __future__ import annotations

from typing import Any

from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import BaseOperatorLink

from identity_sync.runfiles import RunFiles, report_url
from identity_sync.sync_records import Planned


def _planned_of(operator: Any) -> Planned | None:
    planned = getattr(operator, "planned", None)
    return planned if isinstance(planned, Planned) else None


class PlanReportLink(BaseOperatorLink):
    """The environment's full plan report (``plan.csv.gz``), next to the approval."""

    name = "Plan report"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        planned = _planned_of(operator)
        return report_url(planned.reports["plan"]) if planned else ""


class RunRecordLink(BaseOperatorLink):
    """The environment's run record (``summary.md``: trigger, mode, counts, outcome, reports)."""

    name = "Run record"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        planned = _planned_of(operator)
        return report_url(planned.reports["summary"]) if planned else ""


class RunFolderLink(BaseOperatorLink):
    """The run's folder: every environment's records and reports."""

    name = "Run folder"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        from identity_sync.config import load_settings

        files = RunFiles.for_run(load_settings().snapshot_base, ti_key.dag_id, ti_key.run_id, "-")
        return report_url(files.run_folder + "/")


class RunReport(PythonOperator):
    """The run's last task: a PythonOperator whose page links to the run's folder."""

    operator_extra_links = (RunFolderLink(),)
