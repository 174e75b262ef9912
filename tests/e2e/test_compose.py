"""docker-compose.yaml runs the settings `make e2e` proves (no Docker engine here: the file is parsed and compared)."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from devtools.e2e.deployment import deployment_settings
from devtools.local_airflow import PROJECT_ROOT, connection_variable
from identity_sync import schedule

pytestmark = pytest.mark.e2e

AIRFLOW_SERVICES = ("airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer")
# Values that differ by nature between one machine and containers: addresses and secrets.
PER_HOST = {
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
    "AIRFLOW__CELERY__BROKER_URL",
    "AIRFLOW__CELERY__RESULT_BACKEND",
    "AIRFLOW__CORE__EXECUTION_API_SERVER_URL",
    "AIRFLOW__CORE__FERNET_KEY",
    "AIRFLOW__API_AUTH__JWT_SECRET",
    "AIRFLOW__API__SECRET_KEY",
}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((PROJECT_ROOT / "docker-compose.yaml").read_text())


@pytest.fixture(scope="module")
def e2e_settings() -> dict[str, str]:
    secret = dict.fromkeys(("fernet_key", "jwt_secret", "api_secret_key"), "x")
    return deployment_settings(
        metadata_url="postgresql+psycopg2://u@h/db", broker_url="redis://h:6379/0", api_url="http://h", secret=secret
    )


def test_the_official_topology(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {*AIRFLOW_SERVICES, "airflow-worker", "airflow-init", "postgres", "redis", "mysql", "moto"} <= set(services)
    assert services["mysql"]["image"] == "mysql:8.4"
    commands = {name: services[name]["command"] for name in AIRFLOW_SERVICES}
    assert commands == {
        "airflow-apiserver": "api-server",
        "airflow-scheduler": "scheduler",
        "airflow-dag-processor": "dag-processor",
        "airflow-triggerer": "triggerer",
    }
    assert services["airflow-worker"]["command"] == "celery worker"
    assert "container_name" not in services["airflow-worker"], "a scalable worker has no fixed name"


def test_every_airflow_service_shares_the_e2e_settings(compose: dict[str, Any], e2e_settings: dict[str, str]) -> None:
    for name in (*AIRFLOW_SERVICES, "airflow-worker", "airflow-init"):
        env = compose["services"][name]["environment"]
        assert set(e2e_settings) <= set(env), f"{name} lacks {sorted(set(e2e_settings) - set(env))}"
        same = {k: v for k, v in e2e_settings.items() if k not in PER_HOST}
        assert {k: env[k] for k in same} == same, name
        metadata = env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
        assert metadata.startswith("postgresql+psycopg2://")
        assert env["AIRFLOW__CELERY__RESULT_BACKEND"] == f"db+{metadata}"
        assert env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://")
        assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-apiserver:8080/execution/"


def test_init_creates_the_one_slot_pool(compose: dict[str, Any]) -> None:
    command = " ".join(compose["services"]["airflow-init"]["command"])
    assert f"airflow pools set {schedule.LIST_USERS_POOL} 1 " in command


def test_every_connection_the_seeded_config_names_is_given(compose: dict[str, Any]) -> None:
    env = compose["x-airflow-common"]["environment"]
    for name in ("dev", "qa", "prod"):  # devtools.demo.seed's environments, which compose_seed writes
        assert {connection_variable(f"aws_{name}"), connection_variable(f"users_db_{name}")} <= set(env)
