"""The tab-separated file LOAD DATA reads: the plain (Arrow CSV) writer and the escaping one agree."""

from __future__ import annotations

import io

import pandas as pd
import pytest

from identity_sync import staging
from identity_sync.staging import tsv_text, write_tsv


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
