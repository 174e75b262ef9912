"""The two server settings the bench compares, the links to them, and a quiet server between cases.

Each setting runs in a private ``mariadbd`` (devtools/private_mariadb.py) with its own
datadir and port: the shared server at 127.0.0.1:3306 is never touched.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import MySQLdb

from bench.delay_proxy import delay_proxy
from devtools.private_mariadb import PrivateMariaDB

SERVERS: dict[str, dict[str, str]] = {
    # Debian's MariaDB as it comes (and as the shared server on this machine runs).
    "stock": {"innodb_buffer_pool_size": "128M", "innodb_log_file_size": "96M", "innodb_flush_log_at_trx_commit": "1"},
    # What a database holding a million users would be given.
    "production": {
        "innodb_buffer_pool_size": "2G",
        "innodb_log_file_size": "1G",
        "innodb_flush_log_at_trx_commit": "1",
    },
}
LINKS: dict[str, float] = {"loopback": 0.0, "0.5ms": 0.5, "2ms": 2.0}  # added round-trip time, ms
STATUS = (
    "Com_begin",
    "Com_commit",
    "Com_rollback",
    "Innodb_rows_inserted",
    "Innodb_rows_updated",
    "Innodb_rows_deleted",
    "Created_tmp_disk_tables",
)
PROBES = 400  # SELECT 1 round trips per RTT measurement


def admin(server: PrivateMariaDB) -> Any:
    """A short-lived autocommit connection over the socket (opens no transaction of its own)."""
    return server.connect_socket(autocommit=True)


def status(server: PrivateMariaDB) -> dict[str, int]:
    """The global counters the bench reads around a task (the private server runs nothing else)."""
    conn = admin(server)
    try:
        cursor = conn.cursor()
        cursor.execute("SHOW GLOBAL STATUS WHERE Variable_name IN (" + ", ".join(["%s"] * len(STATUS)) + ")", STATUS)
        return {name: int(value) for name, value in cursor.fetchall()}
    finally:
        conn.close()


def _history_and_dirty(cursor: Any) -> tuple[int, int]:
    cursor.execute("SELECT `count` FROM information_schema.INNODB_METRICS WHERE name = 'trx_rseg_history_len'")
    history = int(cursor.fetchone()[0])
    cursor.execute("SHOW GLOBAL STATUS LIKE 'Innodb_buffer_pool_pages_dirty'")
    return history, int(cursor.fetchone()[1])


QUIESCE_SETTINGS = {"innodb_max_dirty_pages_pct": 0, "innodb_io_capacity_max": 40000, "innodb_io_capacity": 20000}


def quiesce(server: PrivateMariaDB, timeout: float = 120.0) -> float:
    """Wait until purge has caught up and dirty pages are written: each case starts on a quiet server.

    A real re-link runs hours after the last one; without this, a case would pay for the
    previous case's purge and page flushing. Flushing is sped up meanwhile (the settings
    are put back before the next case). Returns the seconds waited.
    """
    started = time.perf_counter()
    conn = admin(server)
    try:
        cursor = conn.cursor()
        saved = {}
        for name in QUIESCE_SETTINGS:
            cursor.execute(f"SELECT @@GLOBAL.{name}")
            saved[name] = cursor.fetchone()[0]
        try:
            for name, value in QUIESCE_SETTINGS.items():  # max before min: io_capacity <= io_capacity_max
                cursor.execute(f"SET GLOBAL {name} = %s", (value,))
            while time.perf_counter() - started < timeout:
                history, dirty = _history_and_dirty(cursor)
                if history < 100 and dirty < 100:
                    break
                time.sleep(0.25)
        finally:
            for name in reversed(QUIESCE_SETTINGS):
                cursor.execute(f"SET GLOBAL {name} = %s", (saved[name],))
    finally:
        conn.close()
    return time.perf_counter() - started


def round_trip_ms(port: int, *, mean: bool = False) -> float:
    """Median (or mean) SELECT 1 round trip through ``port`` on loopback, in ms."""
    conn = MySQLdb.connect(host="127.0.0.1", port=port, user="root", password="", database="test")
    try:
        cursor = conn.cursor()
        samples = []
        for _ in range(PROBES):
            started = time.perf_counter()
            cursor.execute("SELECT 1")
            cursor.fetchall()
            samples.append(time.perf_counter() - started)
    finally:
        conn.close()
    return (statistics.mean(samples) if mean else statistics.median(samples)) * 1000


@contextmanager
def link(server: PrivateMariaDB, added_rtt_ms: float) -> Iterator[dict[str, Any]]:
    """A port that reaches ``server`` with ``added_rtt_ms`` more round-trip time than loopback.

    The proxy's own overhead (thread hand-offs, timer slack) is calibrated away: the
    one-way delay is adjusted until the measured median round trip is on target, and
    the figure measured is what the results report.
    """
    loopback = round_trip_ms(server.port)
    if added_rtt_ms <= 0:
        mean = round_trip_ms(server.port, mean=True)
        yield {"port": server.port, "added_rtt_ms": 0.0, "rtt_ms": loopback, "mean_rtt_ms": mean, "one_way_ms": 0.0}
        return
    one_way = added_rtt_ms / 2
    for _attempt in range(4):
        with delay_proxy(server.port, one_way) as port:
            added = round_trip_ms(port) - loopback
            if abs(added - added_rtt_ms) <= 0.05 * added_rtt_ms + 0.02:
                break
        one_way = max(0.0, one_way - (added - added_rtt_ms) / 2)
    with delay_proxy(server.port, one_way) as port:
        measured = round_trip_ms(port)
        yield {
            "port": port,
            "added_rtt_ms": measured - loopback,
            "rtt_ms": measured,
            "mean_rtt_ms": round_trip_ms(port, mean=True),
            "loopback_mean_rtt_ms": round_trip_ms(server.port, mean=True),
            "one_way_ms": one_way,
        }
