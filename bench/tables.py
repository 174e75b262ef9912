"""The bench's results as Markdown tables: what docs/performance.md is written from."""

from __future__ import annotations

from typing import Any

from bench.results import PHASES, TASKS, find, per_row_bound, ratio


def _m(figure: dict[str, float] | None, spec: str = ".1f") -> str:
    """``median [min-max]``, or a dash."""
    if not figure:
        return "-"
    if figure["min"] == figure["max"]:
        return f"{figure['median']:{spec}}"
    return f"{figure['median']:{spec}} [{figure['min']:{spec}}-{figure['max']:{spec}}]"


def _link(summary_row: dict[str, Any]) -> str:
    rtt = summary_row["link_rtt"]
    if not rtt["added_rtt_ms"]:
        return f"loopback ({rtt['rtt_ms']:.2f} ms)"
    return f"+{rtt['added_rtt_ms']:.2f} ms ({rtt['rtt_ms']:.2f} ms)"


def _places(summary: list[dict[str, Any]]) -> list[tuple[str, int, str]]:
    seen: list[tuple[str, int, str]] = []
    for row in summary:
        key = (row["server"], row["users"], row["link"])
        if key not in seen:
            seen.append(key)
    return seen


def comparison_table(summary: list[dict[str, Any]]) -> str:
    lines = [
        "| server | users | link: added RTT (SELECT 1 median) | post-restore read+plan+apply, s | "
        "per-row, s: sample | per-row, s: every user | x per-row | per-row model, s | x model | "
        "nightly read+plan+apply, s | nightly rows / statements / transactions |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for server, users, link in _places(summary):
        restore = find(summary, server=server, users=users, link=link, case="post-restore")
        nightly = find(summary, server=server, users=users, link=link, case="nightly")
        per_row = find(summary, server=server, users=users, link=link, case="per-row")
        anchor = restore or nightly or per_row
        assert anchor is not None
        sample = per_row and f"{_m(per_row['seconds'])} ({per_row['sample']['median']:,.0f} users)"
        scaled = per_row and (
            _m(per_row["all_users_seconds"], ".0f")
            + (" (scaled)" if per_row["sample"]["median"] < users else " (measured)")
        )
        times = ratio(summary, server, users, link)
        bound = per_row_bound(summary, server, users, link) if link != "loopback" else None
        bound_times = ratio(summary, server, users, link, bound=True) if link != "loopback" else None
        quiet = nightly and (
            f"{nightly['rows_written']['max']:.0f} / {nightly['statements_sent']['max']:.0f} / "
            f"{nightly['transactions']['max']:.0f}"
        )
        lines.append(
            f"| {server} | {users:,} | {_link(anchor)} | {_m(restore and restore['read_plan_apply'])} | "
            f"{sample or '-'} | {scaled or '-'} | {_m(times)} | {_m(bound, '.0f')} | {_m(bound_times)} | "
            f"{_m(nightly and nightly['read_plan_apply'], '.2f')} | "
            f"{quiet or '-'} |"
        )
    return "\n".join(lines)


def phase_table(summary: list[dict[str, Any]], case: str) -> str:
    head = " | ".join(f"{phase}, s" for phase in PHASES)
    peaks = " | ".join(f"peak {task}, MB" for task in TASKS)
    lines = [
        f"| server | users | link | {head} | all tasks, s | {peaks} |",
        "|---|---:|---|" + "---:|" * (len(PHASES) + 1 + len(TASKS)),
    ]
    for row in summary:
        if row["case"] != case:
            continue
        phases = " | ".join(_m(row[phase], ".2f") for phase in PHASES)
        peak = " | ".join(_m(row[f"peak_mb_{task}"], ".0f") for task in TASKS)
        lines.append(
            f"| {row['server']} | {row['users']:,} | {row['link']} | {phases} | {_m(row['all_tasks'])} | {peak} |"
        )
    return "\n".join(lines)


def _markdown(header: list[str], rows: list[list[str]]) -> str:
    """A table; the first column left-aligned, the others right-aligned."""
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def floor_table(summary: list[dict[str, Any]]) -> str:
    header = ["server", "users", "case", "staging (LOAD DATA, 2 columns), s", "UPDATE + COMMIT, s", "rows"]
    rows = [
        [
            row["server"],
            f"{row['users']:,}",
            row["case"],
            _m(row["stage_s"], ".2f"),
            _m(row["update_s"], ".2f"),
            f"{row['rows_written']['median']:,.0f}",
        ]
        for row in summary
        if row["case"].startswith("floor")
    ]
    return _markdown(header, rows)


def extraction_table(records: list[dict[str, Any]]) -> str:
    header = ["case", "seconds", "calls", "calls/s", "of quota", "failed", "complete"]
    rows = [
        [
            r["case"],
            f"{r['seconds']:.1f}",
            str(r["calls"]),
            f"{r['rps']:.1f}",
            f"{r['quota_share']:.2%}",
            str(r["failed_calls"]),
            "every user, once" if r["complete"] else "INCOMPLETE",
        ]
        for r in records
    ]
    return _markdown(header, rows)


def goals_table(goals: list[dict[str, Any]]) -> str:
    verdict = {True: "reached", False: "**NOT reached**", None: "not judged (not measured at 1M)"}
    lines = ["| goal | measured: median [min-max] | |", "|---|---|---|"]
    lines += [f"| {g['goal']} | {g['measured']} | {g.get('not_judged') or verdict[g['reached']]} |" for g in goals]
    return "\n".join(lines)


def render(out: dict[str, Any]) -> str:
    meta = out["meta"]
    head = [
        f"Run {meta['started_utc']} - {meta['finished_utc']} UTC, {meta['total_seconds'] / 60:.1f} min; "
        f"git {meta['git_head'][:12]}"
        + (
            f" plus uncommitted changes to {len(meta['uncommitted_product_files'])} product files"
            if meta["uncommitted_product_files"]
            else ""
        )
        + f"; {meta['cpus']} CPUs, {meta['memory_gib']} GiB; {meta['mariadbd']}; "
        f"load average {meta['loadavg_start'][0]:.1f} at start, {meta['loadavg_end'][0]:.1f} at the end.",
    ]
    parts = ["\n".join(head)]
    if out["summary"]:
        parts += [
            "### Post-restore, per-row and nightly\n\n" + comparison_table(out["summary"]),
            "### Phases and peak memory per task: post-restore\n\n" + phase_table(out["summary"], "post-restore"),
            "### Phases and peak memory per task: nightly\n\n" + phase_table(out["summary"], "nightly"),
        ]
        if any(row["case"].startswith("floor") for row in out["summary"]):
            parts.append("### The write's floor: one bare UPDATE ... JOIN\n\n" + floor_table(out["summary"]))
    if out["extraction"]:
        parts.append("### Extraction\n\n" + extraction_table(out["extraction"]))
    if out["backfill"]:
        parts.append("### Backfill writes\n\n" + extraction_table(out["backfill"]))
    parts.append("### Goals\n\n" + goals_table(out["goals"]))
    return "\n\n".join(parts)
