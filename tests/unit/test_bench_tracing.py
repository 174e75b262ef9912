"""The bench's cut of an apply into phases, from the statements the product sent."""

from __future__ import annotations

import pytest
from bench.tracing import Executed, Trace, apply_phases


def _trace(*steps: tuple[str, str, float, float]) -> Trace:
    return Trace(executed=[Executed(name, sql, start, end, 0) for name, sql, start, end in steps])


def test_optimistic_write_is_stage_then_update() -> None:
    trace = _trace(
        ("load_staged_keys[CognitoID]", "LOAD DATA LOCAL INFILE ...", 1.0, 3.0),
        ("savepoint", "SAVEPOINT before_writes", 3.5, 3.6),
        ("set_keys_as_planned_table_first[CognitoID]", "UPDATE `Users` u STRAIGHT_JOIN ...", 3.6, 12.0),
        ("inserts_taken", "SELECT ... FOR UPDATE", 12.0, 12.5),  # a locking read after the writes: still update
        ("commit", "COMMIT", 12.5, 13.0),
    )
    phases = apply_phases(trace, "Users", started=0.0, ended=13.0)
    assert phases == pytest.approx({"stage": 3.5, "drift": 0.0, "checks": 0.0, "update": 9.5, "fallback": 0.0})


def test_refused_optimistic_write_is_fallback_and_the_careful_path_is_cut_as_before() -> None:
    trace = _trace(
        ("savepoint", "SAVEPOINT before_writes", 2.0, 2.1),
        ("set_keys_as_planned[Email]", "UPDATE sync_staged_emails s STRAIGHT_JOIN `Users` u ...", 2.1, 4.0),
        ("rollback_to_savepoint", "ROLLBACK TO SAVEPOINT before_writes", 4.0, 5.0),
        ("lock_staged_keys[Email]", "SELECT ... FOR UPDATE", 5.5, 6.0),
        ("held_by_other_rows[Email]", "SELECT s.UserID ...", 6.0, 7.0),
        ("set_keys[Email]", "UPDATE sync_staged_emails s STRAIGHT_JOIN `Users` u ...", 7.0, 8.0),
    )
    phases = apply_phases(trace, "Users", started=0.0, ended=9.0)
    # stage: 0-2 before the savepoint and 5-5.5 after the rollback; the refused attempt 2-5 is fallback.
    assert phases == pytest.approx({"stage": 2.5, "drift": 0.5, "checks": 1.0, "update": 2.0, "fallback": 3.0})
    assert sum(phases.values()) == pytest.approx(9.0)


def test_nothing_sent_is_all_stage() -> None:
    phases = apply_phases(Trace(), "Users", started=0.0, ended=0.25)
    assert phases == pytest.approx({"stage": 0.25, "drift": 0.0, "checks": 0.0, "update": 0.0, "fallback": 0.0})
