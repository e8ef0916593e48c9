#!/usr/bin/env python
"""The sample generator on SQLite: its speed against raw ``sqlite3`` ``executemany``, and its peak memory.

    .venv/bin/python bench/bench_generator.py                          # 1,000,000 rows, 3 repeats, writes RESULTS.md
    .venv/bin/python bench/bench_generator.py --rows 200000 --repeats 1 --no-write

Every measured run is a child process of its own, on a fresh SQLite file (WAL, ``synchronous=NORMAL``, foreign
keys on, as ``Database`` sets them) in a temporary directory, migrated to the head before the clock starts:

- ours: ``generate(database, GeneratorOptions(rows=N, seed=S))``, generation of the values, the blob bytes, the
  hash chain and the commits per batch all included;
- baseline: the same rows, already built as tuples (read from the file the generator wrote, untimed, 100,000 at a
  time), inserted table by table with ``cursor.executemany`` of a plain INSERT on a ``sqlite3`` connection and
  committed per chunk: only ``executemany`` and ``commit`` are timed. The baseline thus inserts the very same
  rows into the very same schema (and indexes), but makes nothing.

Peak memory is the child's peak resident set size (``resource.getrusage(RUSAGE_SELF).ru_maxrss``) for a run at
``--small-rows`` (default 100,000) and at ``--rows``: it must stay under 300 MB and be about the same at both sizes
(the rows stream in batches). Targets: ours / baseline <= 3 on the medians; RSS <= 300 MB at both sizes, and the
larger run's RSS at most 1.25 x the smaller's.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import sqlalchemy

from db import Database
from db.migrations import runner
from db.scripts.sample_generator import GeneratorOptions, generate
from db.settings import Settings

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DEFAULT_RESULTS = HERE / "RESULTS.md"
SECTION_TITLE = "Issue 5: sample generator"
TABLES = ("user", "account", "membership", "file_blob", "file", "audit_entry")
CHUNK = 100_000
SPEED_LIMIT = 3.0
RSS_LIMIT_MB = 300.0
RSS_GROWTH_LIMIT = 1.25


# --- children ----------------------------------------------------------------------------------------------------


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def child_generate(path: Path, rows: int, seed: int) -> dict[str, Any]:
    database = Database(f"sqlite:///{path}", settings=Settings(storage_root=path.parent / "files"))
    started = time.perf_counter()
    result = generate(database, GeneratorOptions(rows=rows, seed=seed))
    seconds = time.perf_counter() - started
    database.dispose()
    return {"seconds": seconds, "rows": result.total_rows, "rss_mb": peak_rss_mb(),
            "per_table": dict(result.rows)}


def child_baseline(source: Path, target: Path) -> dict[str, Any]:
    read = sqlite3.connect(source)
    write = sqlite3.connect(target, isolation_level=None)
    write.execute("PRAGMA journal_mode=WAL")
    write.execute("PRAGMA synchronous=NORMAL")
    write.execute("PRAGMA foreign_keys=ON")
    seconds, rows = 0.0, 0
    for table in TABLES:
        cursor = read.execute(f'SELECT * FROM "{table}" ORDER BY rowid')
        columns = [item[0] for item in cursor.description]
        sql = f'INSERT INTO "{table}" ({", ".join(columns)}) VALUES ({", ".join("?" * len(columns))})'
        while chunk := cursor.fetchmany(CHUNK):  # pre-built tuples, untimed
            started = time.perf_counter()
            write.execute("BEGIN")
            write.executemany(sql, chunk)
            write.execute("COMMIT")
            seconds += time.perf_counter() - started
            rows += len(chunk)
    return {"seconds": seconds, "rows": rows, "rss_mb": peak_rss_mb()}


# --- the parent --------------------------------------------------------------------------------------------------


def migrated_file(directory: Path) -> Path:
    path = directory / "bench.db"
    database = Database(f"sqlite:///{path}")
    runner.upgrade(database)
    database.dispose()
    return path


def run_child(*args: str) -> dict[str, Any]:
    command = [sys.executable, str(Path(__file__).resolve()), *args]
    done = subprocess.run(command, capture_output=True, text=True, check=False, cwd=ROOT)
    if done.returncode != 0:
        raise SystemExit(f"child {args[0]} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def one_repeat(rows: int, seed: int) -> tuple[dict[str, Any], dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="gen-bench-") as scratch:
        ours_dir, base_dir = Path(scratch) / "ours", Path(scratch) / "baseline"
        ours_dir.mkdir()
        base_dir.mkdir()
        ours_file, base_file = migrated_file(ours_dir), migrated_file(base_dir)
        ours = run_child("--child-generate", str(ours_file), str(rows), str(seed))
        baseline = run_child("--child-baseline", str(ours_file), str(base_file))
        shutil.rmtree(ours_dir / "files", ignore_errors=True)
    if baseline["rows"] < ours["rows"]:
        raise SystemExit(f"the baseline copied {baseline['rows']} rows, fewer than the {ours['rows']} generated")
    return ours, baseline


def measure(rows: int, repeats: int) -> dict[str, Any]:
    ours, baseline = [], []
    for repeat in range(repeats):
        mine, theirs = one_repeat(rows, seed=1000 + repeat)
        print(f"  {rows:>11,} rows, repeat {repeat + 1}: generate {mine['seconds']:.2f} s "
              f"({mine['rows'] / mine['seconds']:,.0f} rows/s, peak RSS {mine['rss_mb']:.0f} MB), "
              f"sqlite3 executemany {theirs['seconds']:.2f} s ({theirs['rows']:,} rows)", flush=True)
        ours.append(mine)
        baseline.append(theirs)
    return {
        "rows": rows, "per_table": ours[0]["per_table"],
        "ours": [run["seconds"] for run in ours], "baseline": [run["seconds"] for run in baseline],
        "baseline_rows": baseline[0]["rows"], "rss": [run["rss_mb"] for run in ours],
    }


def summary(large: dict[str, Any], small: dict[str, Any], repeats: int) -> tuple[str, bool]:
    ours, base = statistics.median(large["ours"]), statistics.median(large["baseline"])
    ratio = ours / base
    rss_large, rss_small = statistics.median(large["rss"]), statistics.median(small["rss"])
    growth = rss_large / rss_small
    speed_ok = ratio <= SPEED_LIMIT
    rss_ok = max(rss_large, rss_small) <= RSS_LIMIT_MB and growth <= RSS_GROWTH_LIMIT
    lines = [
        f"### {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC", "",
        f"- **machine**: {platform.platform()}, {os.cpu_count()} CPUs; python {platform.python_version()}, "
        f"sqlite {sqlite3.sqlite_version}, SQLAlchemy {sqlalchemy.__version__}",
        f"- **run**: `bench/bench_generator.py`: {large['rows']:,} rows (and {small['rows']:,} for memory), "
        f"{repeats} repeats, SQLite file",
        "- **rows per table**: " + ", ".join(f"{table} {count:,}" for table, count in large["per_table"].items()),
        "",
        "| # | measurement | ours (median) | baseline (median) | ratio | target | result | spread ours / baseline |",
        "|---|---|---|---|---|---|---|---|",
        f"| 1 | generate {large['rows']:,} rows vs sqlite3 executemany of the same pre-built tuples | "
        f"{ours:.2f} s ({large['rows'] / ours:,.0f} rows/s) | {base:.2f} s | {ratio:.2f}x | <= {SPEED_LIMIT:g}x | "
        f"**{'PASS' if speed_ok else 'FAIL'}** | {min(large['ours']):.2f}-{max(large['ours']):.2f} s / "
        f"{min(large['baseline']):.2f}-{max(large['baseline']):.2f} s |",
        f"| 2 | peak RSS of the generating process, {small['rows']:,} vs {large['rows']:,} rows | "
        f"{rss_large:.0f} MB at {large['rows']:,} | {rss_small:.0f} MB at {small['rows']:,} | {growth:.2f}x | "
        f"<= {RSS_LIMIT_MB:.0f} MB, <= {RSS_GROWTH_LIMIT:g}x | **{'PASS' if rss_ok else 'FAIL'}** | "
        f"{min(large['rss']):.0f}-{max(large['rss']):.0f} MB / {min(small['rss']):.0f}-{max(small['rss']):.0f} MB |",
        "",
    ]
    return "\n".join(lines), speed_ok and rss_ok


def write_section(path: Path, run: str) -> None:
    """Add this run under the section's heading (newest first), creating the section at the end of the file."""
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    heading = f"## {SECTION_TITLE}"
    if heading not in text:
        intro = ("Written by `bench/bench_generator.py` (newest run first). Ratios are ratios of medians; the "
                 "script's docstring\nsays what each side times.")
        text = text.rstrip("\n") + f"\n\n{heading}\n\n{intro}\n\n{run}"
    else:
        start = text.index(heading)
        first_run = text.find("\n### ", start)
        insert_at = first_run + 1 if first_run != -1 else len(text)
        text = text[:insert_at] + run + "\n" + text[insert_at:]
    path.write_text(text.rstrip("\n") + "\n", encoding="utf-8")


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--child-generate":
        print(json.dumps(child_generate(Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))))
        return 0
    if len(sys.argv) > 1 and sys.argv[1] == "--child-baseline":
        print(json.dumps(child_baseline(Path(sys.argv[2]), Path(sys.argv[3]))))
        return 0
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--small-rows", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-write", action="store_true", help="print the results only")
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS)
    options = parser.parse_args()
    print(f"small run ({options.small_rows:,} rows):")
    small = measure(options.small_rows, options.repeats)
    print(f"large run ({options.rows:,} rows):")
    large = measure(options.rows, options.repeats)
    run, passed = summary(large, small, options.repeats)
    print(run)
    if not options.no_write:
        write_section(options.results, run)
        print(f"appended to {options.results}")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
