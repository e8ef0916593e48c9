#!/usr/bin/env python
"""Benchmarks of ``upsert_many`` and ``upsert`` against the raw driver running the same statement.

    .venv/bin/python bench/bench_upsert.py                    # full size, appends a section to bench/RESULTS.md
    .venv/bin/python bench/bench_upsert.py --rows 2000 --repeats 3 --no-write   # a quick look
    .venv/bin/python bench/bench_upsert.py --skip-postgres

House style of ``bench_foundation.py``: every measurement runs ``--repeats`` times, the two sides interleaved (their
order alternated); the table shows the median seconds of each side and the ratio of the medians. Before every run
the table is made anew and holds every other key (so half the rows insert and half update); that set-up is
untimed, as are pre-built rows and parameter tuples and opening the raw connection. Commits are timed on both sides.

1.  SQLite: ``upsert_many(rows, match=["name"])`` of ``--rows`` rows in a unit of work vs sqlite3's ``executemany``
    of the same ``INSERT … ON CONFLICT (name) DO UPDATE`` (pre-built tuples, WAL, synchronous=NORMAL). Target ≤ 2x.
2.  SQLite: ``upsert(row, match=["name"])`` for each of ``--singles`` rows in one unit of work vs sqlite3's
    ``execute`` of that statement row by row in one transaction. Target ≤ 3x.
3.  and 4.: the same two on PostgreSQL, the baseline psycopg's ``executemany`` / ``execute`` (same targets).
1g, 2g (SQLite), 3g, 4g (PostgreSQL): ``get_or_create(name=…, defaults=…)`` for each of ``--singles`` names (half
    exist, half are made) in one unit of work vs advanced-alchemy's ``get_or_upsert(match_fields=["name"],
    upsert=False)`` (not race-safe: no savepoint) and vs the race-safe idiom written by hand with SQLAlchemy (a
    read, then the insert in a savepoint). Target: no slower than either (≤ 1x).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sqlite3
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import psycopg
import uuid_utils
from advanced_alchemy.base import UUIDv7AuditBase
from advanced_alchemy.repository import SQLAlchemySyncRepository
from bench_foundation import (
    DEFAULT_PG_URL,
    BenchBase,
    Result,
    interleaved,
    sqlite_timestamp,
    stopwatch,
    text_table,
    versions,
)
from sqlalchemy import BigInteger, Engine, String, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column

from db import Database
from db.models.base import Timestamps, UUIDPrimaryKey, Versioned, new_id
from db.repositories.base_repository import BaseRepository

HERE = Path(__file__).resolve().parent
DEFAULT_RESULTS = HERE / "RESULTS.md"
COLUMNS = ("id", "created_at", "updated_at", "version", "name", "quantity", "price")


class UpsertItem(UUIDPrimaryKey, Timestamps, Versioned, BenchBase):
    """Seven columns, unique on ``name``: what an upsert matches on."""

    __tablename__ = "bench_upsert_item"

    name: Mapped[str] = mapped_column(String(100), unique=True)
    quantity: Mapped[int]
    price: Mapped[float]


class UpsertItemRepository(BaseRepository[UpsertItem]):
    model = UpsertItem


class AAUpsertItem(UUIDv7AuditBase):
    """advanced-alchemy's equivalent, unique on ``name`` too."""

    __tablename__ = "aa_bench_upsert_item"

    name: Mapped[str] = mapped_column(String(100), unique=True)
    quantity: Mapped[int] = mapped_column(BigInteger)
    price: Mapped[float]


class AAUpsertItemRepository(SQLAlchemySyncRepository[AAUpsertItem]):
    model_type = AAUpsertItem


def upsert_sql(placeholder: str) -> str:
    """What ``upsert`` runs, written by hand: the same columns, conflict target and assignments."""
    values = ", ".join([placeholder] * len(COLUMNS))
    return (f"INSERT INTO bench_upsert_item ({', '.join(COLUMNS)}) VALUES ({values}) "
            "ON CONFLICT (name) DO UPDATE SET quantity = excluded.quantity, price = excluded.price, "
            "updated_at = excluded.updated_at, version = bench_upsert_item.version + 1")


def item_rows(count: int, salt: int = 0) -> list[dict[str, Any]]:
    return [{"name": f"item-{i:07d}", "quantity": (i + salt) % 997, "price": i * 0.25 + salt} for i in range(count)]


class Bench:
    """One engine: ours and the raw driver, on a table that holds every other key before each run."""

    engine_name = ""
    placeholder = "?"

    def __init__(self, database: Database, rows: int, singles: int, repeats: int) -> None:
        self.database = database
        self.engine: Engine = database.engine
        self.rows, self.singles, self.repeats = rows, singles, repeats
        self.data = item_rows(rows, salt=1)
        self.single_data = item_rows(singles, salt=1)

    def reset(self) -> None:
        for table in (UpsertItem.__table__, AAUpsertItem.__table__):
            table.drop(self.engine, checkfirst=True)
            table.create(self.engine)
        existing = item_rows(max(self.rows, self.singles))[::2]
        with self.database.unit_of_work() as uow:
            uow.repository(UpsertItemRepository).create_many(existing)
            uow.session.add_all(AAUpsertItem(**row) for row in existing[: self.singles])

    def ours_get_or_create(self) -> float:
        with stopwatch() as elapsed, self.database.unit_of_work() as uow:
            repository = uow.repository(UpsertItemRepository)
            for row in self.single_data:
                repository.get_or_create(name=row["name"], defaults={"quantity": row["quantity"],
                                                                     "price": row["price"]})
        return elapsed[0]

    def aa_get_or_upsert(self) -> float:
        """advanced-alchemy's ``get_or_upsert(upsert=False)``: a read, then add and flush (no savepoint)."""
        with stopwatch() as elapsed, self.database.sessions() as session:
            repository = AAUpsertItemRepository(session=session)
            for row in self.single_data:
                repository.get_or_upsert(match_fields=["name"], upsert=False, **row)
            session.commit()
        return elapsed[0]

    def sqlalchemy_get_or_create(self) -> float:
        """The race-safe idiom by hand: a read, then the insert inside a savepoint, reading again if it lost."""
        with stopwatch() as elapsed, self.database.sessions() as session:
            for row in self.single_data:
                hand_get_or_create(session, row)
            session.commit()
        return elapsed[0]

    def tuples(self, rows: Sequence[dict[str, Any]]) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def raw(self, rows: Sequence[dict[str, Any]], *, many: bool) -> float:
        raise NotImplementedError

    def ours_many(self) -> float:
        with stopwatch() as elapsed, self.database.unit_of_work() as uow:
            count = uow.repository(UpsertItemRepository).upsert_many(self.data, match=["name"])
        assert count == len(self.data)
        return elapsed[0]

    def ours_single(self) -> float:
        with stopwatch() as elapsed, self.database.unit_of_work() as uow:
            repository = uow.repository(UpsertItemRepository)
            for row in self.single_data:
                repository.upsert(row, match=["name"])
        return elapsed[0]

    def run(self) -> list[Result]:
        label = self.engine_name
        driver = "sqlite3" if label == "SQLite" else "psycopg"
        first = "1" if label == "SQLite" else "3"
        second = "2" if label == "SQLite" else "4"
        self.reset()  # warm up: compile, connect, fill caches
        self.ours_many()
        self.ours_single()
        return [
            interleaved(Result(first, f"{label} upsert_many {self.rows:,} rows vs {driver} executemany",
                               "upsert_many", f"{driver} executemany", limit=2),
                        self.repeats, self.ours_many, lambda: self.raw(self.data, many=True), setup=self.reset),
            interleaved(Result(second, f"{label} upsert x{self.singles:,} vs {driver} row by row",
                               "upsert", f"{driver} execute", limit=3),
                        self.repeats, self.ours_single, lambda: self.raw(self.single_data, many=False),
                        setup=self.reset),
            interleaved(Result(f"{first}g", f"{label} get_or_create x{self.singles:,} vs advanced-alchemy",
                               "get_or_create", "get_or_upsert(upsert=False)", limit=1),
                        self.repeats, self.ours_get_or_create, self.aa_get_or_upsert, setup=self.reset),
            interleaved(Result(f"{second}g", f"{label} get_or_create x{self.singles:,} vs SQLAlchemy by hand",
                               "get_or_create", "select, savepoint insert", limit=1),
                        self.repeats, self.ours_get_or_create, self.sqlalchemy_get_or_create, setup=self.reset),
        ]


class SQLiteBench(Bench):
    engine_name = "SQLite"

    def __init__(self, path: Path, rows: int, singles: int, repeats: int) -> None:
        super().__init__(Database(f"sqlite:///{path}"), rows, singles, repeats)
        self.path = path

    def tuples(self, rows: Sequence[dict[str, Any]]) -> list[tuple[Any, ...]]:
        stamp = sqlite_timestamp(dt.datetime.now(dt.UTC))
        return [(uuid_utils.uuid7().hex, stamp, stamp, 1, row["name"], row["quantity"], row["price"])
                for row in rows]

    def raw(self, rows: Sequence[dict[str, Any]], *, many: bool) -> float:
        tuples = self.tuples(rows)
        connection = sqlite3.connect(self.path, isolation_level=None)
        for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON", "busy_timeout=5000"):
            connection.execute(f"PRAGMA {pragma}")
        sql = upsert_sql("?")
        try:
            with stopwatch() as elapsed:
                connection.execute("BEGIN IMMEDIATE")
                run_all(connection, sql, tuples, many=many)
                connection.execute("COMMIT")
        finally:
            connection.close()
        return elapsed[0]


class PostgresBench(Bench):
    engine_name = "PostgreSQL"

    def __init__(self, url: str, rows: int, singles: int, repeats: int) -> None:
        super().__init__(Database(url), rows, singles, repeats)
        self.conninfo = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        with self.engine.connect() as connection:
            self.server_version = str(connection.scalar(text("SHOW server_version")))

    def tuples(self, rows: Sequence[dict[str, Any]]) -> list[tuple[Any, ...]]:
        stamp = dt.datetime.now(dt.UTC)
        return [(new_id(), stamp, stamp, 1, row["name"], row["quantity"], row["price"]) for row in rows]

    def raw(self, rows: Sequence[dict[str, Any]], *, many: bool) -> float:
        tuples = self.tuples(rows)
        connection = psycopg.connect(self.conninfo, options="-c timezone=UTC")
        try:
            with stopwatch() as elapsed, connection.cursor() as cursor:
                run_all(cursor, upsert_sql("%s"), tuples, many=many)
                connection.commit()
        finally:
            connection.close()
        return elapsed[0]


def hand_get_or_create(session: Session, row: dict[str, Any]) -> tuple[UpsertItem, bool]:
    statement = select(UpsertItem).where(UpsertItem.name == row["name"])
    found = session.scalars(statement).first()
    if found is not None:
        return found, False
    try:
        with session.begin_nested():
            item = UpsertItem(**row)
            session.add(item)
        return item, True
    except IntegrityError:
        return session.scalars(statement.with_for_update(read=True)).one(), False


def run_all(target: Any, sql: str, tuples: list[tuple[Any, ...]], *, many: bool) -> None:
    if many:
        target.executemany(sql, tuples)
        return
    for values in tuples:
        target.execute(sql, values)


def markdown_section(results: list[Result], info: dict[str, str], args: argparse.Namespace, load: str) -> str:
    lines = [f"## Upsert benchmarks, {info['date']}", ""]
    lines += [f"- **{key}**: {value}" for key, value in info.items() if key != "date"]
    lines += [f"- **load** (`uptime` before the run): {load}"]
    command = " ".join(["bench/bench_upsert.py", *sys.argv[1:]])
    lines += [f"- **run**: `{command}`: {args.rows:,} rows per upsert_many, {args.singles:,} single upserts, "
              f"{args.repeats} repeats; half the keys exist before each run (half insert, half update)", ""]
    lines += ["| # | measurement | ours (median s) | baseline (median s) | ratio | target | result |",
              "|---|---|---|---|---|---|---|"]
    lines += [f"| {r.key} | {r.title} | {r.ours_label}: {r.ours_median:.6f} | {r.base_label}: {r.base_median:.6f} "
              f"| {r.ratio_text} | {r.target_text} | **{r.verdict}** |" for r in results]
    return "\n".join(lines) + "\n"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Benchmark upsert_many and upsert against the raw drivers.")
    parser.add_argument("--rows", type=int, default=10_000, help="rows per upsert_many (default 10000)")
    parser.add_argument("--singles", type=int, default=2_000, help="single upserts per repeat (default 2000)")
    parser.add_argument("--repeats", type=int, default=5, help="repeats of every measurement (default 5)")
    parser.add_argument("--pg-url", default=DEFAULT_PG_URL, help=f"PostgreSQL URL (default {DEFAULT_PG_URL})")
    parser.add_argument("--skip-postgres", action="store_true", help="skip the PostgreSQL comparisons")
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS, help="markdown file to append to")
    parser.add_argument("--no-write", action="store_true", help="print only; leave the results file alone")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    load = os.popen("uptime").read().strip()
    print(load, flush=True)
    results: list[Result] = []
    pg_version: str | None = None
    with tempfile.TemporaryDirectory(prefix="bench-upsert-") as directory:
        benches: list[Callable[[], Bench]] = [lambda: SQLiteBench(Path(directory) / "bench.db", args.rows,
                                                                  args.singles, args.repeats)]
        if not args.skip_postgres:
            benches.append(lambda: PostgresBench(args.pg_url, args.rows, args.singles, args.repeats))
        for make in benches:
            bench = make()
            try:
                results += bench.run()
                pg_version = getattr(bench, "server_version", pg_version)
            finally:
                UpsertItem.__table__.drop(bench.engine, checkfirst=True)
                AAUpsertItem.__table__.drop(bench.engine, checkfirst=True)
                bench.database.dispose()
    info = versions(pg_version)
    print()
    print(text_table(results))
    if not args.no_write:
        with args.results.open("a", encoding="utf-8") as results_file:
            results_file.write("\n" + markdown_section(results, info, args, load))
        print(f"\nappended to {args.results}")
    return 1 if any(r.verdict == "FAIL" for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
