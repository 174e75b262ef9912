"""`make e2e`: the product on a real Airflow 3.3 deployment (CeleryExecutor, two workers, PostgreSQL,
Redis, every component), driven through the REST API and, once, through Chromium.

The tests are steps of one story and run in file order, each leaving what the next needs in
``state``: the seeded world is three environments whose dev and qa tables were just restored
from prod (every CognitoID points at a prod user).
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest

from devtools.e2e import browser, world
from devtools.e2e.api import WAITING_FOR_INPUT, interval
from devtools.e2e.deployment import ADMIN_USER, DAG_IDS, WORKER_HOSTNAMES
from identity_sync import schedule

pytestmark = pytest.mark.e2e

SYNC, BACKFILL = "cognito_user_sync", "cognito_user_backfill"
RUN_TIMEOUT = 300.0
ENVIRONMENTS = ("dev", "qa", "prod")
APPROVE, REJECT = "Approve", "Reject"


def _states(deployment: Any) -> dict[str, str]:
    return {name: world.table_state(deployment.database(name)) for name in ENVIRONMENTS}


def _run_records(deployment: Any, dag_id: str, run_id: str) -> dict[str, dict[str, Any]]:
    """Each environment's run record (run.json) of one run, found by the run id it holds."""
    records = {}
    for path in (deployment.root / "runs" / dag_id).glob("*/*/run.json"):
        record = json.loads(path.read_text())
        if record.get("run_id") == run_id:
            records[record["environment"]] = record
    return records


def _mapped(api: Any, dag_id: str, run_id: str, task_id: str) -> list[dict[str, Any]]:
    return [t for t in api.task_instances(dag_id, run_id) if t["task_id"] == task_id and t["map_index"] >= 0]


def _succeeded(api: Any, dag_id: str, run_id: str) -> dict[str, Any]:
    run = api.wait_for_run(dag_id, run_id, RUN_TIMEOUT)
    states = {
        f"{t['task_id']}[{t['rendered_map_index'] or t['map_index']}]": t["state"]
        for t in api.task_instances(dag_id, run_id)
    }
    assert run["state"] == "success", f"{dag_id} {run_id} ended {run['state']}: {states}"
    return run


def _waiting_approvals(api: Any, run_id: str) -> list[dict[str, Any]]:
    run = api.wait_for_run(SYNC, run_id, RUN_TIMEOUT, until_waiting=True)
    assert run["state"] == "running", f"{run_id} ended {run['state']} without asking for approval"
    return [t for t in _mapped(api, SYNC, run_id, "approve") if t["state"] == WAITING_FOR_INPUT]


def test_every_component_is_up_and_both_dags_import(api: Any, deployment: Any, state: dict[str, Any]) -> None:
    health = api.get("/monitor/health")
    assert {k: v["status"] for k, v in health.items()} == dict.fromkeys(
        ("metadatabase", "scheduler", "triggerer", "dag_processor"), "healthy"
    )
    deployment.supervisor.wait_for(
        "both DAGs parsed", lambda: {d["dag_id"] for d in api.get("/dags")["dags"]} >= set(DAG_IDS) or None, 180, 3
    )
    assert api.get("/importErrors")["import_errors"] == []
    pools = {p["name"]: p["slots"] for p in api.get("/pools")["pools"]}
    assert pools[schedule.LIST_USERS_POOL] == 1
    state["restored"] = _states(deployment)


def test_unpausing_runs_the_latest_nightly_run_which_writes_nothing_to_restored_tables(
    api: Any, deployment: Any, state: dict[str, Any]
) -> None:
    """catchup=False: unpausing creates the latest scheduled run at once. On the restored dev and qa its
    guard trips and a scheduled run never waits for a person: nothing is written there."""
    for dag_id in DAG_IDS:
        api.unpause(dag_id)
    scheduled = api.wait_for_new_run(SYNC, set(), 90, "scheduled")
    run = api.wait_for_run(SYNC, scheduled["dag_run_id"], RUN_TIMEOUT)
    state["scheduled"] = scheduled["dag_run_id"]
    assert run["state"] == "failed", "the guard should have stopped the restored environments"
    assert _states(deployment) == state["restored"]
    assert not [t for t in _mapped(api, SYNC, run["dag_run_id"], "approve") if t["state"] == WAITING_FOR_INPUT]


def test_sync_after_restore_relinks_every_environment(api: Any, deployment: Any, state: dict[str, Any]) -> None:
    run_id = api.trigger(SYNC, {"after_restore": True, "reason": "e2e: every environment restored"})
    _succeeded(api, SYNC, run_id)
    state["first"] = run_id
    extracted = _mapped(api, SYNC, run_id, "extract")
    assert sorted(t["rendered_map_index"] for t in extracted) == sorted(ENVIRONMENTS)

    subs = {
        name: world.pool_subs(deployment.moto_url, env["user_pool_id"]) for name, env in deployment.environments.items()
    }
    links = {name: world.links_by_pool(world.cognito_ids(deployment.database(name)), subs) for name in ENVIRONMENTS}
    expected = deployment.expected_dev
    assert links["prod"] == {"prod": len(subs["prod"])}
    assert links["qa"] == {"qa": len(subs["qa"]), "prod": len(subs["prod"]) - len(subs["qa"])}  # stale rows kept
    relinked = expected["relink"] + expected["email_fallback"]
    assert links["dev"]["dev"] == relinked + expected["insert"]
    assert links["dev"]["prod"] == len(subs["prod"]) - relinked  # the others keep their row's sub (stale, conflict)
    state["relinked"] = _states(deployment)
    assert state["relinked"]["dev"] != state["restored"]["dev"]


def test_second_run_from_the_browser_with_the_forms_defaults_changes_nothing(
    api: Any, deployment: Any, results: Path, state: dict[str, Any]
) -> None:
    """Chromium signs in, opens the trigger form, presses Trigger without touching a field (= every
    environment, not dry, not after a restore) and finds the run; right after the first sync it has
    nothing to change."""
    known = {r["dag_run_id"] for r in api.runs(SYNC)}
    with browser.signed_in_page(deployment.api_url, ADMIN_USER, deployment.admin_password()) as page:
        browser.trigger_with_defaults(page, deployment.api_url, SYNC, results / "screenshots" / "trigger-form.png")
        run = api.wait_for_new_run(SYNC, known, 60, "manual")
        browser.find_run(page, deployment.api_url, SYNC, run["dag_run_id"], results / "screenshots" / "runs.png")
    _succeeded(api, SYNC, run["dag_run_id"])
    state["second"] = run["dag_run_id"]
    assert _states(deployment) == state["relinked"]
    records = _run_records(deployment, SYNC, run["dag_run_id"])
    assert sorted(records) == sorted(ENVIRONMENTS)  # the default: every environment
    assert all(not r["mode"]["dry_run"] and not r["mode"]["after_restore"] for r in records.values())
    assert {name: r["rows_written"] for name, r in records.items()} == dict.fromkeys(ENVIRONMENTS, 0)
    assert {name: r["metrics"]["rows_to_write"] for name, r in records.items()} == dict.fromkeys(ENVIRONMENTS, 0)


def test_asset_event_syncs_only_the_environment_it_names(api: Any, deployment: Any, state: dict[str, Any]) -> None:
    world.restore_from(deployment.database("prod"), deployment.database("dev"))
    assert world.table_state(deployment.database("dev")) == state["restored"]["dev"]
    known = {r["dag_run_id"] for r in api.runs(SYNC)}
    extra = {"environment": "dev", "reason": "e2e: restore of dev from prod"}
    api.post_asset_event(schedule.RESTORE_ASSET_NAME, extra)
    run = api.wait_for_new_run(SYNC, known, 120, "asset_triggered")
    _succeeded(api, SYNC, run["dag_run_id"])
    state["asset"] = run["dag_run_id"]
    assert [t["rendered_map_index"] for t in _mapped(api, SYNC, run["dag_run_id"], "extract")] == ["dev"]
    assert _states(deployment) == state["relinked"]  # dev relinked again, qa and prod untouched
    record = _run_records(deployment, SYNC, run["dag_run_id"])
    assert sorted(record) == ["dev"]
    trigger = record["dev"]["trigger"]
    assert trigger["run_type"] == "asset_triggered"
    assert len(trigger["asset_events"]) == 1
    assert trigger["asset_events"][0]["extra"].items() >= extra.items()  # Airflow adds from_rest_api
    assert record["dev"]["reason"] == extra["reason"]
    assert record["dev"]["mode"]["after_restore"] is True


def test_backfill_starts_on_qa_while_dev_waits_for_approvals(api: Any, state: dict[str, Any]) -> None:
    """qa's pool lacks most of its table's users: the backfill creates them (paced chunks) while the
    approvals below run on dev, so both DAGs also compete for the one-slot extraction pool."""
    conf = {"environments": ["qa"], "dry_run": False, "create_missing_users": True, "approved": True}
    state["backfill"] = api.trigger(BACKFILL, conf)


def test_approval_reject_writes_nothing_and_approve_applies(
    api: Any, deployment: Any, results: Path, state: dict[str, Any]
) -> None:
    """A hand-started run on a restored dev (no after_restore) trips the guard and waits for a person."""
    world.restore_from(deployment.database("prod"), deployment.database("dev"))
    rejected = api.trigger(SYNC, {"environments": ["dev"], "reason": "e2e: to be rejected"})
    waiting = _waiting_approvals(api, rejected)
    assert [t["rendered_map_index"] for t in waiting] == ["dev"]
    details = api.hitl_details(SYNC, rejected)
    assert len(details) == 1 and "dev" in details[0]["subject"]
    with browser.signed_in_page(deployment.api_url, ADMIN_USER, deployment.admin_password()) as page:
        shot = results / "screenshots" / "approval.png"
        browser.screenshot_hitl_task(page, deployment.api_url, SYNC, rejected, "approve", waiting[0]["map_index"], shot)
    api.answer(SYNC, rejected, "approve", waiting[0]["map_index"], REJECT)
    api.wait_for_run(SYNC, rejected, RUN_TIMEOUT)
    assert world.table_state(deployment.database("dev")) == state["restored"]["dev"]
    record = _run_records(deployment, SYNC, rejected)["dev"]
    assert (record["mode"]["approval"], record["rows_written"], record["applies"]) == ("rejected", 0, [])
    state["rejected"] = rejected

    approved = api.trigger(SYNC, {"environments": ["dev"], "reason": "e2e: to be approved"})
    waiting = _waiting_approvals(api, approved)
    api.answer(SYNC, approved, "approve", waiting[0]["map_index"], APPROVE)
    _succeeded(api, SYNC, approved)
    assert world.table_state(deployment.database("dev")) == state["relinked"]["dev"]
    record = _run_records(deployment, SYNC, approved)["dev"]
    assert (record["mode"]["approval"], record["mode"]["approved_by"]) == ("approved", ADMIN_USER)
    assert record["rows_written"] > 0
    state["approved"] = approved


def test_each_run_leaves_its_audit_record(api: Any, deployment: Any, state: dict[str, Any]) -> None:
    first = _run_records(deployment, SYNC, state["first"])
    assert sorted(first) == sorted(ENVIRONMENTS)
    dev = first["dev"]
    assert dev["trigger"]["run_type"] == "manual" and dev["trigger"]["user"] == ADMIN_USER
    assert dev["trigger"]["conf"] == {"after_restore": True, "reason": "e2e: every environment restored"}
    assert {"environments", "dry_run", "after_restore", "allow_mass_change", "reason"} <= set(dev["params"])
    assert dev["params"]["dry_run"] is False  # a default, recorded although not passed
    assert dev["mode"] == {
        "dry_run": False,
        "after_restore": True,
        "allow_mass_change": False,
        "approval": "not needed",
        "approved_by": None,
    }
    expected = deployment.expected_dev
    assert {k: dev["counts"][k] for k in expected} == expected
    assert dev["rows_written"] == dev["metrics"]["rows_to_write"] > 0
    assert dev["reports"], "the record names its reports"
    for report in dev["reports"].values():
        assert Path(report.removeprefix("file://")).exists(), report
    scheduled = _run_records(deployment, SYNC, state["scheduled"])
    assert scheduled["dev"]["trigger"]["run_type"] == "scheduled"
    for name in ("dev", "qa"):  # restored: the guard trips, and a scheduled run does not wait
        assert (scheduled[name]["mode"]["approval"], scheduled[name]["rows_written"]) == ("refused", 0)


def test_backfill_chunks_ran_on_both_workers(api: Any, state: dict[str, Any]) -> None:
    run_id = state["backfill"]
    _succeeded(api, BACKFILL, run_id)
    chunks = _mapped(api, BACKFILL, run_id, "write_chunk")
    assert len(chunks) > 1
    assert {t["hostname"] for t in chunks} == set(WORKER_HOSTNAMES)


def test_extractions_never_overlapped(api: Any) -> None:
    """Every task of the cognito_list_users pool, across every run of both DAGs, ran alone."""
    pooled = [t for dag_id in DAG_IDS for t in api.task_instances(dag_id, pool=schedule.LIST_USERS_POOL)]
    listed = [t for t in pooled if t["pool"] == schedule.LIST_USERS_POOL and t["start_date"] and t["end_date"]]
    assert len(listed) >= 10
    spans = sorted((interval(t), f"{t['dag_id']} {t['dag_run_id']} {t['task_id']}[{t['map_index']}]") for t in listed)
    overlaps = [(a[1], b[1]) for a, b in itertools.pairwise(spans) if b[0][0] < a[0][1]]
    assert overlaps == []
