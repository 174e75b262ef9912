"""A TCP proxy that adds a fixed one-way delay each way: a network link between client and database.

`python -m bench.delay_proxy --upstream 127.0.0.1:PORT --one-way-ms 0.25` listens on a free
loopback port, prints it, and serves until its standard input closes. Every chunk read
from one side is written to the other ``one-way-ms`` after it arrived, in order, so a
request and its answer cost one round trip of ``2 x one-way-ms`` more than on loopback,
while a bulk transfer keeps its bandwidth (chunks are pipelined, not serialised).

Why a proxy: this machine's kernel has no ``sch_netem`` (``tc qdisc ... netem`` answers
"Specified qdisc kind is unknown"), so the delay cannot come from a network namespace.
The proxy runs in a process of its own so that its work does not share the benchmark's
interpreter lock; the bench measures the round trip it actually gets (`measured_rtt_ms`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import queue
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

CHUNK = 256 * 1024


def _pump(source: socket.socket, target: socket.socket, delay: float) -> None:
    """Read from ``source``; a writer thread sends each chunk ``delay`` seconds after it arrived."""
    pending: queue.SimpleQueue[tuple[float, bytes]] = queue.SimpleQueue()

    def write() -> None:
        try:
            while True:
                due, data = pending.get()
                wait = due - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                if not data:
                    break
                target.sendall(data)
        except OSError:
            pass
        with contextlib.suppress(OSError):
            target.shutdown(socket.SHUT_WR)

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    try:
        while data := source.recv(CHUNK):
            pending.put((time.monotonic() + delay, data))
    except OSError:
        pass
    pending.put((time.monotonic() + delay, b""))  # end of stream, after the data before it
    writer.join()


def _serve_connection(client: socket.socket, upstream: tuple[str, int], delay: float) -> None:
    with client, socket.create_connection(upstream) as server:
        for end in (client, server):
            end.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        back = threading.Thread(target=_pump, args=(server, client, delay), daemon=True)
        back.start()
        _pump(client, server, delay)
        back.join()


def _prompt_wakeups(policy: str) -> None:
    """A link's delay must not grow when the CPUs are busy: ask for real-time or top-nice scheduling.

    Threads created afterwards inherit it. SCHED_FIFO is bounded by the kernel's RT
    throttling (sched_rt_runtime_us), and the proxy blocks or sleeps between chunks.
    """
    try:
        if policy == "fifo":
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))
        elif policy == "nice":
            os.nice(-20)
    except (PermissionError, OSError):
        pass  # unprivileged: the measured round trip will show it


def serve(upstream: tuple[str, int], one_way_ms: float) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    print(json.dumps({"port": listener.getsockname()[1]}), flush=True)
    delay = one_way_ms / 1000

    def accept() -> None:
        while True:
            client, _ = listener.accept()
            threading.Thread(target=_serve_connection, args=(client, upstream, delay), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    sys.stdin.read()  # serve until the parent closes our stdin (or dies)


@contextmanager
def delay_proxy(upstream_port: int, one_way_ms: float) -> Iterator[int]:
    """Run the proxy in a process of its own for the block; yields the port to connect to."""
    command = [
        sys.executable,
        "-m",
        "bench.delay_proxy",
        "--upstream",
        f"127.0.0.1:{upstream_port}",
        "--one-way-ms",
        str(one_way_ms),
    ]
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        yield int(json.loads(process.stdout.readline())["port"])
    finally:
        if process.stdin:
            process.stdin.close()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upstream", required=True, help="host:port to forward to")
    parser.add_argument("--one-way-ms", type=float, required=True, help="delay added in each direction")
    args = parser.parse_args()
    host, port = args.upstream.rsplit(":", 1)
    _prompt_wakeups(os.environ.get("BENCH_PROXY_SCHED", "fifo"))
    serve((host, int(port)), args.one_way_ms)


if __name__ == "__main__":
    main()
