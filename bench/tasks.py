"""The DAG's tasks as the bench runs them: each in a forked process, so its peak RSS is its own.

A task here calls the product's step function (identity_sync.sync) with the product's
Airflow connection, as a worker would; the only differences are that the pool comes
from a Parquet file (the listing is benchmarked on its own in bench/cognito.py) and
that the bench wraps, never replaces, a few functions to time them.

The parent imports everything before it forks and holds no data and no connection, so
a child's peak RSS is the task's working set plus the imports any task process has.
"""

from __future__ import annotations

import functools
import json
import multiprocessing
import os
import resource
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import MySQLdb
import pandas as pd
import pyarrow.parquet as pq

from bench.data import Population
from bench.tracing import Trace, TracedConnection, apply_phases, per_statement, statement_names
from identity_sync import sync, table
from identity_sync.audit import TriggerRecord
from identity_sync.config import Environment, Settings
from identity_sync.extract import RECORD_COLUMNS, table_frame
from identity_sync.runfiles import RunFiles
from identity_sync.sql import MYSQL
from identity_sync.sync_records import Approved, RunContext

ENVIRONMENT = "bench"
DB_CONN_ID = "bench_users_db"
DAG_ID = "cognito_user_sync"


class TaskFailedError(RuntimeError):
    """A task process raised or died; the message carries its traceback."""


def peak_mb() -> float:
    """This process's peak resident set, in MB (10^6 bytes; ru_maxrss is in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e6


def _child(send: Any, function: Callable[..., dict[str, Any]], args: tuple[Any, ...]) -> None:
    try:
        result = function(*args)
        result["peak_mb"] = peak_mb()
        send.send(result)
    except BaseException:
        send.send({"error": traceback.format_exc()})
    finally:
        send.close()


def in_child(function: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    """Run ``function(*args)`` in a forked process; its dict comes back with ``peak_mb``."""
    context = multiprocessing.get_context("fork")
    receive, send = context.Pipe(duplex=False)
    process = context.Process(target=_child, args=(send, function, args))
    process.start()
    send.close()
    try:
        message = receive.recv()
    except EOFError:
        message = {"error": "the task process died without an answer"}
    process.join()
    if "error" in message:
        raise TaskFailedError(f"{function.__name__} failed (exit {process.exitcode}):\n{message['error']}")
    return message


def connection_json(port: int) -> str:
    """The product's Airflow connection to the bench server, LOAD DATA LOCAL allowed on the client."""
    return json.dumps(
        {
            "conn_type": "mysql",
            "host": "127.0.0.1",
            "port": port,
            "schema": "test",
            "login": "root",
            "password": "",
            "extra": {"local_infile": True},
        }
    )


def settings_for(table_name: str, base: Path) -> Settings:
    env = Environment(
        name=ENVIRONMENT,
        aws_conn_id="bench_aws_unused",
        user_pool_id="us-east-2_BenchPool",
        db_conn_id=DB_CONN_ID,
        users_table=table_name,
    )
    return Settings(environments={ENVIRONMENT: env}, snapshot_base=f"file://{base}", source=Path("bench"))


def _timed(holder: dict[str, float], key: str, function: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            holder[key] = holder.get(key, 0.0) + time.perf_counter() - started

    return wrapper


def _time_reports(times: dict[str, float]) -> None:
    """Wrap every report and record writer the steps call (``write_*``, ``record_*`` in sync): the report phase."""
    for name in dir(sync):
        if name.startswith(("write_", "record_")) and callable(getattr(sync, name)):
            setattr(sync, name, _timed(times, "report", getattr(sync, name)))


def run_context(run_id: str, after_restore: bool) -> RunContext:
    """A run as a person starts it after a restore (or as the nightly schedule does)."""
    params = {"after_restore": after_restore, "dry_run": False, "allow_mass_change": False, "reason": "bench"}
    return RunContext(dag_id=DAG_ID, run_id=run_id, trigger=TriggerRecord(run_type="manual"), params=params)


def pool_from_parquet(pool_path: str) -> pd.DataFrame:
    """The pool as extract_pool returns it: the columns ListUsers gives, in Arrow, made a frame by the product's code.

    extract_pool turns its pages into an Arrow table (extract.pool_table) and that table
    into the frame (extract.table_frame, which derives email_norm); here the table comes
    from Parquet instead of pages.
    """
    return table_frame(pq.read_table(pool_path, columns=RECORD_COLUMNS))


def extract_task(settings: Settings, run: RunContext, pool_path: str) -> dict[str, Any]:
    """extract_step with the pool read from Parquet (the listing is benchmarked in bench/cognito.py).

    ``read`` is the table read alone; the pool checks, which ask Cognito, are skipped.
    """
    times: dict[str, float] = {}
    sync.check_pool = lambda env, *args, **kwargs: None
    sync.extract_pool = lambda env, *args, **kwargs: pool_from_parquet(pool_path)
    table.UsersTable.read = _timed(times, "read", table.UsersTable.read)
    files = RunFiles.for_run(settings.snapshot_base, run.dag_id, run.run_id, ENVIRONMENT)
    started = time.perf_counter()
    snapshot = sync.extract_step(settings, ENVIRONMENT, files)
    return {"read": times["read"], "task": time.perf_counter() - started, "snapshot": snapshot}


def plan_task(settings: Settings, run: RunContext, snapshot: Any) -> dict[str, Any]:
    """plan_step; ``report`` is the writing of its reports and run record, ``plan`` the rest of the task."""
    times = {"report": 0.0}
    _time_reports(times)
    started = time.perf_counter()
    planned = sync.plan_step(settings, snapshot, run)
    task = time.perf_counter() - started
    return {"plan": task - times["report"], "report": times["report"], "task": task, "planned": planned}


def apply_task(settings: Settings, run: RunContext, planned: Any) -> dict[str, Any]:
    """apply_step through a traced connection: stage, drift and update from what it sent."""
    trace = Trace()
    users_table = settings.environment(ENVIRONMENT).users_table
    names = statement_names(MYSQL, users_table)
    original = table.database_hook

    def traced_hook(conn_id: str) -> Any:
        hook = original(conn_id)
        get_conn = hook.get_conn
        hook.get_conn = lambda: TracedConnection(get_conn(), trace, names)
        return hook

    table.database_hook = traced_hook
    times = {"report": 0.0}
    _time_reports(times)
    approved = Approved(planned.environment, planned.files, planned.digest, approval="not needed")
    started = time.perf_counter()
    applied = sync.apply_step(settings, approved, run, try_number=1)
    ended = time.perf_counter()
    writes_end = trace.executed[-1].ended if trace.executed else started
    return {
        **apply_phases(trace, users_table, started, writes_end),
        "report": times["report"],
        "task": ended - started,
        "rows_written": applied.rows_written,
        "statements_sent": len(trace.executed),
        "statements": per_statement(trace),
    }


def per_row_task(port: int, table_name: str, population: Population, side: str, size: int) -> dict[str, Any]:
    """Today's helper: one parameterised UPDATE per user, by e-mail, one commit at the end.

    Over ``size`` users of ``side``'s pool in listing order (a sample when smaller than the pool).
    """
    sample = population.sample(side, size)
    started = time.perf_counter()
    conn = MySQLdb.connect(host="127.0.0.1", port=port, user="root", password="", database="test", charset="utf8mb4")
    cursor = conn.cursor()
    sql = f"UPDATE `{table_name}` SET CognitoID = %s WHERE Email = %s"
    written = 0
    for sub, email in sample:
        written += cursor.execute(sql, (sub, email))
    conn.commit()
    conn.close()
    return {"seconds": time.perf_counter() - started, "rows_written": written}


def set_connection(port: int) -> None:
    """Point the product's connection id at ``port`` (forked tasks inherit the environment)."""
    os.environ[f"AIRFLOW_CONN_{DB_CONN_ID.upper()}"] = connection_json(port)
