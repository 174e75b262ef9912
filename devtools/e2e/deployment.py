"""Airflow 3.3 as a team deploys it, on this machine: CeleryExecutor with two workers, PostgreSQL
metadata, Redis broker, api-server, scheduler, dag-processor, triggerer; moto behind the strict
Cognito layer; MariaDB databases seeded with the demo's world ("restored" from prod).

``start_deployment`` brings it all up and waits for every health signal; ``Deployment.stop``
takes it all down again (and drops the databases it made).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import socket
import subprocess
import sys
import time
import uuid
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml
from cryptography.fernet import Fernet

from devtools.compose_seed import mysql_restorer
from devtools.demo import seed
from devtools.e2e import cleanup
from devtools.e2e.processes import Process, Supervisor, run
from devtools.e2e.world import MARIADB
from devtools.local_airflow import airflow_environment, aws_connection, connection_variable
from identity_sync import schedule
from identity_sync.ratelimit import QUOTAS

PYTHON = sys.executable
DAG_IDS = ("cognito_user_sync", "cognito_user_backfill")
WORKER_HOSTNAMES = ("e2e-worker-1", "e2e-worker-2")
WORKER_CONCURRENCY = 2  # small, so that four backfill chunks need both workers
ADMIN_USER = "admin"
DATABASE_PREFIX = "e2e_"
SEEDED = ("dev", "qa", "prod")  # the environments devtools.demo.seed makes
REDIS_URL = "redis://127.0.0.1:6379/0"
REDIS_EPHEMERAL = ["--save", "", "--appendonly", "no"]
START_TIMEOUT = 240.0
PROD_USERS = 500  # the demo's world at a fifth of its size: every case is still there, seeding takes seconds
PASSWORDS_FILE = "simple_auth_manager_passwords.json.generated"
SIMPLE_AUTH_MANAGER = "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
HOSTNAME_CALLABLE = "devtools.e2e.hostname.from_environment"


def deployment_settings(*, metadata_url: str, broker_url: str, api_url: str, secret: dict[str, str]) -> dict[str, str]:
    """The settings every component of a distributed deployment shares (docker-compose.yaml sets the same keys).

    ``metadata_url`` is a ``postgresql+psycopg2://`` URL; Celery's result backend is the same database
    through SQLAlchemy (``db+``); one JWT secret and one execution API URL for every component.
    """
    return {
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__CORE__AUTH_MANAGER": SIMPLE_AUTH_MANAGER,
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN_USER}:admin",
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
        "AIRFLOW__CORE__FERNET_KEY": secret["fernet_key"],
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{api_url}/execution/",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata_url,
        "AIRFLOW__CELERY__BROKER_URL": broker_url,
        "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{metadata_url}",
        "AIRFLOW__API_AUTH__JWT_SECRET": secret["jwt_secret"],
        "AIRFLOW__API__SECRET_KEY": secret["api_secret_key"],
        "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "True",
    }


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Deployment:
    """What the tests need to drive and check the running deployment."""

    root: Path
    home: Path
    api_url: str
    moto_url: str
    strict_url: str
    env: dict[str, str]
    environments: dict[str, dict[str, Any]]
    expected_dev: dict[str, int]
    queue: str
    supervisor: Supervisor
    postgres_database: str

    def database(self, environment: str) -> str:
        return f"{DATABASE_PREFIX}{environment}"

    def admin_password(self) -> str:
        return json.loads((self.home / PASSWORDS_FILE).read_text())[ADMIN_USER]

    def stop(self) -> None:
        """Stop every process, drop the databases made for the run, stop services this run started."""
        self.supervisor.stop_all()
        cleanup.undo(self.root)


def ensure_services(log: Path) -> list[list[str]]:
    """Start PostgreSQL and Redis when they are down; returns the commands that stop what was started."""
    stops = []
    if subprocess.run(["pg_isready", "-q", "-h", "127.0.0.1", "-p", "5432"], check=False).returncode != 0:
        version = sorted(p.name for p in Path("/etc/postgresql").iterdir())[-1]
        run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start"], log=log)
        stops.append(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "stop"])
    if subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", "6379", "ping"], capture_output=True).returncode != 0:
        run(
            ["redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "--port", "6379", *REDIS_EPHEMERAL],
            log=log,
        )
        stops.append(["redis-cli", "-h", "127.0.0.1", "-p", "6379", "shutdown", "nosave"])
    return stops


def _start_cognito(supervisor: Supervisor, env: dict[str, str]) -> tuple[str, str]:
    """moto's server in a process of its own, and the strict layer (AWS's quotas) in front of it."""
    port = free_port()
    moto_url = f"http://127.0.0.1:{port}"
    supervisor.start("moto", [PYTHON, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], env)
    supervisor.wait_for("moto", lambda: httpx.get(f"{moto_url}/moto-api/").status_code == 200 or None, 60)
    quotas = [arg for op, rps in QUOTAS.items() for arg in ("--quota", f"{op}={rps}")]
    strict = supervisor.start(
        "strict_cognito",
        [PYTHON, "-m", "devtools.strict_cognito", "--upstream", moto_url, *quotas],
        env,
        keep_stdin=True,
    )

    def strict_url() -> str | None:
        lines = [line for line in strict.log.read_text().splitlines() if line.startswith("http://")]
        return lines[0] if lines else None

    return moto_url, supervisor.wait_for("strict Cognito layer", strict_url, 60, interval=0.2)


def _seed_world(root: Path, moto_url: str, strict_url: str) -> tuple[dict[str, Any], dict[str, str], dict[str, int]]:
    """The demo's pools and tables (MariaDB e2e_<env>); AWS connections go through the strict layer,
    DB connections stage rows with LOAD DATA LOCAL INFILE as in production."""
    seeded = seed(moto_url, mysql_restorer(**MARIADB, database_prefix=DATABASE_PREFIX), prod_users=PROD_USERS)
    connections = dict(seeded["connections"])
    for environment in seeded["environments"].values():
        connections[connection_variable(environment["aws_conn_id"])] = aws_connection(strict_url)
        database = connection_variable(environment["db_conn_id"])
        connections[database] = json.dumps({**json.loads(connections[database]), "extra": {"local_infile": True}})
    config = {"snapshot_base": f"file://{root / 'runs'}", "environments": seeded["environments"]}
    (root / "environments.yaml").write_text(yaml.safe_dump(config))
    return seeded["environments"], connections, seeded["expected"]


def _airflow(*args: str) -> list[str]:
    return [PYTHON, "-m", "airflow", *args]


def _start_airflow(supervisor: Supervisor, env: dict[str, str], api_port: int, queue: str) -> Process:
    """Every component, and the pool set in the background (returned: wait for it with ``finish``)."""
    pool = _airflow("pools", "set", schedule.LIST_USERS_POOL, "1", "ListUsers quota: one extraction at a time")
    pool_set = supervisor.start("pools-set", pool, env, one_shot=True)
    supervisor.start("api-server", _airflow("api-server", "--port", str(api_port), "--workers", "2"), env)
    supervisor.start("scheduler", _airflow("scheduler"), env)
    supervisor.start("dag-processor", _airflow("dag-processor"), env)
    supervisor.start("triggerer", _airflow("triggerer"), env)
    for number, hostname in enumerate(WORKER_HOSTNAMES):
        worker_env = {**env, "AIRFLOW__CORE__HOSTNAME_CALLABLE": HOSTNAME_CALLABLE, "E2E_HOSTNAME": hostname}
        argv = _airflow("celery", "worker", "--queues", queue, "--concurrency", str(WORKER_CONCURRENCY))
        argv += ["--celery-hostname", f"{hostname}@%h"]
        if number:  # both run on this host: only one may serve logs on the port
            argv.append("--skip-serve-logs")
        supervisor.start(hostname, argv, worker_env)
    return pool_set


def _healthy(api_url: str) -> bool | None:
    health = httpx.get(f"{api_url}/api/v2/monitor/health", timeout=5).json()
    components = ("metadatabase", "scheduler", "triggerer", "dag_processor")
    return all(health.get(name, {}).get("status") == "healthy" for name in components) or None


def _worker_ready(supervisor: Supervisor, hostname: str) -> bool | None:
    process = next(p for p in supervisor.processes if p.name == hostname)
    return re.search(rf"{re.escape(hostname)}@\S+ ready\.", process.log.read_text()) and True


def start_deployment(root: Path) -> Deployment:
    """Everything up and healthy, or an exception naming the log to read (what started is stopped)."""
    root.mkdir(parents=True, exist_ok=True)
    supervisor = Supervisor(root)
    cleanup.record(root, stop_commands=ensure_services(root / "logs" / "setup.log"))
    run_id = uuid.uuid4().hex[:8]
    postgres_database = f"e2e_airflow_{run_id}"
    cleanup.record(root, postgres_database=postgres_database, mariadb_databases=[DATABASE_PREFIX + e for e in SEEDED])
    with closing(cleanup.postgres()) as db, db.cursor() as cursor:
        cursor.execute(f'CREATE DATABASE "{postgres_database}"')  # e2e_airflow_<hex>
    api_port, home = free_port(), root / "airflow"
    api_url = f"http://127.0.0.1:{api_port}"
    secret = {"fernet_key": Fernet.generate_key().decode(), "jwt_secret": secrets.token_urlsafe(32)}
    secret["api_secret_key"] = secrets.token_urlsafe(32)
    env = {**_base_environment(), **airflow_environment(home)}
    deployment = Deployment(root, home, api_url, "", "", env, {}, {}, f"e2e-{run_id}", supervisor, postgres_database)
    try:
        started_at = time.monotonic()
        metadata_url = "postgresql+psycopg2://{user}@{host}:{port}/".format(**cleanup.POSTGRES) + postgres_database
        env.update(deployment_settings(metadata_url=metadata_url, broker_url=REDIS_URL, api_url=api_url, secret=secret))
        env.update(_run_settings(root, deployment.queue))
        migrate = supervisor.start("db-migrate", _airflow("db", "migrate"), env, one_shot=True)  # while seeding
        deployment.moto_url, deployment.strict_url = _start_cognito(supervisor, env)
        deployment.environments, connections, deployment.expected_dev = _seed_world(
            root, deployment.moto_url, deployment.strict_url
        )
        print(f"[e2e] Cognito and MariaDB seeded in {time.monotonic() - started_at:.0f}s", flush=True)
        env.update(connections)
        supervisor.finish(migrate, START_TIMEOUT)
        pool_set = _start_airflow(supervisor, env, api_port, deployment.queue)
        supervisor.wait_for("api-server and components healthy", lambda: _healthy(api_url), START_TIMEOUT, 2)
        for hostname in WORKER_HOSTNAMES:
            supervisor.wait_for(f"celery worker {hostname}", lambda h=hostname: _worker_ready(supervisor, h), 120, 2)
        supervisor.finish(pool_set, START_TIMEOUT)
        print(f"[e2e] Airflow up in {time.monotonic() - started_at:.0f}s: {api_url}", flush=True)
    except BaseException:
        deployment.stop()
        raise
    return deployment


def _base_environment() -> dict[str, str]:
    """This process's environment without any Airflow settings a developer's shell may carry."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW__", "AIRFLOW_CONN_", "AIRFLOW_HOME"))}


def _run_settings(root: Path, queue: str) -> dict[str, str]:
    """What only this machine's run needs: its own queue, log-server ports, and the config."""
    return {
        "AIRFLOW__OPERATORS__DEFAULT_QUEUE": queue,
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW__API__WORKERS": "2",
        "COGNITO_SYNC_CONFIG": str(root / "environments.yaml"),
    }
