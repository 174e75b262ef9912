"""`make bench`: extraction against the ListUsers quota, and reconcile at 100k and 1M users.

Reconcile runs the product's tasks against private MariaDB servers (stock and
production-sized settings) over three links, with today's per-row helper in the same
run; every figure three times. Results: bench/results/latest.json and latest.md.
Options: `python -m bench --help`; `--quick` is a small end-to-end check.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

from devtools.local_airflow import airflow_environment

RESULTS = Path(__file__).resolve().parent / "results"
PARTIAL = RESULTS / "partial.jsonl"  # one line per record, as measured
SECTIONS = ("extraction", "reconcile", "backfill")
DEFAULT_SECTIONS = ("extraction", "reconcile")


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=SECTIONS, action="append", help=f"default: {', '.join(DEFAULT_SECTIONS)}")
    parser.add_argument("--sizes", default="100000,1000000", help="users per reconcile case, comma-separated")
    parser.add_argument("--servers", default="stock,production", help="server settings (bench/servers.py)")
    parser.add_argument("--links", default="loopback,0.5ms,2ms", help="links (bench/servers.py)")
    parser.add_argument(
        "--large-links", default="loopback,0.5ms", help="links of the product's cases at 1M users (per-row: all)"
    )
    parser.add_argument("--large-reps", type=int, help="runs of the product's cases at 1M users (default: --reps)")
    parser.add_argument("--no-floor", action="store_true", help="skip the bare-UPDATE floor at 1M users")
    parser.add_argument(
        "--floor-servers", default="production", help="servers the floor runs on (the 12 s goal's server)"
    )
    parser.add_argument(
        "--per-row-sizes", default="1000000", help="sizes per-row runs at (its goals are at 1M; its sample is per link)"
    )
    parser.add_argument(
        "--chain-extraction", action="store_true", help="also list the pool by one token chain (~45 s; no goal)"
    )
    parser.add_argument(
        "--large-nightly-links", default="loopback", help="links of the nightly case at 1M users (its goal: loopback)"
    )
    parser.add_argument("--reps", type=int, default=3, help="runs of every figure")
    parser.add_argument("--pool-users", type=int, default=20_000, help="users in the extraction pool")
    parser.add_argument("--list-users-rps", type=float, default=28.0, help="the sliced extraction's rate")
    parser.add_argument("--writes", type=int, default=600, help="attribute writes in the backfill benchmark")
    parser.add_argument("--render-partial", action="store_true", help="tables from a stopped run's partial.jsonl")
    parser.add_argument("--quick", action="store_true", help="5,000 users, one server, two links, one run each")
    args = parser.parse_args()
    defaults = {name: parser.get_default(name) for name in vars(args)}
    args.default_matrix = (
        not args.quick and not args.render_partial and vars(args) == defaults
    )  # what `make bench` runs
    if args.quick:
        args.sizes, args.servers, args.links, args.reps, args.pool_users = "5000", "stock", "loopback,0.5ms", 1, 3000
        args.per_row_sizes, args.chain_extraction = args.sizes, True
    return args


def _quiet() -> None:
    """The tables are the output: task logs and library warnings would bury them."""
    logging.basicConfig(level=logging.WARNING)
    for name in ("airflow", "identity_sync", "botocore", "py.warnings"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.simplefilter("ignore", DeprecationWarning)


def _run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Extraction first (short), then reconcile: a run stopped late still has both in ``partial.jsonl``."""
    from bench import cognito, reconcile, results

    only = set(args.only or DEFAULT_SECTIONS)
    out: dict[str, Any] = {"meta": results.meta(args), "extraction": [], "backfill": [], "reconcile": []}
    out["meta"]["default_matrix"] = args.default_matrix
    seconds = out["meta"]["section_seconds"] = {}  # wall time of each part, to tell what a matrix costs
    started = time.perf_counter()
    PARTIAL.write_text(json.dumps({"section": "meta", **out["meta"]}) + "\n")
    if "extraction" in only:
        print(f"[bench] extraction: {args.pool_users:,} users, {cognito.LATENCY * 1000:.0f} ms a call, 30 RPS quota")
        out["extraction"] = cognito.extraction(args.pool_users, rps=args.list_users_rps, slices=16, reps=args.reps)
        if args.chain_extraction:
            out["extraction"] += cognito.extraction(args.pool_users, rps=30.0, slices=1, reps=1)
        with PARTIAL.open("a") as partial:
            partial.writelines(json.dumps({"section": "extraction", **r}) + "\n" for r in out["extraction"])
        seconds["extraction"] = time.perf_counter() - started
    if "reconcile" in only:
        matrix = reconcile.Matrix(
            servers=args.servers.split(","),
            sizes=[int(size) for size in args.sizes.split(",")],
            links=args.links.split(","),
            reps=args.reps,
            workdir=workdir,
            large_links=args.large_links.split(","),
            floor=not args.no_floor,
            floor_servers=args.floor_servers.split(","),
            per_row_sizes=[int(size) for size in args.per_row_sizes.split(",")],
            large_nightly_links=args.large_nightly_links.split(","),
            large_reps=args.large_reps,
            partial=PARTIAL,
        )
        out["reconcile"] = reconcile.run(matrix)
        seconds |= {f"reconcile: {part}": value for part, value in matrix.timings.items()}
    if "backfill" in only:
        print(f"[bench] backfill: {args.writes:,} attribute writes, 25 RPS quota")
        out["backfill"] = [cognito.backfill_writes(args.writes, rate=25.0) for _ in range(args.reps)]
    return out


def _from_partial() -> dict[str, Any]:
    """What a stopped run measured, from ``partial.jsonl`` (``--render-partial``)."""
    out: dict[str, Any] = {"meta": {}, "extraction": [], "backfill": [], "reconcile": []}
    for line in PARTIAL.read_text().splitlines():
        record = json.loads(line)
        section = record.pop("section", "reconcile")
        if section == "meta":
            out["meta"] = record | {"stopped_early": True}
        else:
            out[section].append(record)
    return out


def _stop(signum: int, frame: object) -> None:
    """SIGTERM (and SIGINT, which a background job ignores) unwind the run: servers and proxies are stopped."""
    raise SystemExit(f"bench stopped by signal {signum}")


def main() -> None:
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    args = _arguments()
    started = time.perf_counter()
    RESULTS.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="work-", dir=RESULTS) as tmp:  # not /tmp: others clean it
        workdir = Path(tmp)
        os.environ.update(airflow_environment(workdir / "airflow"))  # before anything imports Airflow
        _quiet()
        from bench import results, tables

        if args.render_partial:
            out = _from_partial()
            out["meta"] |= results.finished_at(out["meta"], out["reconcile"])
        else:
            out = _run(args, workdir)
            out["meta"] |= results.finished(started)
    out["summary"] = results.summarise(out["reconcile"])
    out["goals"] = results.goals(out)
    text = tables.render(out)
    print()
    print(text)
    (RESULTS / "latest.json").write_text(json.dumps(out, indent=1, default=str))
    (RESULTS / "latest.md").write_text(text + "\n")


if __name__ == "__main__":
    main()
