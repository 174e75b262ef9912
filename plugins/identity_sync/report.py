"""What a person reads after a run: the plan, the record of writes, the issues, the counts.

Per environment, next to the snapshots (``identity_sync.runfiles``):

- ``plan.csv.gz``: every value the run WOULD write (InternalUserID, UserID, column, old,
  new, category, reason, run_reason), written by the plan step. A plan is not a record of
  writes: a dry run, a refused or a rejected run leaves only this.
- ``changes.try-<n>.csv.gz``: every value the run DID write, written by the apply only
  after its commit, from what was committed; one file per try, never overwritten, so a
  cleared or retried task can never replace the record of an earlier try's writes.
- ``issues.csv.gz``: conflicts, unlinked users, stale rows kept.
- ``summary.md`` and ``run.json``: the run record (``identity_sync.audit``).

The CSV files are gzip-compressed (``zcat plan.csv.gz | less``; spreadsheets open them
after ``gunzip``) and made safe for spreadsheets the way OWASP recommends for CSV
injection: every field is quoted, embedded quotes are doubled, a text cell starting with
``= + - @``, tab or CR (after optional spaces) gets a leading ``'``, and control, line- and
direction-changing characters are written as ``\\xNN``/``\\uNNNN`` escapes. The exact
stored values stay in the plan's Parquet files.
"""

from __future__ import annotations

import gzip
import re
from collections import deque
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import IO

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pa_compute
import pyarrow.csv as pa_csv

from identity_sync.reconcile import CATEGORIES, Plan
from identity_sync.runfiles import RunFiles

CHANGE_REPORT_COLUMNS = ["InternalUserID", "UserID", "column", "old", "new", "category", "reason"]
PLAN_REPORT = "plan.csv.gz"
ISSUES_REPORT = "issues.csv.gz"
GZIP_LEVEL = 1  # level 1 is 3-4x faster than 6 and the files are read rarely; see docs/performance.md
CSV_BLOCK_ROWS = 65_536  # rows per gzip member (about 12 MB of CSV for a plan report)
CSV_BLOCKS_AHEAD = 3  # blocks formatted and compressed ahead of the one being written

# Control characters (C0, DEL, C1), line and paragraph separators, bidirectional overrides and isolates.
CONTROL_CHARACTERS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_FORMULA_START = re.compile(r" *[=+\-@\t\r]")
_PANDAS_TYPES = {
    pa.string(): pd.StringDtype("pyarrow"),
    pa.large_string(): pd.StringDtype("pyarrow"),
    pa.int64(): pd.Int64Dtype(),  # UserID: missing for inserts, still an integer
}
_UNSAFE_CELL = f"^{_FORMULA_START.pattern}|{CONTROL_CHARACTERS.pattern}"


def change_report(plan: Plan) -> pd.DataFrame:
    """Every value the plan writes: old, new and why, per InternalUserID (inserts as one line per column)."""
    updates = plan.changes[CHANGE_REPORT_COLUMNS]
    inserted = plan.inserts.melt(
        id_vars=["InternalUserID"],
        value_vars=["CognitoID", "Email", "FirstName", "LastName"],
        var_name="column",
        value_name="new",
    ).assign(UserID=pd.NA, old=pd.NA, category="insert", reason="InternalUserID not in the table")
    parts = [frame for frame in (updates, inserted[CHANGE_REPORT_COLUMNS]) if len(frame)]
    if not parts:
        return pd.DataFrame(columns=CHANGE_REPORT_COLUMNS)
    return _sorted_by_id_and_column(pd.concat(parts, ignore_index=True))


def _sorted_by_id_and_column(frame: pd.DataFrame) -> pd.DataFrame:
    """Stable sort by (InternalUserID, column), missing ids last; Arrow sorts and takes 3x faster than pandas at 1M."""
    columns = frame["column"].astype("category")
    columns = columns.cat.reorder_categories(sorted(columns.cat.categories))
    ids = pa.array(frame["InternalUserID"].astype("string[pyarrow]"))
    keys = pa.table({"id": ids, "column": columns.cat.codes.to_numpy()})
    order = pa_compute.sort_indices(keys, sort_keys=[("id", "ascending"), ("column", "ascending")])
    table = pa.Table.from_pandas(frame, preserve_index=False).take(order)
    return table.to_pandas(types_mapper=_PANDAS_TYPES.get)


def _escape(text: str) -> str:
    return CONTROL_CHARACTERS.sub(lambda m: f"\\x{ord(m[0]):02x}" if ord(m[0]) < 0x100 else f"\\u{ord(m[0]):04x}", text)


def _neutralise(text: str) -> str:
    prefix = "'" if _FORMULA_START.match(text) else ""
    return prefix + _escape(text)


def spreadsheet_safe(values: pd.Series) -> pd.Series:
    """Text cells a spreadsheet shows as text: control characters escaped, formula starts neutralised.

    One vectorised scan finds the (rare) cells that need either; only those are rewritten.
    A categorical column is made safe through its categories, not cell by cell.
    """
    if isinstance(values.dtype, pd.CategoricalDtype):
        safe = spreadsheet_safe(pd.Series(values.cat.categories))
        return pd.Series(safe.array.take(values.cat.codes.to_numpy(), allow_fill=True), index=values.index)
    text = values.astype("string[pyarrow]")
    unsafe = text.str.contains(_UNSAFE_CELL, regex=True, na=False)
    if unsafe.any():
        text = text.mask(unsafe, text[unsafe].map(_neutralise))
    return text


def safe_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with every non-numeric column passed through ``spreadsheet_safe``."""
    safe = {}
    for name, column in frame.items():
        numeric = pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column)
        safe[name] = column if numeric else spreadsheet_safe(column)
    return pd.DataFrame(safe, index=frame.index)


def write_csv_gz(handle: IO[bytes], frame: pd.DataFrame) -> None:
    """``frame`` as gzip-compressed, OWASP-safe CSV (every value quoted, empty for missing).

    Written in blocks of ``CSV_BLOCK_ROWS`` rows, each formatted and compressed on one of two
    threads (Arrow's CSV writer and zlib release the GIL) and appended in order as a gzip
    member of its own: one file that gzip, zcat and pandas read as one text, the header first.
    At most ``2 + CSV_BLOCKS_AHEAD`` blocks are in memory at once.
    """
    table = pa.Table.from_pandas(safe_frame(frame), preserve_index=False)

    def block(start: int) -> bytes:
        text = pa.BufferOutputStream()
        options = pa_csv.WriteOptions(quoting_style="all_valid", include_header=start == 0)
        pa_csv.write_csv(table.slice(start, CSV_BLOCK_ROWS), text, write_options=options)
        return gzip.compress(text.getvalue(), compresslevel=GZIP_LEVEL, mtime=0)

    with ThreadPoolExecutor(max_workers=2) as workers:
        pending: deque[Future[bytes]] = deque()
        for start in range(0, max(len(table), 1), CSV_BLOCK_ROWS):  # an empty frame: the header alone
            pending.append(workers.submit(block, start))
            if len(pending) > CSV_BLOCKS_AHEAD:
                handle.write(pending.popleft().result())
        while pending:
            handle.write(pending.popleft().result())


def read_csv_gz(files: RunFiles, name: str) -> pd.DataFrame:
    """A report written by ``write_csv_gz``, as text (for tests and tools)."""
    with files.path(name).open("rb") as handle:
        return pd.read_csv(handle, compression="gzip", dtype=str, keep_default_na=False)


def write_frame_report(files: RunFiles, name: str, frame: pd.DataFrame, *, replace: bool = True) -> str:
    """Any report frame (the backfill's too) as ``name`` (``.csv.gz``), owner-only and OWASP-safe."""
    return files.write_bytes_with(name, lambda handle: write_csv_gz(handle, frame), replace=replace)


def write_plan_reports(files: RunFiles, plan: Plan, reason: str) -> dict[str, str]:
    """``plan.csv.gz`` (what the run would write) and ``issues.csv.gz``; returns their locations."""
    return {
        "plan": write_frame_report(files, PLAN_REPORT, change_report(plan).assign(run_reason=reason)),
        "issues": write_frame_report(files, ISSUES_REPORT, plan.issues),
    }


def changes_report_name(try_number: int, attempt: int = 1) -> str:
    suffix = "" if attempt == 1 else f".{attempt}"
    return f"changes.try-{try_number}{suffix}.csv.gz"


def write_changes_report(files: RunFiles, written: Plan, *, try_number: int, reason: str) -> str:
    """The record of what one apply try committed; call it only after the commit, with what was committed.

    Never overwrites: a second record for the same try (which Airflow does not make) gets
    ``.2``, ``.3`` ... appended. Returns the location.
    """
    frame = change_report(written).assign(run_reason=reason)
    for attempt in range(1, 100):
        try:
            return write_frame_report(files, changes_report_name(try_number, attempt), frame, replace=False)
        except FileExistsError:
            continue
    raise FileExistsError(f"{files.base}: 99 change records for try {try_number} already exist")


def counts_table(
    environment: str,
    counts: Mapping[str, int],
    extra: Mapping[str, int] | None = None,
    categories: tuple[str, ...] = CATEGORIES,
) -> str:
    """A fixed-width table for the task log: categories first, then the other figures."""
    rows = [(category, counts.get(category, 0)) for category in categories]
    rows += list((extra or {}).items())
    title = f"environment {environment}"
    width = max(len(title), *(len(name) for name, _ in rows))
    lines = [f"{title:<{width}}  {'count':>9}", "-" * (width + 11)]
    lines += [f"{name:<{width}}  {value:>9,}" for name, value in rows]
    return "\n".join(lines)
