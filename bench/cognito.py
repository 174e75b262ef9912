"""Cognito throughput against moto behind the strict layer: a fixed latency per call and AWS's quotas.

Extraction: the product's extract_pool (sliced chains, one shared limiter) and, in the
same run, one sequential token chain. Backfill: the product's write_chunk_step, with as
many chunks side by side as the DAG allows (WRITE_SLOTS), against the 25 RPS quota.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from devtools.local_airflow import aws_connection, connection_variable, sqlite_connection
from devtools.strict_cognito import STATS_PATH
from identity_sync.backfill import chunk_frame, plan_backfill
from identity_sync.backfill_records import Chunk
from identity_sync.backfill_steps import write_chunk_step
from identity_sync.cognito import CognitoHook
from identity_sync.config import Environment, Settings
from identity_sync.extract import extract_pool
from identity_sync.ratelimit import QUOTAS
from identity_sync.runfiles import RunFiles
from identity_sync.schedule import WRITE_SLOTS
from identity_sync.sql import SQLITE, schema_statement, statement

LATENCY = 0.100  # seconds added to every call, a round trip to a distant Region
HARNESS_NICE = -10  # moto stands in for AWS: the machine's load must not slow its answers


def _prompt() -> None:
    """moto's process (before exec): a higher priority, when allowed.

    On a busy machine a starved moto answers late: the harness's delay, not Cognito's.
    Unprivileged, the priority stays as it is and the figures show it.
    """
    with suppress(OSError):
        os.nice(HARNESS_NICE)


def _prompt_layer() -> None:
    """The strict layer's process (before exec): real-time scheduling, when allowed, as bench/delay_proxy.py.

    Its clock is the quota's: a layer thread that wakes late from the latency it adds admits
    its call late, together with the calls behind it, and the sliding window then counts
    calls that the client sent evenly spaced as a burst (measured at load 2-4: four calls
    sent 66-120 ms apart admitted within 13 ms, a throttle). SCHED_FIFO is bounded by the
    kernel's real-time throttling; the layer sleeps or waits on sockets between calls.
    """
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))
    except OSError:
        _prompt()


CONN_ID = "bench_aws"
DB_CONN_ID = "bench_users_db"


def _sqlite_users(path: Path, rows: list[tuple[str, str, str]]) -> None:
    """The Users table the backfill's chunks re-read before writing: (InternalUserID, CognitoID, Email)."""
    with sqlite3.connect(path) as connection:
        connection.execute(schema_statement(SQLITE, "Users"))
        connection.executemany(statement("insert_user", SQLITE, "Users"), [(*row, "F", "L") for row in rows])


@contextmanager
def moto_pool(users: int, with_ids: bool = False) -> Iterator[dict[str, Any]]:
    """A moto server process holding one pool of ``users`` users."""
    command = [sys.executable, "-m", "bench.moto_pool", "--users", str(users)]
    process = subprocess.Popen(
        [*command, *(["--with-ids"] if with_ids else [])],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=_prompt,
    )
    try:
        yield json.loads(process.stdout.readline())
    finally:
        process.stdin.close()
        process.wait(timeout=30)


class RemoteLayer:
    """The strict layer in a process of its own (its timing shares no interpreter lock with ours)."""

    def __init__(self, url: str) -> None:
        self.url = url

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.url}{STATS_PATH}", timeout=30) as answer:
            return json.load(answer)


@contextmanager
def strict_layer(upstream: str, quotas: dict[str, float]) -> Iterator[RemoteLayer]:
    quota_args = [arg for op, rps in quotas.items() for arg in ("--quota", f"{op}={rps:g}")]
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "devtools.strict_cognito",
            "--upstream",
            upstream,
            "--latency",
            str(LATENCY),
            *quota_args,
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=_prompt_layer,
    )
    try:
        layer = RemoteLayer(process.stdout.readline().strip())
        os.environ[connection_variable(CONN_ID)] = aws_connection(layer.url)
        yield layer
    finally:
        process.stdin.close()
        process.wait(timeout=30)


def _figures(layer: RemoteLayer, operation: str) -> dict[str, Any]:
    """Accepted calls, their steady rate (first to last accepted call) and the calls that failed."""
    stats = layer.stats()
    times = [at for at, op, outcome in stats["events"] if op == operation and outcome == "accepted"]
    rate = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else 0.0
    failed = stats["throttled"].get(operation, 0) + stats["rejected"].get(operation, 0)
    return {"calls": stats["calls"].get(operation, 0), "rps": rate, "failed_calls": failed}


def extraction(users: int, rps: float, slices: int, reps: int = 3) -> list[dict[str, Any]]:
    """The product's extract_pool over one moto pool, ``reps`` times, each behind a fresh strict layer."""
    records = []
    with moto_pool(users) as pool:
        for _rep in range(reps):
            with strict_layer(pool["url"], {"ListUsers": QUOTAS["ListUsers"]}) as proxy:
                env = Environment(
                    name="bench",
                    aws_conn_id=CONN_ID,
                    user_pool_id=pool["pool_id"],
                    db_conn_id="unused",
                    list_users_rps=rps,
                    list_users_slices=slices,
                )
                started = time.perf_counter()
                frame = extract_pool(env, CognitoHook(aws_conn_id=CONN_ID))
                seconds = time.perf_counter() - started
                figures = _figures(proxy, "ListUsers")
            records.append(
                {
                    "case": f"extraction, {slices} slice(s), list_users_rps {rps:g}",
                    "seconds": seconds,
                    **figures,
                    "quota_share": figures["rps"] / QUOTAS["ListUsers"],
                    "users_per_s": len(frame) / seconds,
                    "complete": len(frame) == users and frame["sub"].is_unique,
                }
            )
    return records


def backfill_writes(users: int, rate: float) -> dict[str, Any]:
    """Every user lacks the attribute; chunks written side by side, as the mapped tasks run."""
    quota = QUOTAS["AdminUpdateUserAttributes"]
    with (
        moto_pool(users) as pool,
        strict_layer(pool["url"], {"AdminUpdateUserAttributes": quota, "ListUsers": QUOTAS["ListUsers"]}) as proxy,
        tempfile.TemporaryDirectory() as tmp,
    ):
        env = Environment(name="bench", aws_conn_id=CONN_ID, user_pool_id=pool["pool_id"], db_conn_id=DB_CONN_ID)
        settings = Settings(environments={"bench": env}, snapshot_base=f"file://{tmp}", source=Path("bench"))
        users_frame = extract_pool(env, CognitoHook(aws_conn_id=CONN_ID))
        table = users_frame.assign(
            UserID=range(1, len(users_frame) + 1),
            InternalUserID=[f"00000000-0000-4000-8000-{n:012d}" for n in range(len(users_frame))],
            CognitoID=users_frame["sub"],
            Email=users_frame["email"],
            FirstName="F",
            LastName="L",
        )[["UserID", "InternalUserID", "CognitoID", "Email", "FirstName", "LastName"]]
        database = Path(tmp) / "users.sqlite"
        _sqlite_users(database, list(table[["InternalUserID", "CognitoID", "Email"]].itertuples(index=False)))
        os.environ[connection_variable(DB_CONN_ID)] = sqlite_connection(database)
        plan = plan_backfill(users_frame, table, create_missing=False)
        files = RunFiles(f"file://{tmp}/run")
        chunks = []
        parts = chunk_frame(plan.writes, WRITE_SLOTS)
        for index, part in enumerate(parts):
            name = f"writes/chunk-{index:03d}.parquet"
            files.write_parquet(name, part)
            chunks.append(Chunk("bench", files.base, "write", name, f"{index + 1}/{len(parts)}"))
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=WRITE_SLOTS) as tasks:  # as many as run side by side
            outcomes = list(tasks.map(lambda c: write_chunk_step(settings, c, rate=rate, slots=WRITE_SLOTS), chunks))
        seconds = time.perf_counter() - started
        written = sum(o.done for o in outcomes)
        figures = _figures(proxy, "AdminUpdateUserAttributes")
        return {
            "case": f"backfill writes, {WRITE_SLOTS} chunks side by side, rate {rate:g}",
            "seconds": seconds,
            **figures,
            "quota_share": figures["rps"] / quota,
            "complete": written == len(plan.writes) == users,
        }
