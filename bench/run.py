"""Run the benchmark workload of BENCHMARKS.md §3 and write a JSON and a markdown report.

    python bench/run.py            # full run: warm-up, then 5 interleaved rounds
    python bench/run.py --quick    # smoke run for CI: tiny sizes, checks counts only
    python bench/run.py --only feed   # one section (memory, postgres, queries, feed, aio)

Baselines are measured in the same run as the library, rounds are interleaved so noise is
shared, and every figure is a median with its min–max range. ``make bench`` runs this.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import memory_bench
from memory_bench import Result
from stats import fmt_ops, median_range
from workload import RUN_ID, mutations

REFERENCE = {
    "a": (45_000, 57_000),
    "b": (31_000, 35_000),
    "c": (1e6 / 12.6, 1e6 / 11.1),
    "d": (1e6 / 10.4, 1e6 / 8.3),
    "e": (1e6 / 4.7, 1e6 / 3.7),
}
TARGET_FACTOR = 1.5

RESULTS = Path(__file__).resolve().parent / "results"


def _rounds(
    scenarios: dict[str, Callable[[], Result]], rounds: int, warmup: bool
) -> dict[str, list[Result]]:
    if warmup:
        for run in scenarios.values():
            run()
    out: dict[str, list[Result]] = {name: [] for name in scenarios}
    for r in range(rounds):
        for name, run in scenarios.items():
            out[name].append(run())
            print(
                f"  round {r + 1}/{rounds} {name}: {out[name][-1].ops_per_s:,.0f} ops/s", flush=True
            )
    return out


def memory_section(quick: bool, rounds: int) -> dict[str, Any]:
    """Scenarios (a)–(f), (z) and the mapping variants; returns the report section."""
    n_mut = 2_000 if quick else 100_000
    n_pure = 10_000 if quick else 1_000_000
    plan = mutations(n_mut, memory_bench.IDS)
    scenarios: dict[str, Callable[[], Result]] = {
        "a": lambda: memory_bench.mutate_run(
            n_mut, run_id=None, noop=False, mapping=False, plan=plan
        ),
        "b": lambda: memory_bench.mutate_run(
            n_mut, run_id=RUN_ID, noop=False, mapping=False, plan=plan
        ),
        "c": lambda: memory_bench.mutate_run(
            n_mut, run_id=None, noop=True, mapping=False, plan=plan
        ),
        "d": lambda: memory_bench.diff_run(n_pure),
        "e": lambda: memory_bench.mask_run(n_pure),
        "f": lambda: memory_bench.validate_run(n_pure // 10),
        "z": lambda: memory_bench.bare_plugin_run(n_mut, plan=plan),
        "a_mapping": lambda: memory_bench.mutate_run(
            n_mut, run_id=None, noop=False, mapping=True, plan=plan
        ),
        "c_mapping": lambda: memory_bench.mutate_run(
            n_mut, run_id=None, noop=True, mapping=True, plan=plan
        ),
    }
    results = _rounds(scenarios, 1 if quick else rounds, warmup=not quick)
    section: dict[str, Any] = {"n_mutations": n_mut, "n_pure_calls": n_pure, "scenarios": {}}
    for name, runs in results.items():
        ops = median_range([r.ops_per_s for r in runs])
        us = median_range([1e6 / r.ops_per_s for r in runs])
        entry: dict[str, Any] = {"ops_per_s": ops, "us_per_op": us, "counts": runs[-1].counts}
        if name in REFERENCE:
            low, high = REFERENCE[name]
            entry["reference_ops_per_s"] = {"min": low, "max": high}
            entry["ratio_vs_reference_mid"] = ops["median"] / ((low + high) / 2)
            entry["target_ops_per_s"] = TARGET_FACTOR * high
            entry["meets_target"] = ops["median"] >= TARGET_FACTOR * high
        section["scenarios"][name] = entry
    if not quick:
        section["memory"] = memory_bench.memory_per_row(1_000_000)
    return section


def check_memory_counts(section: dict[str, Any]) -> list[str]:
    """The quick mode's assertions: every scenario produced its expected rows and events."""
    n = section["n_mutations"]
    s = section["scenarios"]
    problems = []
    expect = {
        "a": {"rows": 2 * n, "events": n, "rows_with_secret": 0},
        "b": {"rows": 2 * n, "events": n, "rows_with_secret": 0},
        "c": {"rows": 0, "events": 0},
        "a_mapping": {"rows": 2 * n, "events": n},
        "c_mapping": {"rows": 0, "events": 0},
        "d": {"calls_with_two_fields": section["n_pure_calls"]},
        "e": {"docs_with_secret": 0},
        "f": {"valid": section["n_pure_calls"] // 10},
    }
    for name, counts in expect.items():
        for key, want in counts.items():
            got = s[name]["counts"].get(key)
            if got != want:
                problems.append(f"({name}) {key}: expected {want}, got {got}")
    return problems


def memory_markdown(section: dict[str, Any]) -> list[str]:
    """The in-memory table."""
    lines = [
        "## In-memory (ops/s, median (min–max); µs/op median)",
        "",
        "| scenario | ours ops/s | µs/op | reference ops/s | ratio | target |",
        "|---|---|---|---|---|---|",
    ]
    for name, entry in section["scenarios"].items():
        ref = entry.get("reference_ops_per_s")
        ref_text = f"{ref['min']:,.0f}–{ref['max']:,.0f}" if ref else "–"
        ratio = f"{entry['ratio_vs_reference_mid']:.2f}×" if ref else "–"
        target = ("met" if entry["meets_target"] else "missed") if ref else "–"
        lines.append(
            f"| {name} | {fmt_ops(entry['ops_per_s'])} | {entry['us_per_op']['median']:.1f} "
            f"| {ref_text} | {ratio} | {target} |"
        )
    memory = section.get("memory")
    if memory:
        lines += [
            "",
            f"In-memory store: {memory['bytes_per_row']:.0f} bytes per transition row "
            f"at {memory['rows']:,.0f} rows (target ≤ 300).",
        ]
    return lines


def markdown(report: dict[str, Any]) -> str:
    """The report as a markdown table."""
    lines = [
        f"# Benchmark results — {report['started']}",
        "",
        f"Machine: {report['machine']}. Mode: {'quick' if report['quick'] else 'full'}.",
    ]
    if "memory" in report:
        lines += memory_markdown(report["memory"])
    for extra in ("postgres", "queries", "feed", "aio"):
        if extra in report:
            lines += ["", report[extra].get("markdown", "")]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; exit 1 if quick-mode counts are wrong."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one round, checks only")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--only", choices=["memory", "postgres", "queries", "feed", "aio"], action="append"
    )
    parser.add_argument("--dsn", help="use this PostgreSQL instead of starting one")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    only = set(args.only or ["memory", "postgres", "queries", "feed", "aio"])
    started = time.time()
    report: dict[str, Any] = {
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": args.quick,
        "machine": (
            f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
        ),
    }
    problems: list[str] = []
    if "memory" in only:
        print("in-memory scenarios", flush=True)
        report["memory"] = memory_section(args.quick, args.rounds)
        problems += check_memory_counts(report["memory"])
    if only & {"postgres", "queries", "feed", "aio"}:
        import postgres_bench

        # One server (or --dsn) for every PostgreSQL section.
        with postgres_bench.database(args.dsn, args.quick) as url:
            if only & {"postgres", "queries"}:
                pg = postgres_bench.run(args.quick, args.rounds, url, only)
                report.update(pg["report"])
                problems += pg["problems"]
            if "feed" in only:
                import feed_bench

                print("change feed", flush=True)
                feed = feed_bench.run(args.quick, args.rounds, url)
                report.update(feed["report"])
                problems += feed["problems"]
            if "aio" in only:
                import aio_bench

                print("asyncio on PostgreSQL", flush=True)
                async_pg = aio_bench.run(args.quick, args.rounds, url)
                report.update(async_pg["report"])
                problems += async_pg["problems"]
    report["seconds"] = time.time() - started
    args.out.mkdir(parents=True, exist_ok=True)
    name = "quick" if args.quick else "full"
    (args.out / f"{name}.json").write_text(json.dumps(report, indent=2, default=str))
    (args.out / f"{name}.md").write_text(markdown(report))
    print(markdown(report))
    for problem in problems:
        print(f"bench check failed: {problem}", file=sys.stderr)
    print(f"done in {report['seconds']:.0f} s; results in {args.out}")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
