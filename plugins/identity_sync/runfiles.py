"""Where a run's files live, how they are written, how long they are kept, and how a person reaches them.

Every run leaves, per environment, under ``<snapshot_base>/<dag_id>/<run folder>/<env>/``
the snapshots, the plan and the reports (see ``identity_sync.report``). They hold every
e-mail and name of the pool, so:

- **One folder per run id.** A run id is made safe for paths (``[A-Za-z0-9_.-]``); when that
  changed it, ``~`` and 12 hex digits of the SHA-256 of the exact run id are appended, so
  ``restore dev/2026-11-20`` and ``restore_dev_2026-11-20`` never share a folder.
- **Owner-only on local disks.** On ``file://`` every folder this module creates is 0700 and
  every file 0600 from the moment it exists (no window at 0644); other backends (``s3://``)
  have no POSIX modes: protect them with the bucket's policy and encryption.
- **Atomic.** A file appears whole or not at all (written aside, then renamed); a record
  written with ``replace=False`` is never overwritten.
- **Retention.** ``enforce_retention`` deletes a DAG's run folders older than
  ``snapshot_retention_days``. On S3 the same rule is a bucket lifecycle rule: an
  ``Expiration`` of that many days on the prefix ``<snapshot_prefix>/`` (for instance
  ``aws s3api put-bucket-lifecycle-configuration`` with ``{"Rules": [{"ID": "identity-sync-
  retention", "Status": "Enabled", "Filter": {"Prefix": "<prefix>/"}, "Expiration":
  {"Days": 30}}]}``), which S3 applies per object by its age; the run's own call is then
  a second, harmless line of defence.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, is_dataclass
from datetime import datetime, timedelta
from typing import IO, Any
from urllib.parse import quote

import pandas as pd
import pyarrow.parquet as pq

from identity_sync.reconcile import CHANGE_COLUMNS, INSERT_COLUMNS, SYNC_ISSUE_COLUMNS, SYNC_ISSUE_DTYPES, Plan

log = logging.getLogger(__name__)

LOCAL_PROTOCOLS = ("file", "local", "")
FILE_MODE = 0o600
FOLDER_MODE = 0o700
_CLEAN_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}\Z")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")
HASH_DIGITS = 12
SPOOL_BYTES = 64 * 2**20
S3_CONSOLE = "https://s3.console.aws.amazon.com/s3"


def folder_name(part: str) -> str:
    """A path segment for a dag id, run id or environment name: one per distinct input.

    A clean name (letters, digits, ``_ . -``, not starting with a dot or dash, at most 100
    characters) is kept as is; any other gets the unsafe runs replaced by ``_`` and
    ``~<12 hex of sha256(name)>`` appended. Clean names never contain ``~``, so a clean
    name never equals a rewritten one.
    """
    if _CLEAN_NAME.match(part):
        return part
    digest = hashlib.sha256(part.encode("utf-8")).hexdigest()[:HASH_DIGITS]
    return f"{_UNSAFE.sub('_', part)[:100]}~{digest}"


def _storage_path(url: str):  # -> ObjectStoragePath (imported lazily: it loads Airflow's IO stack)
    from airflow.sdk import ObjectStoragePath

    return ObjectStoragePath(url)


def _local_folders(folder: str) -> None:
    """Create ``folder`` and its missing parents owner-only (0700); folders that exist are left as they are."""
    missing = []
    while not os.path.isdir(folder):
        missing.append(folder)
        folder = os.path.dirname(folder)
    for path in reversed(missing):
        with suppress(FileExistsError):  # made meanwhile by a parallel task of the same run
            os.mkdir(path, FOLDER_MODE)


@dataclass(frozen=True)
class RunFiles:
    """The files of one run and environment, on any ObjectStoragePath backend.

    ``base`` is ``<snapshot_base>/<dag folder>/<run folder>/<env folder>``; it travels
    through XCom as a plain string and ``RunFiles(base)`` rebuilds the object.
    """

    base: str

    @classmethod
    def for_run(cls, snapshot_base: str, dag_id: str, run_id: str, environment: str) -> RunFiles:
        parts = (folder_name(dag_id), folder_name(run_id), folder_name(environment))
        return cls("/".join([snapshot_base.rstrip("/"), *parts]))

    @classmethod
    def for_context(
        cls, environment: str, context: Mapping[str, Any] | None = None, snapshot_base: str | None = None
    ) -> RunFiles:
        """The files of ``environment`` in the running task's DAG run (context and settings looked up if not given)."""
        if context is None:
            from airflow.sdk import get_current_context

            context = get_current_context()
        if snapshot_base is None:
            from identity_sync.config import load_settings

            snapshot_base = load_settings().snapshot_base
        return cls.for_run(snapshot_base, context["dag"].dag_id, context["run_id"], environment)

    @property
    def run_folder(self) -> str:
        """``<snapshot_base>/<dag folder>/<run folder>``: every environment of this run."""
        return self.base.rsplit("/", 1)[0]

    def path(self, name: str):  # -> ObjectStoragePath
        return _storage_path(f"{self.base}/{name}")

    @property
    def is_local(self) -> bool:
        return self.path("x").protocol in LOCAL_PROTOCOLS

    def exists(self, name: str) -> bool:
        return self.path(name).exists()

    @contextmanager
    def open_for_write(self, name: str, *, replace: bool = True) -> Iterator[IO[bytes]]:
        """A binary handle whose content appears at ``name`` only when the block ends without error.

        Local files are 0600 from creation and folders 0700. ``replace=False`` raises
        FileExistsError instead of overwriting (atomic on local disks; checked first elsewhere).
        """
        target = self.path(name)
        if not self.is_local:
            yield from self._object_write(target, replace)
            return
        final = target.path
        _local_folders(os.path.dirname(final))
        aside = f"{final}.{uuid.uuid4().hex}.partial"
        fd = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
        try:
            with os.fdopen(fd, "wb") as handle:
                yield handle
            if replace:
                os.replace(aside, final)
            else:
                os.link(aside, final)  # fails if the name exists: never overwrites
        finally:
            if os.path.exists(aside):
                os.unlink(aside)

    @staticmethod
    def _object_write(target: Any, replace: bool) -> Iterator[IO[bytes]]:
        """Object stores: buffer aside (0600 temporary file past 64 MB), upload on success only."""
        if not replace and target.exists():
            raise FileExistsError(f"{target} exists; a record is never overwritten")
        with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as buffer:
            yield buffer
            buffer.seek(0)
            target.parent.mkdir(parents=True, exist_ok=True)
            with target.open("wb") as handle:
                shutil.copyfileobj(buffer, handle)

    def write_bytes_with(self, name: str, writer: Callable[[IO[bytes]], None], *, replace: bool = True) -> str:
        with self.open_for_write(name, replace=replace) as handle:
            writer(handle)
        return f"{self.base}/{name}"

    def write_parquet(self, name: str, frame: pd.DataFrame, compression: str | None = "snappy") -> str:
        return self.write_bytes_with(
            name, lambda handle: frame.to_parquet(handle, index=False, compression=compression)
        )

    def read_parquet(self, name: str, columns: list[str] | None = None) -> pd.DataFrame:
        """The frame saved as ``name``; only ``columns`` (those of them it has) when given."""
        with self.path(name).open("rb") as handle:
            if columns is not None:
                present = set(pq.read_schema(handle).names)
                handle.seek(0)
                columns = [column for column in columns if column in present]
            return pd.read_parquet(handle, columns=columns)

    def write_text(self, name: str, text: str, *, replace: bool = True) -> str:
        return self.write_bytes_with(name, lambda handle: handle.write(text.encode("utf-8")), replace=replace)

    def read_text(self, name: str) -> str:
        with self.path(name).open("rb") as handle:
            return handle.read().decode("utf-8")

    def save_plan(self, plan: Plan, mode: Any = None) -> None:
        """What apply reads. ``plan/counts.json`` also records the run's mode (an ``audit.RunMode`` or a mapping)."""
        mode = asdict(mode) if is_dataclass(mode) and not isinstance(mode, type) else dict(mode or {})
        # Uncompressed: the plan's ids and subs are random text that snappy barely shrinks (1M changes: 169 MB
        # instead of 148 MB), and writing, reading back and digesting them is then 2-3x quicker.
        self.write_parquet("plan/changes.parquet", plan.changes, compression=None)
        self.write_parquet("plan/inserts.parquet", plan.inserts, compression=None)
        self.write_parquet("plan/issues.parquet", plan.issues, compression=None)
        summary = {"counts": plan.counts, "metrics": plan.metrics, "mode": mode}
        self.write_text("plan/counts.json", json.dumps(summary, sort_keys=True))

    def load_plan(self, *, issues: bool = True) -> Plan:
        """The saved plan. ``issues=False`` (the apply: it writes changes and inserts, never issues) leaves
        ``plan/issues.parquet`` unread and gives an empty issues frame."""
        summary = json.loads(self.read_text("plan/counts.json"))
        return Plan(
            changes=self.read_parquet("plan/changes.parquet", CHANGE_COLUMNS).reindex(columns=CHANGE_COLUMNS),
            inserts=self.read_parquet("plan/inserts.parquet", INSERT_COLUMNS).reindex(columns=INSERT_COLUMNS),
            issues=(
                self.read_parquet("plan/issues.parquet", SYNC_ISSUE_COLUMNS).reindex(columns=SYNC_ISSUE_COLUMNS)
                if issues
                else pd.DataFrame({name: pd.Series([], dtype=dtype) for name, dtype in SYNC_ISSUE_DTYPES.items()})
            ),
            counts=summary["counts"],
            metrics=summary["metrics"],
        )

    def load_mode(self) -> dict[str, Any]:
        """The mode the plan was saved with (empty for a plan saved without one)."""
        return json.loads(self.read_text("plan/counts.json")).get("mode", {})


def _newest_change(fs: Any, folder: str) -> float | None:
    """The newest modification time (epoch seconds) of any file below ``folder``; None when it holds none."""
    times = []
    for info in fs.find(folder, detail=True).values():
        stamp = info.get("mtime") or info.get("LastModified") or info.get("created")  # local, S3, memory
        if isinstance(stamp, datetime):
            stamp = stamp.timestamp()
        if stamp is not None:
            times.append(float(stamp))
    return max(times) if times else None


def enforce_retention(
    snapshot_base: str, dag_id: str, days: int, now: datetime, *, current_run_id: str | None = None
) -> list[str]:
    """Delete the run folders of ``dag_id`` whose newest file is older than ``days``; returns what was deleted.

    Only direct sub-folders of ``<snapshot_base>/<dag folder>/`` are considered; links,
    files, empty folders and the current run's folder are left alone.
    """
    if isinstance(days, bool) or not isinstance(days, int) or days < 1:
        raise ValueError(f"snapshot_retention_days must be a whole number of days >= 1, got {days!r}")
    dag_folder = _storage_path(f"{snapshot_base.rstrip('/')}/{folder_name(dag_id)}")
    fs, root = dag_folder.fs, dag_folder.path.rstrip("/")
    if not fs.exists(root):
        return []
    keep = folder_name(current_run_id) if current_run_id is not None else None
    cutoff = (now - timedelta(days=days)).timestamp()
    deleted = []
    for entry in fs.ls(root, detail=True):
        path = entry["name"].rstrip("/")
        name = path.rsplit("/", 1)[-1]
        if entry.get("type") != "directory" or entry.get("islink") or path != f"{root}/{name}":
            continue
        if name in ("", ".", "..", keep):
            continue
        newest = _newest_change(fs, path)
        if newest is not None and newest < cutoff:
            fs.rm(path, recursive=True)
            deleted.append(f"{snapshot_base.rstrip('/')}/{folder_name(dag_id)}/{name}")
    log.info("retention: %d run folder(s) of %s older than %d days deleted", len(deleted), dag_id, days)
    return deleted


def report_url(location: str, region: str | None = None) -> str:
    """A URL a person can open for a report location.

    ``s3://bucket/key`` becomes the AWS console's page of that object (of the folder when
    ``location`` ends with ``/``); ``file://`` locations are returned as they are (a
    browser opens them on the worker's machine only: show them as text too).
    """
    if not location.startswith("s3://"):
        return location
    bucket, _, key = location[len("s3://") :].partition("/")
    page = "buckets" if not key or key.endswith("/") else "object"
    url = f"{S3_CONSOLE}/{page}/{quote(bucket)}?prefix={quote(key)}"
    return f"{url}&region={quote(region)}" if region else url


def report_links_markdown(reports: Mapping[str, str], region: str | None = None) -> str:
    """One Markdown line per report, ``- name: [location](url)``, for a run note or an approval's body."""
    return "\n".join(f"- {name}: [`{location}`]({report_url(location, region)})" for name, location in reports.items())
