"""Start the deployment's processes, wait for them, and stop every one of them.

Each process runs in a session of its own (its own process group), logs to a file and
leaves its pid in ``<root>/pids``: scripts/e2e/run.sh's exit trap kills whatever is
still listed there, even if the Python side died without cleaning up.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from devtools.local_airflow import PROJECT_ROOT

T = TypeVar("T")
STOP_GRACE_SECONDS = 20.0


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    pid_file: Path
    one_shot: bool = False  # a command that ends (db migrate): exiting 0 is success, not a crash


@dataclass
class Supervisor:
    """The processes started for one run, in start order; stopped in reverse order."""

    root: Path
    processes: list[Process] = field(default_factory=list)

    def start(
        self, name: str, argv: list[str], env: dict[str, str], *, keep_stdin: bool = False, one_shot: bool = False
    ) -> Process:
        logs, pids = self.root / "logs", self.root / "pids"
        logs.mkdir(parents=True, exist_ok=True)
        pids.mkdir(parents=True, exist_ok=True)
        log = logs / f"{name}.log"
        with log.open("ab") as out:
            popen = subprocess.Popen(
                argv,
                env=env,
                cwd=PROJECT_ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.PIPE if keep_stdin else subprocess.DEVNULL,
                start_new_session=True,
            )
        pid_file = pids / f"{name}.pid"
        pid_file.write_text(str(popen.pid))
        process = Process(name, popen, log, pid_file, one_shot)
        self.processes.append(process)
        return process

    def check_alive(self) -> None:
        """Fail at once, naming the log, when a process has exited."""
        for process in self.processes:
            code = process.popen.poll()
            if code is not None and not (process.one_shot and code == 0):
                raise RuntimeError(f"{process.name} exited with code {code}; its log: {process.log}")

    def finish(self, process: Process, timeout: float) -> None:
        """Wait for a one-shot command started with ``start(one_shot=True)``; fail naming its log."""
        self.wait_for(process.name, lambda: process.popen.poll() == 0 or None, timeout, interval=0.5)

    def wait_for(self, what: str, probe: Callable[[], T | None], timeout: float, interval: float = 1.0) -> T:
        """Poll ``probe`` until it returns something other than None (exceptions count as not yet)."""
        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                result = probe()
            except Exception as error:  # a service still starting refuses connections
                last_error = error
            else:
                if result is not None:
                    return result
            time.sleep(interval)
        raise TimeoutError(
            f"{what}: not ready after {timeout:.0f}s (last error: {last_error!r}); logs: {self.root}/logs"
        )

    def stop_all(self) -> None:
        for process in reversed(self.processes):
            stop_group(process.popen)
            process.pid_file.unlink(missing_ok=True)
        self.processes.clear()


def stop_group(popen: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group; SIGKILL the group once its leader exited or the grace period ended."""
    if popen.stdin is not None:
        popen.stdin.close()
    with contextlib.suppress(ProcessLookupError):
        os.killpg(popen.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        popen.wait(timeout=STOP_GRACE_SECONDS)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(popen.pid, signal.SIGKILL)  # children the leader left behind
    popen.wait()


def run(argv: list[str], env: dict[str, str] | None = None, *, log: Path) -> None:
    """A one-shot command (db migrate, pools set); its output goes to ``log``; fails naming the log."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        result = subprocess.run(argv, env=env, cwd=PROJECT_ROOT, stdout=out, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:4])} ... failed (exit {result.returncode}); see {log}")
