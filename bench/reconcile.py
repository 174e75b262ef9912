"""Reconcile at scale: the product against today's per-row helper, per server setting, size and link.

For each server setting (bench/servers.py: a private mariadbd each), each size and each
link (loopback, +0.5 ms and +2 ms round trip), ``reps`` times:

- post-restore: the extract, plan and apply tasks (bench/tasks.py) with the pool of the
  side the table is not on, so every CognitoID changes;
- nightly: the same tasks with the pool of the side it is on, so nothing changes
  (at ``LARGE`` users, on ``large_nightly_links`` only: its goal is on loopback);
- the product's cases at ``LARGE`` users run on ``large_links`` only: a 1M case takes
  most of a minute;
- floor (at ``LARGE`` users, loopback, on ``floor_servers``): the bare set-based UPDATE,
  with the unique index and without it (bench/floor.py);
- per-row (at ``per_row_sizes``; its goals are at 1M): today's helper, one UPDATE per
  user, over the link. Its time per user hardly depends on the table's size. Over a slow link a
  million round trips take longer than the whole bench may, so per-row runs over a fixed
  sample of the pool (``PER_ROW_SAMPLE``, in listing order) on the full-size table, and
  its figure for every user is the sample's time scaled by users/sample, labelled so.

The server is brought to rest (purge and page flushing done) before every case.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import data, floor, servers, tasks
from bench.data import Population, other
from bench.tracing import APPLY_PHASES
from devtools.private_mariadb import PrivateMariaDB

LARGE = 1_000_000
PER_ROW_SAMPLE = {"loopback": 20_000, "0.5ms": 10_000, "2ms": 2_500}  # users per per-row run, at most


@dataclass
class Matrix:
    servers: list[str]
    sizes: list[int]
    links: list[str]
    reps: int
    workdir: Path
    floor: bool = True  # at LARGE users: the bare UPDATE with and without the unique index
    floor_servers: list[str] | None = None  # servers the floor runs on (None: every server)
    per_row_sizes: list[int] | None = None  # sizes per-row runs at (None: every size)
    large_nightly_links: list[str] | None = None  # links of the nightly case at LARGE users (None: large_links)
    large_links: list[str] | None = None  # product cases at LARGE users and above run on these links only
    large_reps: int | None = None  # runs of the product's cases at LARGE users (None: reps)
    partial: Path | None = None  # JSON lines, one per record, written as they come
    records: list[dict[str, Any]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)  # wall seconds per part of the matrix
    progress: bool = True

    def timed(self, part: str, started: float) -> None:
        self.timings[part] = self.timings.get(part, 0.0) + time.perf_counter() - started

    def nightly_runs(self, users: int, link: str) -> bool:
        return users < LARGE or self.large_nightly_links is None or link in self.large_nightly_links

    def floor_runs(self, server: str) -> bool:
        return self.floor and (self.floor_servers is None or server in self.floor_servers)

    def product_runs(self, users: int, link: str) -> bool:
        return users < LARGE or self.large_links is None or link in self.large_links

    def reps_for(self, users: int) -> int:
        """Runs of the product's and the floor's cases at ``users`` (per-row always runs ``reps``)."""
        return self.large_reps if users >= LARGE and self.large_reps else self.reps

    def add(self, record: dict[str, Any]) -> None:
        """Keep a record, and append it to ``partial`` at once: a run stopped half way keeps what it measured."""
        record["at_utc"] = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
        self.records.append(record)
        if self.partial:
            with self.partial.open("a") as out:
                out.write(json.dumps(record, default=str) + "\n")

    def note(self, text: str) -> None:
        if self.progress:
            print(f"[bench] {time.strftime('%H:%M:%S')} {text}", flush=True)


def _build_task(users: int, folder: Path) -> dict[str, Any]:
    data.build(users, folder)
    return {}


def _load_task(server: PrivateMariaDB, table: str, population: Population) -> dict[str, Any]:
    conn = server.connect_socket(local_infile=1)
    try:
        data.load_table(conn, table, population)
    finally:
        conn.close()
    return {}


def _revert_task(server: PrivateMariaDB, table: str, population: Population, side: str, size: int) -> dict[str, Any]:
    conn = server.connect_socket()
    try:
        return {"reverted": data.revert_sample(conn, table, population.sample_rows(side, size))}
    finally:
        conn.close()


def _delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {name: after[name] - before.get(name, 0) for name in after}


def sync_case(server: PrivateMariaDB, settings: Any, population: Population, side: str, after_restore: bool) -> dict:
    """extract, plan and apply with ``side``'s pool, each task in a process of its own."""
    run = tasks.run_context(f"bench-{uuid.uuid4().hex[:12]}", after_restore)
    load = os.getloadavg()[0]
    try:
        extract = tasks.in_child(tasks.extract_task, settings, run, str(population.pool(side)))
        plan = tasks.in_child(tasks.plan_task, settings, run, extract["snapshot"])
        before = servers.status(server)
        apply = tasks.in_child(tasks.apply_task, settings, run, plan["planned"])
        server_status = _delta(before, servers.status(server))
    finally:
        shutil.rmtree(Path(extract_folder(settings, run)), ignore_errors=True)
    phases = {"read": extract["read"], "plan": plan["plan"], **{k: apply[k] for k in APPLY_PHASES}}
    return {
        **phases,
        "report": plan["report"] + apply["report"],
        "read_plan_apply": sum(phases.values()),
        "tasks": {"extract": extract["task"], "plan": plan["task"], "apply": apply["task"]},
        "all_tasks": extract["task"] + plan["task"] + apply["task"],
        "peak_mb": {"extract": extract["peak_mb"], "plan": plan["peak_mb"], "apply": apply["peak_mb"]},
        "max_peak_mb": max(extract["peak_mb"], plan["peak_mb"], apply["peak_mb"]),
        "rows_written": apply["rows_written"],
        "counts": plan["planned"].counts,
        "refusals": plan["planned"].refusals,
        "statements_sent": apply["statements_sent"],
        "statements": apply["statements"],
        "server_status": server_status,
        "loadavg": [load, os.getloadavg()[0]],
    }


def extract_folder(settings: Any, run: Any) -> str:
    """The local folder of the run (snapshot_base is file://...)."""
    return settings.snapshot_base.removeprefix("file://") + f"/{run.dag_id}"


def per_row_case(port: int, table: str, population: Population, side: str, size: int) -> dict[str, Any]:
    load = os.getloadavg()[0]
    result = tasks.in_child(tasks.per_row_task, port, table, population, side, size)
    scale = population.users / size
    return {
        **result,
        "sample": size,
        "per_user_ms": result["seconds"] / size * 1000,
        "all_users_seconds": result["seconds"] * scale,
        "scaled": scale != 1,
        "loadavg": [load, os.getloadavg()[0]],
    }


def _product_reps(matrix: Matrix, server: PrivateMariaDB, table: str, population: Population, side: str, where: dict):
    settings = tasks.settings_for(table, matrix.workdir / "runs")
    for rep in range(matrix.reps_for(population.users)):
        waited = servers.quiesce(server)
        restore = sync_case(server, settings, population, other(side), after_restore=True)
        side = other(side)
        matrix.add({**where, "case": "post-restore", "rep": rep, "quiesce_s": waited, **restore})
        matrix.note(f"{where['link']}: post-restore {restore['read_plan_apply']:.1f}s, {restore['rows_written']} rows")
        if not matrix.nightly_runs(population.users, where["link"]):
            continue
        waited = servers.quiesce(server)
        nightly = sync_case(server, settings, population, side, after_restore=False)
        matrix.add({**where, "case": "nightly", "rep": rep, "quiesce_s": waited, **nightly})
        matrix.note(f"{where['link']}: nightly {nightly['read_plan_apply']:.1f}s, {nightly['rows_written']} rows")
    return side


def _per_row_reps(
    matrix: Matrix, server: PrivateMariaDB, port: int, table: str, population: Population, side: str, where: dict
) -> None:
    size = min(population.users, PER_ROW_SAMPLE[where["link"]])
    sample_side = side
    for rep in range(matrix.reps):
        waited = servers.quiesce(server)
        result = per_row_case(port, table, population, other(sample_side), size)
        sample_side = other(sample_side)
        matrix.add({**where, "case": "per-row", "rep": rep, "quiesce_s": waited, **result})
        matrix.note(f"{where['link']}: per-row {size:,} users {result['seconds']:.1f}s")
    if sample_side != side:
        tasks.in_child(_revert_task, server, table, population, side, size)


def _floor_reps(
    matrix: Matrix, server: PrivateMariaDB, table: str, population: Population, side: str, where: dict
) -> str:
    """The bare UPDATE, with the unique CognitoID index and without it (bench/floor.py)."""
    index = floor.cognito_index(server, table)
    for case, indexed in (("floor, unique index", True), ("floor, no index", False)):
        if not indexed and index:
            tasks.in_child(floor.set_index, server, table, index, False)
        for rep in range(matrix.reps_for(population.users)):
            waited = servers.quiesce(server)
            load = os.getloadavg()[0]
            result = tasks.in_child(floor.floor_task, server, table, population, other(side))
            side = other(side)
            record = {**where, "case": case, "rep": rep, "quiesce_s": waited, **result}
            matrix.add(record | {"loadavg": [load, os.getloadavg()[0]]})
            matrix.note(f"{where['link']}: {case}: UPDATE {result['update_s']:.1f}s")
        if not indexed and index:
            tasks.in_child(floor.set_index, server, table, index, True)
    return side


def warm_up(matrix: Matrix, server: PrivateMariaDB) -> None:
    """One tiny post-restore in this process, so every forked task starts warm.

    Without it each task would pay the first-use imports of its code paths (Parquet,
    fsspec, gzip CSV, the MySQL hook: 1-3 s here) inside the phases it times. The
    bench's wrappers are taken off again afterwards.
    """
    saved = {"sync": dict(vars(tasks.sync)), "read": tasks.table.UsersTable.read, "hook": tasks.table.database_hook}
    population = data.build(300, matrix.workdir / "population-warm-up")
    tasks.in_child(_load_task, server, "bench_warm_up", population)
    settings = tasks.settings_for("bench_warm_up", matrix.workdir / "runs")
    tasks.set_connection(server.port)
    run = tasks.run_context("bench-warm-up", after_restore=True)
    try:
        snapshot = tasks.extract_task(settings, run, str(population.pool("dev")))["snapshot"]
        planned = tasks.plan_task(settings, run, snapshot)["planned"]
        tasks.apply_task(settings, run, planned)
    finally:
        for key, value in saved["sync"].items():
            setattr(tasks.sync, key, value)
        tasks.table.UsersTable.read = saved["read"]
        tasks.table.database_hook = saved["hook"]
        shutil.rmtree(extract_folder(settings, run), ignore_errors=True)


def run_server(matrix: Matrix, name: str, populations: dict[int, Population]) -> None:
    base = matrix.workdir / f"server-{name}"
    try:
        _run_on(matrix, name, populations, PrivateMariaDB(servers.SERVERS[name], base_dir=base))
    finally:
        shutil.rmtree(base, ignore_errors=True)  # its datadir and redo log: gigabytes


def _run_on(matrix: Matrix, name: str, populations: dict[int, Population], private: PrivateMariaDB) -> None:
    started = time.perf_counter()
    with private as server:
        if name == matrix.servers[0]:
            warm_up(matrix, server)
        matrix.timed(f"{name} start", started)
        for users, population in populations.items():
            table = f"bench_users_{users}"
            started = time.perf_counter()
            tasks.in_child(_load_task, server, table, population)
            matrix.note(f"{name}: {users:,} rows loaded in {time.perf_counter() - started:.0f}s")
            matrix.timed(f"{name} {users} load", started)
            side = "prod"
            for link_name in matrix.links:
                part = f"{name} {users} {link_name}"
                started = time.perf_counter()
                with servers.link(server, servers.LINKS[link_name]) as link:
                    matrix.timed(f"{part} link", started)  # the delay proxy's start and calibration
                    tasks.set_connection(link["port"])
                    where = {"server": name, "users": users, "link": link_name, "link_rtt": link}
                    if matrix.product_runs(users, link_name):
                        started = time.perf_counter()
                        side = _product_reps(matrix, server, table, population, side, where)
                        matrix.timed(f"{part} product", started)
                    if users >= LARGE and link_name == "loopback" and matrix.floor_runs(name):
                        started = time.perf_counter()
                        side = _floor_reps(matrix, server, table, population, side, where)
                        matrix.timed(f"{part} floor", started)
                    if matrix.per_row_sizes is None or users in matrix.per_row_sizes:
                        started = time.perf_counter()
                        _per_row_reps(matrix, server, link["port"], table, population, side, where)
                        matrix.timed(f"{part} per-row", started)
            conn = servers.admin(server)
            conn.cursor().execute(f"DROP TABLE `{table}`")
            conn.close()


def run(matrix: Matrix) -> list[dict[str, Any]]:
    populations = {}
    for users in matrix.sizes:
        folder = matrix.workdir / f"population-{users}"
        started = time.perf_counter()
        tasks.in_child(_build_task, users, folder)
        matrix.timed(f"build {users}", started)
        populations[users] = Population(users, folder)
        matrix.note(f"{users:,} users built in {time.perf_counter() - started:.0f}s")
    for name in matrix.servers:
        run_server(matrix, name, populations)
    return matrix.records
