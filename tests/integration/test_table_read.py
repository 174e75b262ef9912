"""UsersTable.read and read_for_backfill on both databases: every row, NULLs kept, the frame's dtypes."""

from __future__ import annotations

import pandas as pd
import pytest

from identity_sync import table as table_module
from tests.conftest import TableUnderTest
from tests.integration.test_load import iid

ROWS = [(iid(1), "sub-1", "a@example.com"), (None, None, "zoë😀@example.com"), (iid(3), "sub-3", None)]


@pytest.mark.parametrize("batch", [2, 50_000])
def test_read_gives_every_row_with_int64_ids_and_arrow_strings(
    any_table: TableUnderTest, batch: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(table_module, "READ_BATCH", batch)  # 2: the rows arrive over several batches
    any_table.insert(ROWS)
    users = any_table.users_table()
    try:
        frame = users.read()
        backfill = users.read_for_backfill()
    finally:
        users.connection.close()

    assert list(frame.columns) == ["UserID", "InternalUserID", "CognitoID", "Email"]
    assert frame["UserID"].dtype == "int64"
    assert all(frame[c].dtype == "string" and frame[c].dtype.storage == "pyarrow" for c in frame.columns[1:])
    assert [tuple(None if pd.isna(v) else v for v in row) for row in frame.itertuples(index=False)] == [
        (k + 1, *row) for k, row in enumerate(ROWS)
    ]
    assert list(backfill.columns) == [*frame.columns, "FirstName", "LastName"]
    assert backfill[list(frame.columns)].equals(frame) and (backfill["FirstName"] == "First").all()
    assert backfill["LastName"].dtype == "string"


def test_read_of_an_empty_table_has_the_columns_and_dtypes(any_table: TableUnderTest) -> None:
    users = any_table.users_table()
    try:
        frame = users.read()
    finally:
        users.connection.close()

    assert frame.empty and list(frame.columns) == ["UserID", "InternalUserID", "CognitoID", "Email"]
    assert frame["UserID"].dtype == "int64" and frame["Email"].dtype == "string"
