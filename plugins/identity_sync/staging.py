"""Rows into the apply's temporary staging tables: in bulk where the server allows it.

MySQL/MariaDB: ``LOAD DATA LOCAL INFILE`` from a tab-separated stream that only its owner
can read (a named pipe, mode 0600, filled while the client reads it) and that is removed as
soon as the statement ends. It needs
``local_infile`` on the server and on the client (``MySQLdb.connect(local_infile=1)``;
the Airflow connection's extra ``{"local_infile": true}``). Where either refuses, the
rows go through ``executemany`` instead; the refusal is logged once per process.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import tempfile
import threading
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

log = logging.getLogger(__name__)

EXECUTEMANY_BATCH = 50_000  # bounds the memory of the Python tuples, not the transaction
# MariaDB 4166, MySQL 1148/3948: local infile disabled; client 2068: file request rejected.
LOCAL_INFILE_REFUSED = {1148, 2068, 3948, 4166}
PIPE_BYTES = 1 << 20  # the named pipe's buffer
TSV_BATCH_ROWS = 65_536  # rows the plain writer formats at a time
TSV_SLICE_ROWS = 100_000  # rows the escaping writer builds at a time
_STRUCTURAL = (b"\\", b"\t", b"\n", b"\r", b"\0", b'"')
_ESCAPES = (("\\", "\\\\"), ("\t", "\\t"), ("\n", "\\n"), ("\r", "\\r"), ("\0", "\\0"))
_refusal_logged = False


class StagingError(RuntimeError):
    """The server did not stage every row exactly as sent; the apply is rolled back."""


def tsv_text(frame: pd.DataFrame) -> bytes:
    """``LOAD DATA``'s default format in UTF-8: tab-separated, backslash escapes, ``\\N`` for NULL.

    Built column-wise in Arrow, every value escaped: the careful form, for values that hold a
    character the format has to escape (``write_tsv`` uses it only for those).
    """
    if frame.empty:
        return b""
    columns = []
    for name in frame.columns:
        column = pa.array(frame[name], from_pandas=True).cast(pa.string())
        if not pd.api.types.is_integer_dtype(frame[name].dtype):
            for raw, escaped in _ESCAPES:
                column = pc.replace_substring(column, raw, escaped)
        columns.append(pc.fill_null(column, "\\N"))
    lines = pc.binary_join_element_wise(*columns, "\t") if len(columns) > 1 else columns[0]
    whole = pc.binary_join(pa.ListArray.from_arrays(pa.array([0, len(lines)], pa.int32()), lines), "\n")
    return whole[0].as_buffer().to_pybytes() + b"\n"


def _needs_escaping(column: pa.Array | pa.ChunkedArray) -> bool:
    """Whether any value holds a byte the plain writer cannot pass through: a backslash, tab, newline,
    carriage return, NUL (LOAD DATA escapes) or a double quote (Arrow's unquoted CSV refuses it).

    Searches the raw bytes of the values (memchr speed: a few ms per million values); a sliced
    array's unused bytes can only make this say yes, never no.
    """
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        return False
    for chunk in column.chunks if isinstance(column, pa.ChunkedArray) else [column]:
        data = chunk.buffers()[2]
        if data is not None and data.size:
            raw = memoryview(data).tobytes()
            if any(raw.find(byte) >= 0 for byte in _STRUCTURAL):
                return True
    return False


def write_tsv(frame: pd.DataFrame, out: Any) -> None:
    """``frame`` to the binary file ``out`` in ``LOAD DATA``'s default format, in bounded memory.

    When no value needs an escape (the usual case: ids, subs, e-mail addresses), Arrow's CSV
    writer writes the columns as they are, unquoted, tab-separated, NULL as ``\\N``, a batch at
    a time. Otherwise the escaped form of ``tsv_text`` is written, one slice of rows at a time.
    """
    if frame.empty:
        return
    columns = {str(name): pa.array(frame[name], from_pandas=True) for name in frame.columns}
    if any(_needs_escaping(column) for column in columns.values()):
        for start in range(0, len(frame), TSV_SLICE_ROWS):
            out.write(tsv_text(frame.iloc[start : start + TSV_SLICE_ROWS]))
        return
    options = pa_csv.WriteOptions(
        include_header=False, delimiter="\t", null_string="\\N", quoting_style="none", batch_size=TSV_BATCH_ROWS
    )
    pa_csv.write_csv(pa.table(columns), out, options)


def db_rows(frame: pd.DataFrame) -> list[tuple[Any, ...]]:
    """DB-API parameter rows: Python scalars, None for every kind of missing value."""
    plain = frame.astype(object)
    return list(map(tuple, plain.where(frame.notna(), None).to_numpy().tolist()))


def local_infile_refused(exc: BaseException) -> bool:
    code = exc.args[0] if getattr(exc, "args", None) else None
    return type(exc).__name__ in ("OperationalError", "NotSupportedError") and code in LOCAL_INFILE_REFUSED


class Stager:
    """Stages frames through one cursor; remembers a refusal of LOAD DATA LOCAL for its lifetime."""

    def __init__(self, bulk: bool, warning_count_sql: str = "") -> None:
        self.bulk = bulk
        self.warning_count_sql = warning_count_sql
        self.bulk_loads = 0

    def stage(self, cursor: Any, frame: pd.DataFrame, load_sql: str | None, insert_sql: str) -> None:
        if frame.empty:
            return
        if self.bulk and load_sql is not None:
            try:
                self._load(cursor, frame, load_sql)
                self.bulk_loads += 1
                return
            except Exception as exc:
                if not local_infile_refused(exc):
                    raise
                self.bulk = False
                _log_refusal(exc)
        for start in range(0, len(frame), EXECUTEMANY_BATCH):
            cursor.executemany(insert_sql, db_rows(frame.iloc[start : start + EXECUTEMANY_BATCH]))

    def _load(self, cursor: Any, frame: pd.DataFrame, load_sql: str) -> None:
        """LOAD DATA from a named pipe that a thread fills while the client sends it: writing the rows
        and loading them overlap, and no copy of them lands on disk. The pipe is owner-only (0600,
        in a 0700 folder) and removed when the statement ends."""
        folder = tempfile.mkdtemp(prefix="identity-sync-")  # mode 0700
        path = os.path.join(folder, "staged.tsv")
        os.mkfifo(path, 0o600)
        feeder = _Feeder(path, frame)
        try:
            feeder.start()
            cursor.execute(load_sql, (path,))
            loaded = cursor.rowcount
        finally:
            feeder.finish()
            os.unlink(path)
            os.rmdir(folder)
        feeder.raise_failure()
        cursor.execute(self.warning_count_sql)
        warnings = cursor.fetchone()[0]
        if loaded != len(frame) or warnings:
            # LOCAL implies IGNORE: a duplicate or a truncation is only a warning. Not here.
            raise StagingError(
                f"staging loaded {loaded} of {len(frame)} rows with {warnings} warnings; rolled back, nothing written"
            )


class _Feeder(threading.Thread):
    """Writes ``frame`` into the named pipe at ``path`` once the client opens it to read.

    It never blocks on a pipe nobody opens (a server or client that refuses LOCAL INFILE never
    does): it polls the open without blocking until ``finish``. A reader that stops early
    (the statement failed) ends the writing with a broken pipe, which the statement's own error
    or its row count reports.
    """

    def __init__(self, path: str, frame: pd.DataFrame) -> None:
        super().__init__(name="identity-sync-staging", daemon=True)
        self.path = path
        self.frame = frame
        self.done = threading.Event()
        self.failure: BaseException | None = None

    def run(self) -> None:
        try:
            fd = self._open()
            if fd is None:
                return
            os.set_blocking(fd, True)
            with contextlib.suppress(OSError):  # a bigger pipe: fewer hand-overs (Linux only)
                fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), PIPE_BYTES)
            with os.fdopen(fd, "wb") as out:
                write_tsv(self.frame, out)
        except BrokenPipeError:
            pass
        except BaseException as exc:  # reported by raise_failure in the caller's thread
            self.failure = exc

    def _open(self) -> int | None:
        while not self.done.is_set():
            try:
                return os.open(self.path, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as exc:
                if exc.errno != errno.ENXIO:  # ENXIO: no reader yet
                    raise
            self.done.wait(0.001)
        return None

    def finish(self) -> None:
        """Stop waiting for a reader; if still writing into a pipe no one reads any more, drain it."""
        self.done.set()
        self.join(timeout=1)
        if not self.is_alive():
            return
        fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
        try:
            while self.is_alive():
                try:
                    os.read(fd, PIPE_BYTES)
                except BlockingIOError:
                    self.join(timeout=0.01)
        finally:
            os.close(fd)

    def raise_failure(self) -> None:
        if self.failure is not None:
            raise StagingError(f"writing the staged rows failed: {self.failure!r}") from self.failure


def _log_refusal(exc: BaseException) -> None:
    global _refusal_logged
    level = logging.DEBUG if _refusal_logged else logging.WARNING
    _refusal_logged = True
    log.log(
        level,
        "LOAD DATA LOCAL INFILE refused (error %s): staging with executemany instead, which is slower. "
        'Enable local_infile on the server and the connection\'s extra {"local_infile": true}',
        exc.args[0],
    )
