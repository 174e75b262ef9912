"""The bench's goal verdicts (bench/results.py): which runs may judge which goals."""

from __future__ import annotations

from typing import Any

from bench import results, tables


def _out(*, default_matrix: bool, minutes: float, extraction_runs: int = 3, stopped: bool = False) -> dict[str, Any]:
    meta = {"total_seconds": minutes * 60, "default_matrix": default_matrix}
    if stopped:
        meta["stopped_early"] = True
    extraction = [
        {"case": "extraction, 16 slice(s), list_users_rps 28", "quota_share": 0.933, "failed_calls": 0}
        for _ in range(extraction_runs)
    ]
    return {"meta": meta, "summary": [], "extraction": extraction}


def _verdict(out: dict[str, Any], prefix: str) -> dict[str, Any]:
    return next(goal for goal in results.goals(out) if goal["goal"].startswith(prefix))


def test_the_time_goal_is_judged_on_the_whole_default_matrix_only() -> None:
    assert _verdict(_out(default_matrix=True, minutes=24.0), "the bench within")["reached"] is True
    assert _verdict(_out(default_matrix=True, minutes=26.0), "the bench within")["reached"] is False
    partial = _verdict(_out(default_matrix=False, minutes=3.0), "the bench within")
    assert partial["reached"] is None
    assert "not shown" in partial["not_judged"]
    stopped = _verdict(_out(default_matrix=True, minutes=3.0, stopped=True), "the bench within")
    assert stopped["reached"] is None


def test_a_partial_run_says_not_shown_in_the_table() -> None:
    text = tables.goals_table(results.goals(_out(default_matrix=False, minutes=3.0)))
    line = next(line for line in text.splitlines() if "the bench within" in line)
    assert "not shown" in line and "reached" not in line


def test_extraction_is_judged_from_three_runs_whatever_the_reconcile_sizes() -> None:
    assert _verdict(_out(default_matrix=False, minutes=1.0), "extraction")["reached"] is True
    one_run = _verdict(_out(default_matrix=False, minutes=1.0, extraction_runs=1), "extraction")
    assert one_run["reached"] is None
