#!/usr/bin/env python
"""Online backup of a ~1,000,000-row SQLite database vs SQLite's raw backup API on the same file, in one run.

    .venv/bin/python bench/bench_backup.py                      # 1,000,000 rows, 5 repeats
    .venv/bin/python bench/bench_backup.py --rows 100000 --repeats 3
    .venv/bin/python bench/bench_backup.py --db /tmp/other.db   # another cached database

The database is made once with the sample generator (``db.scripts.sample_generator.generate``, seed 42) and
cached as ``bench/backup_<rows>.db`` with its blobs in ``bench/backup_<rows>.db-files`` (both git-ignored); later
runs reuse it. Never ``db/data/app.db``.

What each side times (the sides run interleaved, alternating which goes first, into a fresh temporary directory
on the same file system; output deleted after each run, untimed):

- ours: ``db.scripts.backup_db.backup(database, directory=...)``: the backup API snapshot into a scratch file, its
  zstd compression in 16 MiB frames on every core with the SHA-256 of the compressed bytes, every blob the
  snapshot names (read, hashed, stored), row counts, the manifest, fsync and rename, deleting the scratch file;
- baseline: ``sqlite3.connect(source).backup(sqlite3.connect(target))`` and closing both: the page copy alone.

The target is ours / baseline ≤ 1.5 on the median of ``--repeats`` runs. The machine may be shared: the load
average is printed before and after. The script prints a Markdown summary.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import zstandard

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from db import Database
from db.backup.sizes import COMPRESSION_LEVEL
from db.migrations import runner
from db.scripts.backup_db import backup
from db.scripts.sample_generator import GeneratorOptions, generate
from db.settings import Settings

BENCH_DIR = Path(__file__).resolve().parent


def open_cached(path: Path, rows: int) -> Database:
    """The benchmark database, generated on first use."""
    settings = replace(Settings(), storage_root=Path(f"{path}-files"))
    database = Database(f"sqlite:///{path}", settings=settings)
    if runner.current_revision(database) is None:
        print(f"generating {rows:,} rows into {path} (once; cached for later runs) ...", flush=True)
        runner.upgrade(database)
        result = generate(database, GeneratorOptions(rows=rows, seed=42))
        print(f"  {result.total_rows:,} rows in {result.seconds:.0f} s", flush=True)
        with sqlite3.connect(path) as connection:  # a compact file: the WAL folded in
            connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return database


def time_ours(database: Database, scratch: Path) -> float:
    started = time.perf_counter()
    backup(database, directory=scratch)
    return time.perf_counter() - started


def time_raw(source_path: Path, scratch: Path) -> float:
    started = time.perf_counter()
    source = sqlite3.connect(source_path)
    target = sqlite3.connect(scratch / "raw.db")
    source.backup(target)
    target.close()
    source.close()
    return time.perf_counter() - started


def run(path: Path, rows: int, repeats: int) -> None:
    database = open_cached(path, rows)
    load_before = os.getloadavg()[0]
    ours: list[float] = []
    raw: list[float] = []
    for repeat in range(repeats):
        sides = [("ours", ours), ("raw", raw)]
        for name, samples in sides if repeat % 2 == 0 else reversed(sides):
            scratch = Path(tempfile.mkdtemp(dir=BENCH_DIR, prefix="scratch.db-"))
            try:
                samples.append(time_ours(database, scratch) if name == "ours" else time_raw(path, scratch))
                if name == "ours":
                    archive_size = sum(entry.stat().st_size for entry in scratch.iterdir())
            finally:
                shutil.rmtree(scratch)
    last = backup(database, directory=tempfile.mkdtemp(dir=BENCH_DIR, prefix="scratch.db-"))
    shutil.rmtree(last.path.parent)
    database.dispose()
    ratio = statistics.median(ours) / statistics.median(raw)
    size = path.stat().st_size
    counted = sum(last.manifest.row_counts.values())
    print()
    print(f"database: {path.name}, {size / 2**20:,.0f} MiB, {counted:,} rows, {last.manifest.blob_count:,} blobs "
          f"({last.manifest.blob_bytes / 2**20:,.1f} MiB); archive {archive_size / 2**20:,.1f} MiB")
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"SQLite {sqlite3.sqlite_version}, zstandard {zstandard.__version__} (level {COMPRESSION_LEVEL}); "
          f"load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after")
    print()
    print("| side | median (s) | runs (s) |")
    print("|---|---:|---|")
    print(f"| ours: `backup()` (snapshot + zstd + SHA-256 + blobs + manifest + fsync) | "
          f"{statistics.median(ours):.3f} | {', '.join(f'{value:.3f}' for value in ours)} |")
    print(f"| raw: `sqlite3.Connection.backup` | {statistics.median(raw):.3f} | "
          f"{', '.join(f'{value:.3f}' for value in raw)} |")
    print()
    print(f"ratio ours / raw = {ratio:.2f} (target ≤ 1.5)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--db", type=Path, help="the cached database file (default: bench/backup_<rows>.db)")
    options = parser.parse_args()
    run(options.db or BENCH_DIR / f"backup_{options.rows}.db", options.rows, options.repeats)


if __name__ == "__main__":
    main()
