"""`make bench`: every benchmark, one table. Options: `python -m bench --help`."""

from __future__ import annotations

import argparse
import json
import logging
import platform
import time
from pathlib import Path
from typing import Any

import MySQLdb

from bench import cognito, reconcile

RESULTS = Path(__file__).resolve().parent / "results"


def _server() -> str:
    db = MySQLdb.connect(**reconcile.MYSQL_SETTINGS)
    cursor = db.cursor()
    cursor.execute("SELECT VERSION(), @@innodb_buffer_pool_size, @@innodb_log_file_size")
    version, pool, log_size = cursor.fetchone()
    db.close()
    return f"MariaDB {version}, buffer pool {pool >> 20} MiB, redo log {log_size >> 20} MiB"


def _fmt(value: Any, spec: str) -> str:
    return "" if value is None else format(value, spec)


def table(rows: list[dict[str, Any]]) -> str:
    columns = ["seconds", "rows/calls", "per s", "of quota", "peak MB", "failed"]
    widths = [8, 11, 7, 8, 8, 6]
    header = f"{'case':<52} " + " ".join(f"{c:>{w}}" for c, w in zip(columns, widths, strict=True)) + "  note"
    lines = [header, "-" * len(header)]
    for r in rows:
        count = r.get("rows_written", r.get("calls"))
        note = []
        if "per_row_ratio" in r:
            note.append(f"{r['per_row_ratio']:.1f}x faster than per-row")
        if "read_s" in r:
            note.append(f"read {r['read_s']:.1f}s, plan {r['plan_s']:.1f}s, apply {r['apply_s']:.1f}s")
        if "complete" in r:
            note.append("every user, once" if r["complete"] else "INCOMPLETE")
        lines.append(
            f"{r['case']:<52} {_fmt(r['seconds'], '8.1f')} {_fmt(count, '11,')} {_fmt(r.get('rps'), '7.1f')} "
            f"{_fmt(r.get('quota_share'), '8.1%')} {_fmt(r.get('peak_mb'), '8.0f')} {_fmt(r.get('failed_calls'), '6')}"
            f"  {'; '.join(note)}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", choices=["extraction", "reconcile", "backfill"], action="append")
    parser.add_argument("--pool-users", type=int, default=20_000, help="users in the extraction pool")
    parser.add_argument("--list-users-rps", type=float, default=28.0, help="the sliced extraction's rate")
    parser.add_argument("--table-users", type=int, default=1_000_000, help="rows in the reconcile benchmark")
    parser.add_argument("--writes", type=int, default=1_200, help="attribute writes in the backfill benchmark")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    for name in ("airflow", "identity_sync", "botocore"):  # the table is the output; progress lines would bury it
        logging.getLogger(name).setLevel(logging.WARNING)
    only = set(args.only or ["extraction", "reconcile", "backfill"])
    rows: list[dict[str, Any]] = []
    started = time.perf_counter()
    if "extraction" in only:
        print(f"[bench] extraction: {args.pool_users:,} users, {cognito.LATENCY * 1000:.0f} ms a call, 30 RPS quota")
        rows.append(cognito.extraction(args.pool_users, rps=args.list_users_rps, slices=16))
        rows.append(cognito.extraction(args.pool_users, rps=25.0, slices=16))
        rows.append(cognito.extraction(args.pool_users, rps=30.0, slices=1))
    if "reconcile" in only:
        rows += reconcile.run(args.table_users)
    if "backfill" in only:
        print(f"[bench] backfill: {args.writes:,} attribute writes, 25 RPS quota")
        rows.append(cognito.backfill_writes(args.writes, rate=25.0))
    print()
    print(f"{platform.node()}: {_server()}; total {time.perf_counter() - started:.0f}s")
    print(table(rows))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "latest.json").write_text(json.dumps(rows, indent=2, default=str))


if __name__ == "__main__":
    main()
