"""extract.pool_table / table_frame: ListUsers pages become Arrow columns as they come, with the same values."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pyarrow as pa
import pytest

from identity_sync import extract
from identity_sync.extract import RECORD_COLUMNS, pool_frame, records_frame
from identity_sync.matching import POOL_COLUMNS

ATTRIBUTE = "custom:internal_user_id"


def _user(n: int, **extra: Any) -> dict[str, Any]:
    attributes = [
        {"Name": "sub", "Value": f"sub-{n}"},
        {"Name": "email", "Value": f" User{n}@Example.ORG "},
        {"Name": "email_verified", "Value": "True" if n % 2 else "false"},
        {"Name": ATTRIBUTE, "Value": f"id-{n}"},
        {"Name": "given_name", "Value": f"G{n}"},
    ]
    return {"Username": f"u{n}", "UserStatus": "CONFIRMED", "Enabled": n % 3 != 0, "Attributes": attributes, **extra}


def test_pages_become_the_same_frame_across_chunk_boundaries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(extract, "CHUNK_USERS", 3)
    users = [_user(n) for n in range(10)]
    table = extract.pool_table(iter(users), ATTRIBUTE)
    assert table.num_rows == 10 and table.column("sub").num_chunks == 4  # 3 + 3 + 3 + 1
    frame = extract.table_frame(table)
    expected = records_frame(
        (f"sub-{n}", f"u{n}", f" User{n}@Example.ORG ", f"id-{n}", "CONFIRMED", n % 3 != 0, n % 2 == 1, f"G{n}", None)
        for n in range(10)
    )
    assert list(frame.columns) == POOL_COLUMNS
    pd.testing.assert_frame_equal(frame, expected)
    assert frame["email_norm"].tolist() == [f"user{n}@example.org" for n in range(10)]


def test_strings_stay_in_arrow() -> None:
    frame = pool_frame([_user(1), _user(2)], ATTRIBUTE)
    for column in POOL_COLUMNS:
        if column not in ("enabled", "email_verified"):
            assert frame[column].dtype == pd.StringDtype("pyarrow"), column
    assert frame["enabled"].dtype == bool and frame["email_verified"].dtype == bool


def test_no_users_give_an_empty_frame_of_every_column() -> None:
    frame = pool_frame([], ATTRIBUTE)
    assert list(frame.columns) == POOL_COLUMNS and len(frame) == 0


def test_passes_merge_to_one_row_per_sub_with_the_last_values() -> None:
    first = extract.pool_table(iter([_user(1), _user(2)]), ATTRIBUTE)
    second = extract.pool_table(iter([_user(2, UserStatus="RESET_REQUIRED"), _user(3)]), ATTRIBUTE)
    merged = extract._merged([first, second])
    assert isinstance(merged, pa.Table) and merged.column_names == RECORD_COLUMNS
    rows = merged.to_pandas().set_index("sub")
    assert sorted(rows.index) == ["sub-1", "sub-2", "sub-3"]
    assert rows.loc["sub-2", "status"] == "RESET_REQUIRED"
