"""The Airflow REST API (v2) as the e2e drives it: a JWT from the simple auth manager, runs, task
instances, HITL answers and asset events."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import httpx

TERMINAL_RUN_STATES = frozenset({"success", "failed"})
WAITING_FOR_INPUT = "awaiting_input"  # a HITL task waiting for a person (Airflow 3.3)


class AirflowApi:
    def __init__(self, base_url: str, username: str, password: str) -> None:
        self.base_url = base_url
        response = httpx.post(f"{base_url}/auth/token", json={"username": username, "password": password}, timeout=30)
        response.raise_for_status()
        token = response.json()["access_token"]
        self.client = httpx.Client(
            base_url=f"{base_url}/api/v2", headers={"Authorization": f"Bearer {token}"}, timeout=60
        )

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.client.request(method, path, **kwargs)
        if response.is_error:
            raise AssertionError(f"{method} {path}: HTTP {response.status_code}: {response.text[:2000]}")
        return response.json() if response.content else None

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params)

    def unpause(self, dag_id: str) -> None:
        self.request("PATCH", f"/dags/{dag_id}", json={"is_paused": False})

    def trigger(self, dag_id: str, conf: dict[str, Any]) -> str:
        run = self.request("POST", f"/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": conf})
        return run["dag_run_id"]

    def run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        return self.get(f"/dags/{dag_id}/dagRuns/{run_id}")

    def runs(self, dag_id: str) -> list[dict[str, Any]]:
        return self.get(f"/dags/{dag_id}/dagRuns", limit=100, order_by="run_after")["dag_runs"]

    def task_instances(self, dag_id: str, run_id: str = "~", **filters: Any) -> list[dict[str, Any]]:
        return self.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances", limit=1000, **filters)["task_instances"]

    def xcom(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> Any:
        path = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/return_value"
        return self.get(path, map_index=map_index, deserialize=True)["value"]

    def hitl_details(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        return self.get(f"/dags/{dag_id}/dagRuns/{run_id}/hitlDetails", limit=100)["hitl_details"]

    def answer(self, dag_id: str, run_id: str, task_id: str, map_index: int, option: str) -> dict[str, Any]:
        path = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/{map_index}/hitlDetails"
        return self.request("PATCH", path, json={"chosen_options": [option], "params_input": {}})

    def asset_id(self, name: str) -> int:
        assets = self.get("/assets", name_pattern=name)["assets"]
        return next(a["id"] for a in assets if a["name"] == name)

    def post_asset_event(self, name: str, extra: dict[str, Any]) -> dict[str, Any]:
        return self.request("POST", "/assets/events", json={"asset_id": self.asset_id(name), "extra": extra})

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float, *, until_waiting: bool = False) -> dict[str, Any]:
        """Poll until the run is terminal (or, with ``until_waiting``, until a task awaits a person)."""
        deadline = time.monotonic() + timeout
        while True:
            run = self.run(dag_id, run_id)
            if run["state"] in TERMINAL_RUN_STATES:
                return run
            if until_waiting and any(t["state"] == WAITING_FOR_INPUT for t in self.task_instances(dag_id, run_id)):
                return run
            if time.monotonic() > deadline:
                states = {f"{t['task_id']}[{t['map_index']}]": t["state"] for t in self.task_instances(dag_id, run_id)}
                raise AssertionError(f"{dag_id} {run_id} still {run['state']} after {timeout:.0f}s: {states}")
            time.sleep(2)

    def wait_for_new_run(self, dag_id: str, known: set[str], timeout: float, run_type: str) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            fresh = [r for r in self.runs(dag_id) if r["dag_run_id"] not in known and r["run_type"] == run_type]
            if fresh:
                return fresh[0]
            time.sleep(2)
        raise AssertionError(f"no new {run_type} run of {dag_id} after {timeout:.0f}s")


def interval(task_instance: dict[str, Any]) -> tuple[datetime, datetime]:
    return datetime.fromisoformat(task_instance["start_date"]), datetime.fromisoformat(task_instance["end_date"])
