"""The tab-separated file LOAD DATA reads: the plain (Arrow CSV) writer and the escaping one agree."""

from __future__ import annotations

import io
import os
import stat
import threading
import time
from typing import Any

import pandas as pd
import pytest

from identity_sync import staging
from identity_sync.staging import Stager, StagingError, tsv_text, write_tsv


def frame(values: list[str | None]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "UserID": pd.array(range(1, len(values) + 1), dtype="int64"),
            "Expected": pd.array([f"id-{k}" for k in range(len(values))], dtype="string"),
            "Value": pd.array(values, dtype="string"),
        }
    )


def written(data: pd.DataFrame) -> bytes:
    out = io.BytesIO()
    write_tsv(data, out)
    return out.getvalue()


def test_plain_values_are_written_unescaped_with_null_as_backslash_n() -> None:
    data = frame(["a@example.com", None, "", "zoë😀", "comma,ok", "O'Brien"])

    assert written(data) == tsv_text(data)
    assert written(data).splitlines()[1] == b"2\tid-1\t\\N"


@pytest.mark.parametrize("odd", ["tab\there", "new\nline", "back\\slash", "\\N", "cr\rhere", 'quote"d', "nul\0"])
def test_a_value_needing_an_escape_takes_the_escaping_writer(odd: str) -> None:
    data = frame(["plain@example.com", odd, None])

    assert written(data) == tsv_text(data)
    assert written(data).count(b"\n") == 3  # one line per row: nothing raw inside a value


def test_the_escaping_writer_goes_a_slice_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(staging, "TSV_SLICE_ROWS", 2)
    data = frame(["a\tb", "c", None, "d\\e", "f"])

    assert written(data) == tsv_text(data)


def test_the_plain_writer_goes_a_batch_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(staging, "TSV_BATCH_ROWS", 2)
    data = frame([f"user{k}@example.com" if k % 3 else None for k in range(7)])

    assert written(data) == tsv_text(data)


def test_an_empty_frame_writes_nothing() -> None:
    assert written(frame([])) == b""


# -- LOAD DATA from a named pipe: the feeding thread never outlives the statement --------------


class PipeCursor:
    """Stands in for a MySQLdb cursor: ``read`` decides what its LOAD DATA does with the pipe."""

    def __init__(self, read: Any) -> None:
        self.read = read
        self.rowcount = 0
        self.seen: list[bytes] = []
        self.modes: list[int] = []
        self.kept: list[Any] = []

    def execute(self, sql: str, params: Any = ()) -> None:
        if sql.startswith("LOAD"):
            self.modes.append(os.stat(params[0]).st_mode)
            self.rowcount = self.read(self, params[0])

    def fetchone(self) -> tuple[int]:
        return (0,)


def read_all(cursor: PipeCursor, path: str) -> int:
    with open(path, "rb") as pipe:
        cursor.seen.append(pipe.read())
    return cursor.seen[-1].count(b"\n")


def read_a_little(cursor: PipeCursor, path: str) -> int:
    with open(path, "rb") as pipe:
        pipe.read(10)
    return 0


def open_and_keep(cursor: PipeCursor, path: str) -> int:
    cursor.kept.append(open(path, "rb"))  # noqa: SIM115 - left open past the statement on purpose
    return 0


def refuse(cursor: PipeCursor, path: str) -> int:
    raise RuntimeError("the server refused LOCAL INFILE")


def many_rows() -> pd.DataFrame:
    return frame([f"user{k}@example.com" for k in range(100_000)])


def test_the_rows_go_through_an_owner_only_pipe_that_is_removed_after() -> None:
    cursor = PipeCursor(read_all)
    data = many_rows()

    Stager(bulk=True, warning_count_sql="SELECT 0").stage(cursor, data, "LOAD", "INSERT")

    assert cursor.seen == [tsv_text(data)]
    assert stat.S_ISFIFO(cursor.modes[0]) and stat.S_IMODE(cursor.modes[0]) == 0o600
    assert not [t for t in threading.enumerate() if t.name == "identity-sync-staging"]


@pytest.mark.parametrize("read", [read_a_little, open_and_keep, refuse])
def test_a_load_that_stops_reading_or_never_reads_ends_with_its_error_and_no_thread_left(read: Any) -> None:
    cursor = PipeCursor(read)
    started = time.monotonic()

    with pytest.raises((StagingError, RuntimeError)):
        Stager(bulk=True, warning_count_sql="SELECT 0").stage(cursor, many_rows(), "LOAD", "INSERT")

    for kept in cursor.kept:
        kept.close()
    assert time.monotonic() - started < 30
    assert not [t for t in threading.enumerate() if t.name == "identity-sync-staging"]
