"""What every dag.test() run needs: a migrated metadata database, moto, the strict layer in front, and a person.

``dag.test()`` leaves a human-in-the-loop task parked in ``awaiting_input`` until a
response is recorded from outside. ``Approver`` is that outside: a thread that records
answers through the api-server's own handler for ``PATCH /api/v2/hitlDetails/...``
(the function behind the route, on the same metadata database), as a signed-in user.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from devtools.emulator import start_moto_server
from devtools.local_airflow import migrate_metadata
from devtools.strict_cognito import StrictCognitoProxy


@pytest.fixture(scope="module")
def cognito() -> Iterator[tuple[str, StrictCognitoProxy]]:
    """moto's server (its URL, for setting up pools) and the stricter layer the DAGs' calls go through."""
    migrate_metadata({})
    server, moto_url = start_moto_server()
    proxy = StrictCognitoProxy(moto_url)
    proxy.start()
    yield moto_url, proxy
    proxy.stop()
    server.stop()


SETTLE_SECONDS = 2.0  # how long a task waits in awaiting_input before the approver looks at it
MAX_FAILURES = 50  # consecutive failed polls before the approver gives up (and stop() raises the last)


@dataclass
class Asked:
    """One approval request as the person saw it."""

    run_id: str
    task_id: str
    map_index: int
    environment: str | None
    subject: str
    body: str
    options: list[str]


class Approver(threading.Thread):
    """Answers every approval of ``dag_id`` with ``choice`` as ``user`` (``choice=None``: looks, never answers).

    With ``sweep_timeouts`` it also runs the scheduler's own sweep of approvals past their
    response timeout, which ``dag.test()`` (having no scheduler) never runs.
    """

    def __init__(self, dag_id: str, choice: str | None, user: str = "alice", *, sweep_timeouts: bool = False) -> None:
        super().__init__(daemon=True)
        self.dag_id, self.choice, self.user, self.sweep_timeouts = dag_id, choice, user, sweep_timeouts
        self.asked: list[Asked] = []
        self.error: Exception | None = None
        self.since = datetime.now(UTC)  # only runs started from now on (not one a killed test left waiting)
        self._first_seen: dict[tuple[str, str, int], float] = {}
        self._answered: set[tuple[str, str, int]] = set()
        self._stop_event = threading.Event()

    def run(self) -> None:
        failures = 0
        while not self._stop_event.is_set():
            try:
                self._answer_waiting()
                if self.sweep_timeouts:
                    self._sweep_timeouts()
                failures = 0
            except Exception as exc:  # e.g. SQLite busy while dag.test() writes: try again, give up after 50
                self.error, failures = exc, failures + 1
                if failures >= MAX_FAILURES:
                    return
            time.sleep(0.3)

    def _answer_waiting(self) -> None:
        from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
        from airflow.api_fastapi.core_api.datamodels.hitl import UpdateHITLDetailPayload
        from airflow.api_fastapi.core_api.routes.public.hitl import update_hitl_detail
        from airflow.models.taskinstance import TaskInstance
        from airflow.utils.session import create_session
        from airflow.utils.state import TaskInstanceState
        from sqlalchemy import select
        from sqlalchemy.orm import joinedload

        with create_session() as session:
            waiting = session.scalars(
                select(TaskInstance)
                .where(
                    TaskInstance.dag_id == self.dag_id,
                    TaskInstance.state == TaskInstanceState.AWAITING_INPUT,
                    TaskInstance.start_date >= self.since,
                )
                .options(joinedload(TaskInstance.hitl_detail))
            ).all()
            for ti in waiting:
                key = (ti.run_id, ti.task_id, ti.map_index)
                detail = ti.hitl_detail
                if detail is None or key in self._answered:
                    continue
                if key not in self._first_seen:
                    self._first_seen[key] = time.monotonic()
                    self.asked.append(
                        Asked(*key, ti.rendered_map_index, detail.subject, detail.body or "", list(detail.options))
                    )
                # A person answers after the task has parked, not within a poll of it: an answer racing the
                # park is overwritten by dag.test()'s in-process runner (a harness artefact, not a product path).
                if self.choice is None or time.monotonic() - self._first_seen[key] < SETTLE_SECONDS:
                    continue
                update_hitl_detail(
                    dag_id=ti.dag_id,
                    dag_run_id=ti.run_id,
                    task_id=ti.task_id,
                    update_hitl_detail_payload=UpdateHITLDetailPayload(chosen_options=[self.choice]),
                    user=SimpleAuthManagerUser(username=self.user, role="admin"),
                    session=session,
                    map_index=ti.map_index,
                )
                self._answered.add(key)

    def _sweep_timeouts(self) -> None:
        from airflow.jobs.job import Job
        from airflow.jobs.scheduler_job_runner import SchedulerJobRunner

        if not hasattr(self, "_scheduler"):
            self._scheduler = SchedulerJobRunner(job=Job())
        self._scheduler.check_awaiting_input_timeouts()

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=10)
        if self.error is not None and not self.asked:
            raise self.error


@pytest.fixture
def approver() -> Iterator[type[Approver]]:
    """Start an ``Approver(dag_id, choice)`` with ``.start()``; every one started is stopped after the test."""
    started: list[Approver] = []

    class Started(Approver):
        def start(self) -> None:
            started.append(self)
            super().start()

    yield Started
    for one in started:
        one.stop()
