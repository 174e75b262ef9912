"""The lean plan (issue 9): what the plan task reads, and the shortcuts that must give the same plan.

The shortcuts (one hash pass per key, ``pool_email_shared`` asked only for the users whose
e-mail matters, frames kept whole when a stage keeps every row) are checked against the plain
computation they replace; the plan's behaviour itself is what test_reconcile.py asserts.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from identity_sync.identity import key_codes, normalise_internal_ids, occurrences, shared_values
from identity_sync.matching import POOL_INPUT_COLUMNS, normalise
from identity_sync.reconcile import TABLE_COLUMNS, _SharedEmails, plan_changes
from identity_sync.runfiles import RunFiles
from tests.unit.test_reconcile import U1, U2, U3, U4, _arrow_strings, pool, table, user


def _arrow_backed(frame: pd.DataFrame) -> dict[str, str]:
    """Every text column of ``frame`` that is not an Arrow-backed string (object, numpy str...)."""
    return {
        name: str(dtype)
        for name, dtype in frame.dtypes.items()
        if not (isinstance(dtype, pd.StringDtype) and dtype.storage == "pyarrow")
        and not pd.api.types.is_numeric_dtype(dtype)
        and not pd.api.types.is_bool_dtype(dtype)
        and not isinstance(dtype, pd.CategoricalDtype)
    }


def test_the_plan_task_reads_only_the_snapshot_columns_it_uses_as_arrow_strings(tmp_path: Path) -> None:
    files = RunFiles(f"file://{tmp_path}/run")
    snapshot = pool(user("s1", "A@x.io", U1), user("s2", None)).assign(extra="never read")
    files.write_parquet("pool.parquet", snapshot.drop(columns="email_verified"))  # an optional column missing
    files.write_parquet("table.parquet", table((1, U1, "s1", "a@x.io")).assign(FirstName="Ada"))

    read_pool = files.read_parquet("pool.parquet", POOL_INPUT_COLUMNS)
    read_table = files.read_parquet("table.parquet", TABLE_COLUMNS)

    assert list(read_pool.columns) == [c for c in POOL_INPUT_COLUMNS if c != "email_verified"]
    assert list(read_table.columns) == TABLE_COLUMNS
    assert _arrow_backed(read_pool) == {} and _arrow_backed(read_table) == {}
    p, t = normalise(read_pool, read_table, pool_wide=False)
    assert _arrow_strings(p) == {} and _arrow_strings(t) == {}
    assert _arrow_backed(p[["sub", "username", "email", "email_norm", "raw_id", "iid"]]) == {}


def test_a_saved_plan_loads_with_arrow_strings_and_categories(tmp_path: Path) -> None:
    files = RunFiles(f"file://{tmp_path}/run")
    plan = plan_changes(
        pool(user("s1", "new@x.io", U1), user("s3", "in@x.io", U3), user("s9", "bad@x.io", "bad")),
        table((1, U1, "prod-1", "old@x.io"), (4, U4, "prod-4", "gone@x.io")),
        "clear",
    )
    files.save_plan(plan)

    for loaded in (files.load_plan(), files.load_plan(issues=False)):
        for frame in (loaded.changes, loaded.inserts, loaded.issues):
            assert _arrow_backed(frame) == {}
        assert all(loaded.changes[c].dtype == "category" for c in ("column", "category", "reason"))


def test_normalised_pool_is_the_same_with_or_without_the_pool_wide_columns() -> None:
    users = [user("s1", " A@x.io ", f" {U1.upper()} "), user("s2", "a@x.io"), user("s3", "", "nope"), user("s4")]
    rows = [(1, U1.upper(), "s1", "A@X.IO"), (2, None, None, None)]
    wide, t_wide = normalise(pool(*users), table(*rows))
    lean, t_lean = normalise(pool(*users), table(*rows), pool_wide=False)

    shared = [c for c in wide.columns if c in lean.columns]
    pd.testing.assert_frame_equal(lean[shared], wide[shared])
    pd.testing.assert_frame_equal(t_lean, t_wide)
    assert {"pool_email_shared", "email_refusal"} - set(lean.columns) == {"pool_email_shared", "email_refusal"}


@pytest.mark.parametrize("few", [True, False], ids=["counted-among-holders", "counted-over-the-pool"])
def test_shared_emails_asked_per_subset_equal_shared_values(few: bool) -> None:
    rng = np.random.default_rng(3)
    emails = pd.Series(rng.choice(["a@x", "b@x", "c@x", "d@x", None], size=400), dtype="string")
    everyone = shared_values(emails).to_numpy()
    ask = _SharedEmails(emails)
    for size in (0, 1, 5, 40, 399):
        subset = np.sort(rng.choice(len(emails), size=size, replace=False))
        if not few:
            ask.repeated = None
            ask.emails = emails  # the full count once, then reused
            ask(emails)
        assert ask(emails.iloc[subset]).tolist() == everyone[subset].tolist()


def test_key_codes_equal_exactly_when_the_text_is_equal_across_columns() -> None:
    left = pd.concat([pd.Series(["a", None, "b"], dtype="string"), pd.Series(["c", "a"], dtype="string")])
    right = pd.Series(["b", "B", None, "c", "c"], dtype="string")  # chunked left, plain right

    codes_left, codes_right = key_codes(left.reset_index(drop=True), right)

    values = [*left.tolist(), *right.tolist()]
    codes = [*codes_left.tolist(), *codes_right.tolist()]
    for i, a in enumerate(values):
        assert (codes[i] == -1) == (a is None or a is pd.NA)
        for j, b in enumerate(values):
            if codes[i] >= 0 and codes[j] >= 0:
                assert (codes[i] == codes[j]) == (a == b)
    assert occurrences(codes_right, codes_right).tolist() == [1, 1, 0, 2, 2]
    assert occurrences(np.array([], dtype=np.int64), np.array([], dtype=np.int64)).tolist() == []


def test_canonical_ids_short_cut_gives_the_same_ids() -> None:
    canonical = pd.Series([U1, U2, None], dtype="string")
    mixed = pd.Series([U1, f" {U2.upper()} ", "nope", None, ""], dtype="string")

    def text(ids: pd.Series) -> list[str | None]:
        return [v if isinstance(v, str) else None for v in ids]

    assert text(normalise_internal_ids(canonical)) == [U1, U2, None]
    assert text(normalise_internal_ids(mixed)) == [U1, U2, None, None, None]
