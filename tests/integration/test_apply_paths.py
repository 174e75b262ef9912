"""The apply's two paths on MariaDB: the optimistic write, and the careful path it falls back to.

The optimistic write (compare-and-set UPDATEs after a savepoint, then the INSERT) is taken
when every staged row is exactly as planned; anything else is undone to the savepoint and
the careful path (lock, settle, collisions, clears, writes) decides. Each fallback trigger
is run twice on identical tables, once as the product runs it and once with the careful path
forced, and must end identically: the same result, the same conflicts, the same error, the
same rows (AUTO_INCREMENT values included).
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable
from typing import Any

import pandas as pd
import pytest
from bench.tracing import Trace, TracedConnection, statement_names

from identity_sync.apply_conflicts import reason
from identity_sync.reconcile import Plan, plan_changes
from identity_sync.sql import MYSQL
from identity_sync.table import PlanDriftError, UniqueKeyViolationError, UsersTable
from tests.conftest import InBackground, TableUnderTest, mysql_connect
from tests.integration.test_load import (
    MIXED_EXPECTED,
    MIXED_POOL,
    change,
    contents,
    hand_plan,
    iid,
    new_row,
    pool,
    refuse_inserts,
    seed_mixed,
    update,
)

pytestmark = pytest.mark.mariadb

CAREFUL_ONLY = (
    "lock_staged_keys",
    "unsettled_keys",
    "held_by_other_rows",
    "count_planned_twice",
    "inserts_held_by_rows",
)


def plan_for(table: TableUnderTest, users_pool: pd.DataFrame, stale_policy: str = "keep") -> Plan:
    users = table.users_table()
    try:
        return plan_changes(users_pool, users.read(), stale_policy)
    finally:
        users.connection.close()


def names_sent(trace: Trace) -> list[str]:
    """The include/sql file of each statement sent (bench/tracing's names without ``[column]`` or ``#n``)."""
    return [re.sub(r"(\[\w+\]|#\d+)$", "", item.name) for item in trace.executed]


Scenario = Callable[[TableUnderTest], Any]  # seeds the table, returns the plan (after any drift it makes)


def outcome(scenario: Scenario, careful_only: bool, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Run ``scenario`` on a fresh table; what the apply returned or raised, the rows after, what it sent."""
    table = TableUnderTest(mysql_connect, MYSQL, f"Users_{uuid.uuid4().hex[:12]}")
    try:
        plan = scenario(table)
        trace = Trace()
        connection = TracedConnection(mysql_connect(), trace, statement_names(MYSQL, table.name))
        users = UsersTable(connection, MYSQL, table.name, table.lock_name)
        with monkeypatch.context() as patch:
            if careful_only:
                patch.setattr(UsersTable, "_optimistic_fits", lambda self, cursor, work: False)
            try:
                result = users.apply(plan)
                got: Any = (result.as_dict(), _conflicts(result.conflicts))
            except Exception as exc:
                got = (type(exc).__name__, str(exc).replace(table.name, "<table>"))
            finally:
                connection.close()
        return {"got": got, "rows": contents(table), "sent": names_sent(trace)}
    finally:
        table.drop()


def _conflicts(frame: pd.DataFrame) -> list[tuple[Any, ...]]:
    return sorted(
        (str(u) if pd.notna(u) else str(i), str(r))
        for u, i, r in zip(frame["UserID"], frame["InternalUserID"], frame["reason"], strict=True)
    )


def both_ways(scenario: Scenario, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The product's outcome, after checking it equals the careful path's on an identical table."""
    product = outcome(scenario, careful_only=False, monkeypatch=monkeypatch)
    careful = outcome(scenario, careful_only=True, monkeypatch=monkeypatch)
    assert product["got"] == careful["got"]
    assert product["rows"] == careful["rows"]
    assert "savepoint" not in careful["sent"]
    return product


def fell_back(sent: list[str]) -> bool:
    """The optimistic write was tried, undone, and the careful path ran after it."""
    return (
        "savepoint" in sent
        and "rollback_to_savepoint" in sent
        and sent.index("rollback_to_savepoint") < sent.index("lock_staged_keys")
    )


# -- the optimistic write, taken --------------------------------------------------------------


def relink_everyone(table: TableUnderTest) -> Any:
    n = 200
    table.insert([(iid(i), f"prod-{i}", f"user{i}@example.com") for i in range(n)])
    return plan_for(table, pool(*[(f"dev-{i}", f"user{i}@example.com", iid(i)) for i in range(n)]))


def test_a_clean_relink_is_written_optimistically_with_no_separate_check(monkeypatch: pytest.MonkeyPatch) -> None:
    run = both_ways(relink_everyone, monkeypatch)

    assert run["got"][0]["cognito_ids_set"] == 200 and run["got"][1] == []
    assert run["sent"].count("set_keys_as_planned_table_first") == 1
    assert "rollback_to_savepoint" not in run["sent"]
    assert not set(CAREFUL_ONLY) & set(run["sent"]) and "unsettled_inserts" not in run["sent"]
    assert [r[2] for r in run["rows"]] == [f"dev-{i}" for i in range(200)]


def mixed(table: TableUnderTest) -> Any:
    seed_mixed(table)
    return plan_for(table, MIXED_POOL, "clear")


def test_updates_and_inserts_are_written_optimistically(monkeypatch: pytest.MonkeyPatch) -> None:
    """The inserts' own checks (ids and keys as the table stands after the UPDATEs) replace the careful path's."""
    run = both_ways(mixed, monkeypatch)

    assert run["rows"] == MIXED_EXPECTED
    assert "rollback_to_savepoint" not in run["sent"] and not set(CAREFUL_ONLY) & set(run["sent"])
    assert {"set_keys_as_planned", "unsettled_inserts", "inserts_taken", "insert_staged_rows"} <= set(run["sent"])


def insert_takes_a_freed_email(table: TableUnderTest) -> Any:
    table.insert([(iid(1), "sub-1", "old@example.com")])
    return hand_plan(
        [change(1, iid(1), "Email", "old@example.com", "moved@example.com")],
        [new_row(iid(2), "sub-2", "OLD@example.com")],
    )


def test_an_insert_taking_a_value_an_update_frees_is_written_optimistically(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    run = both_ways(insert_takes_a_freed_email, monkeypatch)

    assert run["got"][0]["rows_inserted"] == 1 and "rollback_to_savepoint" not in run["sent"]
    assert [r[3] for r in run["rows"]] == ["moved@example.com", "OLD@example.com"]


# -- each fallback trigger ends exactly as the careful path alone ------------------------------


def retried_after_commit(table: TableUnderTest) -> Any:
    plan = mixed(table)
    users = table.users_table()
    try:
        users.apply(plan)
    finally:
        users.connection.close()
    return plan


def test_a_retry_after_our_own_commit_falls_back_and_writes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    run = both_ways(retried_after_commit, monkeypatch)

    assert run["got"][0]["already_applied"] is True and run["got"][0]["rows_updated"] == 0
    assert fell_back(run["sent"])


def drifted(table: TableUnderTest) -> Any:
    plan = mixed(table)
    update(table, "Email = {p}", 2, "BOB@example.com")
    return plan


def test_drift_falls_back_and_is_refused_with_the_same_message(monkeypatch: pytest.MonkeyPatch) -> None:
    run = both_ways(drifted, monkeypatch)

    assert run["got"][0] == PlanDriftError.__name__ and "1 rows: Email changed" in run["got"][1]
    assert fell_back(run["sent"])


def sharp_s_twin(table: TableUnderTest) -> Any:
    table.insert([(iid(1), "sub-1", "strase@example.com"), (iid(2), "sub-2", "two@example.com")])
    table.insert([(iid(3), "sub-3", "3@x.org")])
    return hand_plan(
        [
            change(2, iid(2), "Email", "two@example.com", "straße@example.com"),
            change(3, iid(3), "CognitoID", "sub-3", "sub-3-dev"),
        ]
    )


def test_a_collation_twin_is_refused_by_the_unique_index_and_becomes_the_same_conflict(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    run = both_ways(sharp_s_twin, monkeypatch)

    assert run["got"][1] == [("2", reason("held", "Email"))]
    assert fell_back(run["sent"])


def chain_under_the_collation(table: TableUnderTest) -> Any:
    """Row 1 takes a value equal to row 2's under utf8mb4_general_ci (ß = s), not in lower case, while row 2
    moves on: a chain the path chooser does not see, refused mid-UPDATE by the unique index."""
    table.insert([(iid(1), "sub-1", "a@example.com"), (iid(2), "sub-2", "s@example.com")])
    return hand_plan(
        [
            change(1, iid(1), "Email", "a@example.com", "ß@example.com"),
            change(2, iid(2), "Email", "s@example.com", "t@example.com"),
        ]
    )


def test_a_chain_refused_mid_update_falls_back_and_is_cleared_then_set(monkeypatch: pytest.MonkeyPatch) -> None:
    run = both_ways(chain_under_the_collation, monkeypatch)

    assert run["got"][0]["emails_set"] == 2 and run["got"][1] == []
    assert [r[3] for r in run["rows"]] == ["ß@example.com", "t@example.com"]
    assert fell_back(run["sent"]) and "clear_keys" in run["sent"]


def plain_swap(table: TableUnderTest) -> Any:
    table.insert([(iid(1), "sub-a", "a@example.com"), (iid(2), "sub-b", "b@example.com")])
    return plan_for(table, pool(("sub-b", "a@example.com", iid(1)), ("sub-a", "b@example.com", iid(2))))


def test_a_swap_seen_in_the_plan_goes_the_careful_way_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    run = both_ways(plain_swap, monkeypatch)

    assert run["got"][0]["cognito_ids_set"] == 2 and "savepoint" not in run["sent"]
    assert [r[2] for r in run["rows"]] == ["sub-b", "sub-a"]


def planned_twice(table: TableUnderTest) -> Any:
    table.insert([(iid(1), "sub-1", "one@example.com"), (iid(2), "sub-2", "two@example.com")])
    return hand_plan(
        [
            change(1, iid(1), "Email", "one@example.com", "same@example.com"),
            change(2, iid(2), "Email", "two@example.com", "SAME@example.com"),
        ],
        [new_row(iid(3), "sub-3", "same@Example.com"), new_row(iid(4), "sub-4", "four@example.com")],
    )


def test_values_planned_twice_fall_back_and_are_the_same_conflicts(monkeypatch: pytest.MonkeyPatch) -> None:
    run = both_ways(planned_twice, monkeypatch)

    assert run["got"][0]["rows_inserted"] == 1 and len(run["got"][1]) == 3
    assert fell_back(run["sent"])


def insert_held_elsewhere(table: TableUnderTest) -> Any:
    table.insert([(iid(1), "sub-1", "bob@example.com"), (iid(2), "sub-2", "carol@example.com")])
    return hand_plan(
        [change(2, iid(2), "CognitoID", "sub-2", "sub-2-dev")],
        [new_row(iid(3), "sub-3", "Bob@Example.com"), new_row(iid(4), "sub-4", "d@example.com")],
    )


def test_an_insert_whose_key_a_row_holds_falls_back_before_spending_an_auto_increment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    run = both_ways(insert_held_elsewhere, monkeypatch)  # the rows compare with their UserIDs

    assert run["got"][1] == [(iid(3), reason("held", "Email"))]
    assert run["rows"][-1][:2] == (3, iid(4))
    assert fell_back(run["sent"]) and "insert_staged_rows" not in run["sent"][: run["sent"].index("lock_staged_keys")]


def insert_id_appeared(table: TableUnderTest) -> Any:
    table.insert([(iid(1), "sub-1", "one@example.com")])
    plan = hand_plan([change(1, iid(1), "CognitoID", "sub-1", "sub-1-dev")], [new_row(iid(5), "sub-5", "e@x.org")])
    table.insert([(iid(5).upper(), "someone", "else@example.com")])
    return plan


def test_an_insert_whose_id_appeared_falls_back_and_is_drift(monkeypatch: pytest.MonkeyPatch) -> None:
    run = both_ways(insert_id_appeared, monkeypatch)

    assert run["got"][0] == PlanDriftError.__name__ and "InternalUserIDs to insert appeared" in run["got"][1]
    assert fell_back(run["sent"])


def insert_refused_by_a_trigger(table: TableUnderTest) -> Any:
    table.insert([(iid(1), "sub-a", "a@example.com")])
    refuse_inserts(table)
    return hand_plan([change(1, iid(1), "CognitoID", "sub-a", "sub-z")], [new_row(iid(9), "sub-9", "x@example.com")])


def test_a_duplicate_key_error_of_the_insert_falls_back_and_is_raised_as_before(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    run = both_ways(insert_refused_by_a_trigger, monkeypatch)

    assert run["got"][0] == UniqueKeyViolationError.__name__ and "Email_UNIQUE" in run["got"][1]
    assert "secret@" not in run["got"][1]
    assert fell_back(run["sent"])
    assert [r[2] for r in run["rows"]] == ["sub-a"]


def without_the_email_index(table: TableUnderTest) -> Any:
    table.execute(f"ALTER TABLE {MYSQL.identifier(table.name)} DROP INDEX Email_UNIQUE")
    return mixed(table)


def test_without_a_unique_index_on_a_written_key_the_careful_path_runs_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    run = both_ways(without_the_email_index, monkeypatch)

    assert run["rows"] == MIXED_EXPECTED
    assert "savepoint" not in run["sent"] and "lock_staged_keys" in run["sent"]


# -- the compare-and-set reads the current row, not a snapshot ----------------------------------


def test_a_write_committed_while_the_optimistic_update_waits_for_its_row_is_drift_never_overwritten() -> None:
    """Another session changes row 2's e-mail and holds it uncommitted; the apply's UPDATE waits for that
    row, then compares with the committed value (a locking read), so the count is short: careful path,
    drift, nothing written, the other session's value kept."""
    table = TableUnderTest(mysql_connect, MYSQL, f"Users_{uuid.uuid4().hex[:12]}")
    try:
        seed_mixed(table)
        plan = plan_for(table, MIXED_POOL, "clear")
        other = mysql_connect()
        other_cursor = other.cursor()
        other_cursor.execute("START TRANSACTION")
        other_cursor.execute(f"UPDATE {MYSQL.identifier(table.name)} SET Email = %s WHERE UserID = 2", ("app@x.org",))
        users = table.users_table()
        applying = InBackground(lambda: users.apply(plan))
        wait_for_a_waiting_update(table.name)
        other.commit()
        errors = applying.join()
        users.connection.close()
        other.close()

        assert len(errors) == 1 and isinstance(errors[0], PlanDriftError), errors
        assert "1 rows: Email changed" in str(errors[0])
        rows = contents(table)
        assert rows[1][3] == "app@x.org" and [r[2] for r in rows[:4]] == ["prod-sub-1", "sub-2", "sub-3", "prod-sub-4"]
        assert len(rows) == 4  # the insert was rolled back with everything else
    finally:
        table.drop()


def wait_for_a_waiting_update(name: str, timeout: float = 30) -> None:
    watcher = mysql_connect()
    try:
        cursor = watcher.cursor()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            cursor.execute(
                "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO LIKE %s AND INFO LIKE %s",
                ("UPDATE%", f"%{name}%"),
            )
            if cursor.fetchone()[0]:
                time.sleep(0.2)  # it has started; give it time to reach row 2's lock
                return
            time.sleep(0.02)
        raise AssertionError("the apply never reached its UPDATE")
    finally:
        watcher.close()


def sets_the_value_it_holds(table: TableUnderTest) -> Any:
    table.insert([(iid(1), "sub-1", "one@example.com"), (iid(2), "sub-2", "two@example.com")])
    return hand_plan(
        [
            change(1, iid(1), "CognitoID", "sub-1", "sub-1"),  # nothing to change: a plan never asks this
            change(2, iid(2), "CognitoID", "sub-2", "sub-2-dev"),
        ]
    )


def test_a_change_to_the_value_a_row_holds_goes_the_careful_way_and_ends_as_it_always_did(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    run = both_ways(sets_the_value_it_holds, monkeypatch)

    assert "savepoint" not in run["sent"]
    assert run["got"][0] == "RuntimeError" and "1 rows written, 2 expected" in run["got"][1]
    assert [r[2] for r in run["rows"]] == ["sub-1", "sub-2"]  # rolled back
