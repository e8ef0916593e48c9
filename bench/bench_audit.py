#!/usr/bin/env python
"""The audit chain's cost on each engine: appends with and without the seq guards, keyed appends, verification.

    .venv/bin/python bench/bench_audit.py                                  # 50,000 entries, 3 repeats, all engines
    .venv/bin/python bench/bench_audit.py --entries 20000 --engines sqlite --no-write

For each engine, each repeat and each variant, a fresh database (a SQLite file in a temporary directory; on the
servers the database ``dblayer_bench_audit``, from ``BENCH_POSTGRESQL_URL`` / ``BENCH_MARIADB_URL`` or the local
default) migrated to the head. ``--entries`` entries are appended with ``db.audit.append_entries``, one unit of work
per 5,000 (as the sample generator does), and timed; then ``verify_chain`` over the whole log is timed:

- unguarded: the seq guard triggers of revision 0005 dropped, the code otherwise the same;
- guarded: as shipped;
- keyed: as shipped, with an audit key (HMAC-SHA256 per entry and a MAC on the head).

Ratios are ratios of medians: guarded / unguarded is the price of the guards, keyed / guarded that of the key.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import islice
from pathlib import Path

import sqlalchemy
from sqlalchemy import MetaData

from db import Database, dialects
from db.audit import Entry, append_entries
from db.migrations import runner
from db.repositories.audit_repository import AuditRepository
from db.settings import Settings

HERE = Path(__file__).resolve().parent
DEFAULT_RESULTS = HERE / "RESULTS.md"
SECTION_TITLE = "Issue 9: audit chain integrity"
SERVER_URLS = {
    "postgresql": os.environ.get("BENCH_POSTGRESQL_URL", "postgresql://postgres@127.0.0.1:5432/dblayer_bench_audit"),
    "mariadb": os.environ.get("BENCH_MARIADB_URL", "mariadb://root@127.0.0.1:3306/dblayer_bench_audit"),
}
VARIANTS = ("unguarded", "guarded", "keyed")
KEY = "bench-audit-key-0123456789abcdef-0123456789"
UNIT = 5_000


@contextmanager
def fresh(engine: str, variant: str, scratch: Path) -> Iterator[Database]:
    url = f"sqlite:///{scratch / f'{variant}.db'}" if engine == "sqlite" else SERVER_URLS[engine]
    settings = Settings.for_tests(audit_key=KEY if variant == "keyed" else None, storage_root=scratch / "files")
    database = Database(url, settings=settings)
    database.dialect.create_database_if_missing(database.url)
    with database.engine.begin() as connection:
        existing = MetaData()
        existing.reflect(connection)
        existing.drop_all(connection)
    runner.upgrade(database)
    if variant == "unguarded":
        with database.engine.begin() as connection:
            for statement in dialects.dialect_named(database.backend).drop_seq_guard_ddl():
                connection.exec_driver_sql(statement)
    try:
        yield database
    finally:
        database.dispose()


def entries(count: int) -> Iterator[Entry]:
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    for i in range(count):
        yield Entry(uuid.uuid4(), start + dt.timedelta(seconds=i), "event", "login.success", "user", str(i % 997),
                    actor=str(i % 997), ip="203.0.113.7", data={"n": i})


def one_run(engine: str, variant: str, count: int, scratch: Path) -> tuple[float, float]:
    with fresh(engine, variant, scratch) as database:
        source = entries(count)
        started = time.perf_counter()
        for _ in range(0, count, UNIT):
            with database.unit_of_work() as uow:
                append_entries(uow.session, islice(source, UNIT))
        appended = time.perf_counter() - started
        started = time.perf_counter()
        with database.session() as session:
            report = AuditRepository(session).verify_chain(archive_dir=None)
        verified = time.perf_counter() - started
        if not report.ok or report.checked != count:
            raise SystemExit(f"{engine} {variant}: the chain did not verify: {report}")
    return appended, verified


def measure(engine: str, count: int, repeats: int) -> dict[str, dict[str, list[float]]]:
    results: dict[str, dict[str, list[float]]] = {variant: {"append": [], "verify": []} for variant in VARIANTS}
    with tempfile.TemporaryDirectory(prefix="audit-bench-") as scratch:
        for repeat in range(repeats):
            for variant in VARIANTS:
                appended, verified = one_run(engine, variant, count, Path(scratch))
                results[variant]["append"].append(appended)
                results[variant]["verify"].append(verified)
                print(f"  {engine:>10} {variant:>9} repeat {repeat + 1}: append {appended:.2f} s "
                      f"({count / appended:,.0f}/s), verify {verified:.2f} s ({count / verified:,.0f}/s)", flush=True)
    return results


def table(results: dict[str, dict[str, dict[str, list[float]]]], count: int) -> list[str]:
    lines = ["| engine | append unguarded | append guarded | guards cost | append keyed | key cost | verify | "
             "verify keyed |", "|---|---|---|---|---|---|---|---|"]
    for engine, runs in results.items():
        median = {variant: {kind: statistics.median(values) for kind, values in kinds.items()}
                  for variant, kinds in runs.items()}
        lines.append(
            f"| {engine} | {median['unguarded']['append']:.2f} s | {median['guarded']['append']:.2f} s | "
            f"{median['guarded']['append'] / median['unguarded']['append']:.2f}x | {median['keyed']['append']:.2f} s | "
            f"{median['keyed']['append'] / median['guarded']['append']:.2f}x | {median['guarded']['verify']:.2f} s "
            f"({count / median['guarded']['verify']:,.0f}/s) | {median['keyed']['verify']:.2f} s |"
        )
    return lines


def write_section(path: Path, run: str) -> None:
    """Add this run under the section's heading (newest first), creating the section at the end of the file."""
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    heading = f"## {SECTION_TITLE}"
    if heading not in text:
        text = text.rstrip("\n") + f"\n\n{heading}\n\nWritten by `bench/bench_audit.py` (newest run first).\n\n{run}"
    else:
        start = text.index(heading)
        first_run = text.find("\n### ", start)
        insert_at = first_run + 1 if first_run != -1 else len(text)
        text = text[:insert_at] + run + "\n" + text[insert_at:]
    path.write_text(text.rstrip("\n") + "\n", encoding="utf-8")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=50_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--engines", default="sqlite,postgresql,mariadb")
    parser.add_argument("--no-write", action="store_true", help="print the results only")
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS)
    options = parser.parse_args()
    engines = [name.strip() for name in options.engines.split(",") if name.strip()]
    results = {engine: measure(engine, options.entries, options.repeats) for engine in engines}
    run = "\n".join([
        f"### {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC", "",
        f"- **machine**: {platform.platform()}, {os.cpu_count()} CPUs; python {platform.python_version()}, "
        f"SQLAlchemy {sqlalchemy.__version__}",
        f"- **run**: `bench/bench_audit.py`: {options.entries:,} entries appended with `append_entries` (units of "
        f"work of {UNIT:,}), {options.repeats} repeats, medians",
        "", *table(results, options.entries), "",
    ])
    print(run)
    if not options.no_write:
        write_section(options.results, run)
    return 0


if __name__ == "__main__":
    sys.exit(main())
