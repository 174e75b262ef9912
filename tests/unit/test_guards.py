"""guards.guard_refusals: the mass-change and unrelated-pool refusals, and what lifts each."""

from __future__ import annotations

import pandas as pd
import pytest

from identity_sync.config import Environment
from identity_sync.guards import MIN_MATCH_SHARE, guard_refusals, tripped_guards
from identity_sync.reconcile import CHANGE_COLUMNS, INSERT_COLUMNS, SYNC_ISSUE_COLUMNS, Plan, plan_changes

ENV = Environment(
    name="qa-east",
    aws_conn_id="aws_qa",
    user_pool_id="us-east-2_QaPool001",
    db_conn_id="users_db_qa",
    users_table="AppUsers",
    max_change_ratio=0.05,
)


def plan_with(*, table_rows: int, cognito_id_changes: int, pool_users: int, matched_pool_users: int) -> Plan:
    """A plan carrying only the metrics the guards read."""
    return Plan(
        changes=pd.DataFrame(columns=CHANGE_COLUMNS),
        inserts=pd.DataFrame(columns=INSERT_COLUMNS),
        issues=pd.DataFrame(columns=SYNC_ISSUE_COLUMNS),
        metrics={
            "pool_users": pool_users,
            "table_rows": table_rows,
            "matched_pool_users": matched_pool_users,
            "cognito_id_changes": cognito_id_changes,
            "needs_backfill": 0,
            "rows_to_write": cognito_id_changes,
        },
    )


def refusals(plan: Plan, env: Environment = ENV, *, after_restore: bool = False, allow: bool = False) -> list[str]:
    return guard_refusals(plan, env, after_restore=after_restore, allow_mass_change=allow)


@pytest.mark.parametrize("changes", [0, 1, 4, 5])
def test_ratio_at_or_below_the_limit_passes(changes: int) -> None:
    plan = plan_with(table_rows=100, cognito_id_changes=changes, pool_users=100, matched_pool_users=100)

    assert refusals(plan) == []


@pytest.mark.parametrize("changes", [6, 50, 100])
def test_ratio_above_the_limit_refuses(changes: int) -> None:
    plan = plan_with(table_rows=100, cognito_id_changes=changes, pool_users=100, matched_pool_users=100)

    (message,) = refusals(plan)
    assert "'qa-east'" in message
    assert f"{changes} of 100 rows" in message
    assert "max_change_ratio 5.0%" in message
    assert "after_restore=true" in message
    assert "allow_mass_change=true" in message


def test_ratio_limit_follows_the_environment() -> None:
    plan = plan_with(table_rows=10, cognito_id_changes=3, pool_users=10, matched_pool_users=10)
    loose = Environment(name="dev", aws_conn_id="a", user_pool_id="us-east-2_X1", db_conn_id="d", max_change_ratio=0.3)
    strict = Environment(name="dev", aws_conn_id="a", user_pool_id="us-east-2_X1", db_conn_id="d", max_change_ratio=0.0)

    assert refusals(plan, loose) == []
    assert len(refusals(plan, strict)) == 1
    assert refusals(plan_with(table_rows=10, cognito_id_changes=0, pool_users=10, matched_pool_users=10), strict) == []


def test_after_restore_lifts_only_the_ratio_guard() -> None:
    everything_changes = plan_with(table_rows=100, cognito_id_changes=100, pool_users=100, matched_pool_users=100)
    assert len(refusals(everything_changes)) == 1
    assert refusals(everything_changes, after_restore=True) == []

    unrelated = plan_with(table_rows=100, cognito_id_changes=100, pool_users=100, matched_pool_users=10)
    assert len(refusals(unrelated)) == 2
    (message,) = refusals(unrelated, after_restore=True)
    assert "look unrelated" in message


@pytest.mark.parametrize(("matched", "refused"), [(49, True), (50, False), (100, False), (0, True)])
def test_unrelated_pool_guard_trips_below_half_matched_even_after_restore(matched: int, refused: bool) -> None:
    assert MIN_MATCH_SHARE == 0.5
    plan = plan_with(table_rows=100, cognito_id_changes=0, pool_users=100, matched_pool_users=matched)

    for after_restore in (False, True):
        result = refusals(plan, after_restore=after_restore)
        if refused:
            (message,) = result
            assert "'qa-east'" in message
            assert f"only {matched} of 100 pool users" in message
            assert "AppUsers" in message
            assert "user_pool_id" in message
            assert "db_conn_id" in message
        else:
            assert result == []


def test_allow_mass_change_lifts_both_guards() -> None:
    plan = plan_with(table_rows=100, cognito_id_changes=100, pool_users=100, matched_pool_users=1)
    assert len(refusals(plan)) == 2

    assert refusals(plan, allow=True) == []
    assert refusals(plan, after_restore=True, allow=True) == []


def test_empty_pool_with_a_non_empty_table_refuses() -> None:
    plan = plan_with(table_rows=10, cognito_id_changes=0, pool_users=0, matched_pool_users=0)

    for after_restore in (False, True):
        (message,) = refusals(plan, after_restore=after_restore)
        assert "'qa-east'" in message
        assert "only 0 of 0 pool users (0.0%)" in message
        assert "(10 rows)" in message
    assert refusals(plan, allow=True) == []


def test_empty_table_with_an_empty_pool_passes() -> None:
    assert refusals(plan_with(table_rows=0, cognito_id_changes=0, pool_users=0, matched_pool_users=0)) == []


def test_new_pool_against_an_empty_table_refuses() -> None:
    """Every user would be inserted: nothing matches, which looks like a wrong table."""
    plan = plan_with(table_rows=0, cognito_id_changes=0, pool_users=5, matched_pool_users=0)

    (message,) = refusals(plan, after_restore=True)
    assert "only 0 of 5 pool users" in message


def _uid(n: int) -> str:
    return f"{n:08x}-0000-4000-8000-{n:012x}"


def _frames(n: int, sub_prefix: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    pool = pd.DataFrame(
        {
            "sub": [f"{sub_prefix}-{i}" for i in range(n)],
            "username": [f"user-{i}" for i in range(n)],
            "email": [f"u{i}@x.io" for i in range(n)],
            "email_norm": [f"u{i}@x.io" for i in range(n)],
            "internal_user_id": [_uid(i + 1) for i in range(n)],
            "status": "CONFIRMED",
            "enabled": True,
            "given_name": "G",
            "family_name": "F",
        }
    ).astype({c: "string" for c in ("sub", "username", "email", "email_norm", "internal_user_id")})
    table = pd.DataFrame(
        {
            "UserID": pd.Series(range(1, n + 1), dtype="int64"),
            "InternalUserID": pd.Series([_uid(i + 1) for i in range(n)], dtype="string"),
            "CognitoID": pd.Series([f"prod-{i}" for i in range(n)], dtype="string"),
            "Email": pd.Series([f"u{i}@x.io" for i in range(n)], dtype="string"),
        }
    )
    return pool, table


def test_a_restore_plan_trips_the_ratio_guard_until_marked_after_restore() -> None:
    pool, table = _frames(20, "dev")
    plan = plan_changes(pool, table)
    assert plan.metrics["cognito_id_changes"] == 20

    (message,) = refusals(plan)
    assert "20 of 20 rows (100.0%)" in message
    assert refusals(plan, after_restore=True) == []


def test_allow_mass_change_lifts_the_refusal_but_the_tripped_guards_stay_on_record() -> None:
    plan = plan_with(table_rows=100, cognito_id_changes=90, pool_users=100, matched_pool_users=10)

    assert refusals(plan, allow=True) == []
    tripped = tripped_guards(plan, ENV, after_restore=False)
    assert len(tripped) == 2 and tripped == refusals(plan)
