#!/usr/bin/env python
"""Benchmarks of the foundation's hot paths against their baselines, with PASS/FAIL against each target.

    .venv/bin/python bench/bench_foundation.py                 # full size, writes bench/RESULTS.md
    .venv/bin/python bench/bench_foundation.py --rows 10000 --repeats 3 --no-write   # a quick look
    .venv/bin/python bench/bench_foundation.py --skip-postgres --profile

Every measurement runs ``--repeats`` times, the two sides interleaved (and their order alternated) so that a
noisy machine hurts both alike; the table shows the median seconds of each side and the ratio of the medians.
SQLite runs on a WAL-mode file in a temporary directory (never ``db/data/app.db``); PostgreSQL on its own
``bench_item`` table, dropped at the end.

What each side times (set-up such as fresh tables, pre-built rows and open raw connections is untimed):

1.  ``uow.repository(ItemRepository).create_many(dicts)`` in a unit of work, commit included, vs sqlite3's
    ``executemany`` of pre-built 6-tuples between ``BEGIN IMMEDIATE`` and ``COMMIT`` (WAL, synchronous=NORMAL);
    1b: Core ``conn.execute(insert(table), dicts)`` for context.
2.  the same ``create_many`` vs advanced-alchemy's ``add_many([AAItem(**d) for d in dicts])`` plus commit.
3.  ``create_many(dicts, returning=True)`` vs the raw ``executemany`` of 1.
4.  the sum of 10,000 ``repo.get_by_id(id)`` vs ``session.get(Item, id)`` calls, identity map emptied between.
5.  ``page(after=cursor_of_page_999)`` vs ``page()`` (page 1), per call; 5b/5c investigate a failure of 5.
6.  ``create_many`` on PostgreSQL vs psycopg's ``cursor.executemany`` of pre-built tuples, commit included.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import gc
import io
import os
import platform
import pstats
import random
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, ClassVar

import psycopg
import uuid_utils
from advanced_alchemy.base import UUIDv7AuditBase
from advanced_alchemy.repository import SQLAlchemySyncRepository
from sqlalchemy import BigInteger, Engine, MetaData, Select, String, and_, event, insert, or_, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, declared_attr, mapped_column

from db import Database
from db.base import NAMING_CONVENTION, TABLE_OPTIONS, TYPE_ANNOTATION_MAP, ReprMixin
from db.models.base import Timestamps, UUIDPrimaryKey, new_id
from db.repositories import query_spec
from db.repositories.base_repository import BaseRepository

HERE = Path(__file__).resolve().parent
DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
DEFAULT_RESULTS = HERE / "RESULTS.md"
RESULTS_TITLE = "# Foundation benchmarks"
PAGE_SIZE = 50
PAGE_NUMBER = 1_000
CATEGORIES = 1_000


# --- models -------------------------------------------------------------------------------------------------


class BenchBase(ReprMixin, DeclarativeBase):
    """Built like ``tests.models.TestBase``: the application's conventions on a metadata of its own."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = TYPE_ANNOTATION_MAP

    @declared_attr.directive
    def __table_args__(cls) -> dict[str, Any]:  # noqa: N805 - a declared_attr takes the class
        return dict(TABLE_OPTIONS)


class BenchItem(UUIDPrimaryKey, Timestamps, BenchBase):
    """Six columns: id, created_at, updated_at and three data columns."""

    __tablename__ = "bench_item"

    name: Mapped[str]
    quantity: Mapped[int]
    price: Mapped[float]


class BenchPageItem(UUIDPrimaryKey, Timestamps, BenchBase):
    """For paging: ordered by ``category``, non-unique (~1,000 values), with a plain single-column index."""

    __tablename__ = "bench_page_item"

    category: Mapped[str] = mapped_column(String(50), index=True)
    name: Mapped[str]


class ItemRepository(BaseRepository[BenchItem]):
    model = BenchItem


class PageItemRepository(BaseRepository[BenchPageItem]):
    model = BenchPageItem


class AAItem(UUIDv7AuditBase):
    """advanced-alchemy's equivalent: UUIDv7 id, created_at, updated_at (plus its nullable sentinel)."""

    __tablename__ = "aa_bench_item"

    name: Mapped[str] = mapped_column(String(255))
    quantity: Mapped[int] = mapped_column(BigInteger)
    price: Mapped[float]


class AAItemRepository(SQLAlchemySyncRepository[AAItem]):
    model_type = AAItem


# --- measurements -------------------------------------------------------------------------------------------


@dataclass
class Result:
    """One comparison: seconds per repeat of each side, and the target on the ratio of their medians."""

    key: str
    title: str
    ours_label: str
    base_label: str
    ours: list[float] = field(default_factory=list)
    base: list[float] = field(default_factory=list)
    limit: float | None = None  # None: for context only
    speedup: bool = False  # True: the target is base/ours >= limit; otherwise ours/base <= limit
    note: str = ""

    @property
    def ours_median(self) -> float:
        return statistics.median(self.ours)

    @property
    def base_median(self) -> float:
        return statistics.median(self.base)

    @property
    def ratio(self) -> float:
        if self.speedup:
            return self.base_median / self.ours_median
        return self.ours_median / self.base_median

    @property
    def ratio_text(self) -> str:
        return f"{self.ratio:.2f}x faster" if self.speedup else f"{self.ratio:.2f}x"

    @property
    def target_text(self) -> str:
        if self.limit is None:
            return "(context)"
        return f"≥ {self.limit:g}x faster" if self.speedup else f"≤ {self.limit:g}x"

    @property
    def verdict(self) -> str:
        if self.limit is None:
            return "-"
        passed = self.ratio >= self.limit if self.speedup else self.ratio <= self.limit
        return "PASS" if passed else "FAIL"

    @property
    def spread(self) -> str:
        return f"{_span(self.ours)} / {_span(self.base)}"


def _span(values: Sequence[float]) -> str:
    return f"{_seconds(min(values))}-{_seconds(max(values))}"


def _seconds(value: float) -> str:
    if value >= 1:
        return f"{value:.3f} s"
    if value >= 1e-3:
        return f"{value * 1e3:.1f} ms"
    return f"{value * 1e6:.1f} µs"


def interleaved(
    result: Result,
    repeats: int,
    ours: Callable[[], float],
    base: Callable[[], float],
    setup: Callable[[], None] | None = None,
) -> Result:
    """Run both sides ``repeats`` times, alternating which goes first; each call returns its own seconds."""
    sides = [(ours, result.ours), (base, result.base)]
    for repeat in range(repeats):
        for run, sink in sides if repeat % 2 == 0 else sides[::-1]:
            if setup is not None:
                setup()
            gc.collect()
            sink.append(run())
    print(f"  {result.title}: ours {_seconds(result.ours_median)}, baseline {_seconds(result.base_median)}, "
          f"{result.ratio_text} [{result.verdict}]", flush=True)
    return result


@contextmanager
def stopwatch() -> Iterator[list[float]]:
    box: list[float] = []
    start = time.perf_counter()
    try:
        yield box
    finally:
        box.append(time.perf_counter() - start)


# --- data ---------------------------------------------------------------------------------------------------


def item_rows(count: int) -> list[dict[str, Any]]:
    return [{"name": f"item-{i:07d}", "quantity": i % 997, "price": i * 0.25} for i in range(count)]


def page_rows(count: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [{"category": f"cat-{rng.randrange(CATEGORIES):04d}", "name": f"row-{i:07d}"}
            for i in range(count)]


def sqlite_timestamp(moment: dt.datetime) -> str:
    """What SQLAlchemy's DateTime stores on SQLite (UTC, naive, microseconds)."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def insert_sql(placeholder: str) -> str:
    columns = ["id", "created_at", "updated_at", "name", "quantity", "price"]
    return f"INSERT INTO bench_item ({', '.join(columns)}) VALUES ({', '.join([placeholder] * len(columns))})"


# --- SQLite -------------------------------------------------------------------------------------------------


class SQLiteBench:
    def __init__(self, path: Path, rows: int, repeats: int, lookups: int, page_calls: int, seed: int) -> None:
        self.path = path
        self.url = f"sqlite:///{path}"
        self.database = Database(self.url)
        self.engine: Engine = self.database.engine
        self.rows = rows
        self.repeats = repeats
        self.lookups = lookups
        self.page_calls = page_calls
        self.seed = seed
        self.data = item_rows(rows)
        self.notes: list[str] = []

    # set-up

    def reset(self, *tables: Any) -> None:
        """Fresh, empty tables and an empty WAL: every timed run starts from the same state."""
        for table in tables:
            table.drop(self.engine, checkfirst=True)
            table.create(self.engine)
        with self.engine.connect() as connection:
            connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            connection.commit()

    def raw_connection(self) -> sqlite3.Connection:
        connection = sqlite3.connect(self.path, isolation_level=None)
        for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON", "busy_timeout=5000"):
            connection.execute(f"PRAGMA {pragma}")
        mode = connection.execute("PRAGMA journal_mode").fetchone()[0]
        if mode != "wal":
            raise RuntimeError(f"expected WAL mode, got {mode}")
        return connection

    def raw_tuples(self) -> list[tuple[Any, ...]]:
        stamp = sqlite_timestamp(dt.datetime.now(dt.UTC))
        return [(uuid_utils.uuid7().hex, stamp, stamp, row["name"], row["quantity"], row["price"])
                for row in self.data]

    # sides

    def ours_create_many(self, *, returning: bool = False) -> float:
        with stopwatch() as elapsed, self.database.unit_of_work() as uow:
            result = uow.repository(ItemRepository).create_many(self.data, returning=returning)
        count = len(result) if isinstance(result, list) else result
        assert count == len(self.data), count
        del result
        return elapsed[0]

    def raw_executemany(self) -> float:
        tuples = self.raw_tuples()
        connection = self.raw_connection()
        sql = insert_sql("?")
        try:
            with stopwatch() as elapsed:
                connection.execute("BEGIN IMMEDIATE")
                connection.executemany(sql, tuples)
                connection.execute("COMMIT")
        finally:
            connection.close()
        return elapsed[0]

    def core_insert(self) -> float:
        table = BenchItem.__table__
        with stopwatch() as elapsed, self.engine.begin() as connection:
            connection.execute(insert(table), self.data)
        return elapsed[0]

    def aa_add_many(self) -> float:
        with stopwatch() as elapsed, self.database.session() as session:
            repository = AAItemRepository(session=session)
            added = repository.add_many([AAItem(**row) for row in self.data])
        assert len(added) == len(self.data)
        del added
        return elapsed[0]

    # comparisons

    def run(self) -> list[Result]:
        items, aa_items = BenchItem.__table__, AAItem.__table__
        self.warm_up()
        results = []
        print(f"SQLite {sqlite3.sqlite_version} (WAL, synchronous=NORMAL) at {self.path}", flush=True)

        raw = Result("1", f"create_many {self.rows:,} rows vs sqlite3 executemany", "create_many",
                     "sqlite3 executemany", limit=2.5)
        core = Result("1b", f"Core insert(table) {self.rows:,} dicts vs sqlite3 executemany",
                      "conn.execute(insert, dicts)", "sqlite3 executemany")
        # One interleaved loop for create_many, raw and Core, so the three share the same machine conditions.
        sides = [(self.ours_create_many, raw.ours), (self.raw_executemany, raw.base),
                 (self.core_insert, core.ours)]
        for repeat in range(self.repeats):
            for run, sink in sides[repeat % 3:] + sides[:repeat % 3]:
                self.reset(items)
                gc.collect()
                sink.append(run())
        core.base = raw.base
        for result in (raw, core):
            print(f"  {result.title}: ours {_seconds(result.ours_median)}, baseline "
                  f"{_seconds(result.base_median)}, {result.ratio_text} [{result.verdict}]", flush=True)
        results += [raw, core]

        results.append(interleaved(
            Result("2", f"create_many {self.rows:,} rows vs advanced-alchemy add_many", "create_many",
                   "SQLAlchemySyncRepository.add_many", limit=10, speedup=True,
                   note="add_many's side includes building the model instances from the same dicts."),
            self.repeats, self.ours_create_many, self.aa_add_many, setup=lambda: self.reset(items, aa_items),
        ))
        results.append(interleaved(
            Result("3", f"create_many(returning=True) {self.rows:,} rows vs sqlite3 executemany",
                   "create_many(returning=True)", "sqlite3 executemany", limit=8),
            self.repeats, lambda: self.ours_create_many(returning=True), self.raw_executemany,
            setup=lambda: self.reset(items),
        ))
        results.append(self.get_by_id())
        results += self.paging()
        return results

    def warm_up(self) -> None:
        """Import, compile and connect everything once, untimed."""
        saved, self.data = self.data, self.data[:1_000]
        try:
            self.reset(BenchItem.__table__, AAItem.__table__)
            self.ours_create_many(returning=True)
            self.raw_executemany()
            self.core_insert()
            self.aa_add_many()
        finally:
            self.data = saved

    def get_by_id(self) -> Result:
        self.reset(BenchItem.__table__)
        self.ours_create_many()
        with self.engine.connect() as connection:
            found = connection.exec_driver_sql("SELECT id FROM bench_item").scalars()
            ids = [uuid.UUID(hex=raw) for raw in found]
        picked = random.Random(self.seed).sample(ids, min(self.lookups, len(ids)))

        def lookups(use_repository: bool) -> float:
            total = 0.0
            with self.database.unit_of_work() as uow:
                repository, session = uow.repository(ItemRepository), uow.session
                for ident in picked:
                    start = time.perf_counter()
                    found = repository.get_by_id(ident) if use_repository else session.get(BenchItem, ident)
                    total += time.perf_counter() - start
                    assert found is not None
                    session.expunge_all()  # untimed: the next lookup misses the identity map again
            return total

        return interleaved(
            Result("4", f"get_by_id x {len(picked):,} random ids (identity map empty) vs session.get",
                   "repo.get_by_id", "session.get", limit=1.2,
                   note="sum of the lookups only; expunge_all() between lookups is not timed."),
            self.repeats, lambda: lookups(True), lambda: lookups(False),
        )

    # paging

    def paging(self) -> list[Result]:
        """#5, then why: the same page with a bounded predicate (5b), and with a (category, id) index (5c)."""
        table = BenchPageItem.__table__
        self.reset(table)
        with self.database.unit_of_work() as uow:
            uow.repository(PageItemRepository).create_many(page_rows(self.rows, self.seed))
        self.analyze()
        cursor = self.cursor_for_page(PAGE_NUMBER)
        index = ", ".join(f"{ix.name}({', '.join(c.name for c in ix.columns)})" for ix in table.indexes)

        def repository_page(session: Session) -> list[Any]:
            page = PageItemRepository(session).page(order_by=["category"], size=PAGE_SIZE, after=cursor)
            return page.items

        def bounded_page(session: Session) -> list[Any]:
            return list(session.scalars(self.bounded_statement(cursor)))[:PAGE_SIZE]

        results = [self.compare_pages("5", repository_page, f"page(), index {index}", limit=2)]
        self.notes.append(self.query_plan(repository_page, f"page() as it is, index {index}"))
        bounded = "page()'s WHERE plus a leading 'category >= :c'"
        results.append(self.compare_pages("5b", bounded_page, f"hand-written: {bounded}", limit=None))
        self.notes.append(self.query_plan(bounded_page, f"hand-written, {bounded}, index {index}"))
        with self.engine.begin() as connection:
            connection.exec_driver_sql(
                "CREATE INDEX ix_bench_page_item_category_id ON bench_page_item (category, id)")
        self.analyze()
        results.append(self.compare_pages("5c", repository_page, "page(), extra index on (category, id)",
                                          limit=None))
        self.notes.append(self.query_plan(repository_page, "page() as it is, extra index on (category, id)"))
        return results

    def analyze(self) -> None:
        with self.engine.begin() as connection:
            connection.exec_driver_sql("ANALYZE")

    def cursor_for_page(self, number: int) -> str:
        """The ``next_cursor`` of page ``number - 1``: the sort key of the last row before page ``number``."""
        start = (number - 1) * PAGE_SIZE
        with self.database.session() as session:
            repository = PageItemRepository(session)
            before = repository.list(order_by=["category"], limit=1, offset=start - 1)[0]
            policy = repository.policy()
            keys = query_spec.parse_order(policy, ["category"])
            cursor = query_spec.encode_cursor(policy, keys, [before.category, before.id])
            # The cursor must give exactly the rows that OFFSET gives ...
            expected = repository.list(order_by=["category"], limit=PAGE_SIZE, offset=start)
            page = repository.page(order_by=["category"], size=PAGE_SIZE, after=cursor)
            assert _ids(page.items) == _ids(expected), "cursor and offset disagree"
            assert _ids(list(session.scalars(self.bounded_statement(cursor)))[:PAGE_SIZE]) == _ids(expected)
            # ... and following next_cursor from page 1 must give the rows in order.
            first = repository.page(order_by=["category"], size=PAGE_SIZE)
            second = repository.page(order_by=["category"], size=PAGE_SIZE, after=first.next_cursor)
            head = repository.list(order_by=["category"], limit=2 * PAGE_SIZE)
            assert _ids(first.items + second.items) == _ids(head), "cursor chain broken"
        return cursor

    @staticmethod
    def bounded_statement(cursor: str) -> Select[Any]:
        """What ``page(after=cursor)`` sends, with the first sort key also bounded on its own."""
        policy = PageItemRepository.policy()
        keys = query_spec.parse_order(policy, ["category"])
        category, ident = query_spec.decode_cursor(policy, keys, cursor)
        column, pk = BenchPageItem.__table__.c.category, BenchPageItem.__table__.c.id
        after = or_(column > category, and_(column == category, pk > ident))
        return (select(BenchPageItem).where(column >= category, after)
                .order_by(column.asc(), pk.asc()).limit(PAGE_SIZE + 1))

    def compare_pages(self, key: str, page: Callable[[Session], list[Any]], how: str,
                      limit: float | None) -> Result:
        def fetch(after: Callable[[Session], list[Any]] | None) -> float:
            total = 0.0
            with self.database.session() as session:
                repository = PageItemRepository(session)
                for _ in range(self.page_calls):
                    start = time.perf_counter()
                    if after is None:
                        items = repository.page(order_by=["category"], size=PAGE_SIZE).items
                    else:
                        items = after(session)
                    total += time.perf_counter() - start
                    assert len(items) == PAGE_SIZE
                    session.expunge_all()
            return total / self.page_calls

        return interleaved(
            Result(key, f"page {PAGE_NUMBER:,} vs page 1 (size {PAGE_SIZE}, by category; {how})",
                   f"page {PAGE_NUMBER}", "page(1)", limit=limit,
                   note=f"seconds per call, mean of {self.page_calls} calls per repeat."),
            self.repeats, lambda: fetch(page), lambda: fetch(None),
        )

    def query_plan(self, page: Callable[[Session], list[Any]], label: str) -> str:
        """SQLite's plan for the SELECT that ``page`` really sends."""
        captured: list[tuple[str, Any]] = []

        def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
            if statement.lstrip().upper().startswith("SELECT"):
                captured.append((statement, parameters))

        with self.database.session() as session:
            event.listen(self.engine, "before_cursor_execute", capture)
            try:
                page(session)
            finally:
                event.remove(self.engine, "before_cursor_execute", capture)
            statement, parameters = captured[-1]
            plan = session.connection().exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters).all()
        where = " ".join(statement[statement.upper().index("WHERE"):].split())
        return "\n".join([f"Query plan of page {PAGE_NUMBER}, {label}:", f"    ... {where}",
                          *(f"    {row[-1]}" for row in plan)])


def _ids(items: Sequence[Any]) -> list[Any]:
    return [item.id for item in items]


# --- PostgreSQL ---------------------------------------------------------------------------------------------


class PostgresBench:
    def __init__(self, url: str, rows: int, repeats: int) -> None:
        self.database = Database(url)
        self.engine: Engine = self.database.engine
        self.rows = rows
        self.repeats = repeats
        self.data = item_rows(rows)
        self.conninfo = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        self.server_version = ""

    def reset(self) -> None:
        table = BenchItem.__table__
        table.drop(self.engine, checkfirst=True)
        table.create(self.engine)

    def ours_create_many(self) -> float:
        with stopwatch() as elapsed, self.database.unit_of_work() as uow:
            count = uow.repository(ItemRepository).create_many(self.data)
        assert count == len(self.data)
        return elapsed[0]

    def psycopg_executemany(self) -> float:
        stamp = dt.datetime.now(dt.UTC)
        tuples = [
            (new_id(), stamp, stamp, row["name"], row["quantity"], row["price"])
            for row in self.data
        ]
        sql = insert_sql("%s")
        connection = psycopg.connect(self.conninfo, options="-c timezone=UTC")
        try:
            with stopwatch() as elapsed, connection.cursor() as cursor:
                cursor.executemany(sql, tuples)
                connection.commit()
        finally:
            connection.close()
        return elapsed[0]

    def run(self) -> list[Result]:
        with self.engine.connect() as connection:
            self.server_version = str(connection.scalar(text("SHOW server_version")))
        print(f"PostgreSQL {self.server_version} at {self.database!r}", flush=True)
        saved, self.data = self.data, self.data[:1_000]
        try:
            self.reset()
            self.ours_create_many()
            self.psycopg_executemany()
        finally:
            self.data = saved
        return [interleaved(
            Result("6", f"PostgreSQL create_many {self.rows:,} rows vs psycopg executemany", "create_many",
                   "psycopg cursor.executemany", limit=2),
            self.repeats, self.ours_create_many, self.psycopg_executemany, setup=self.reset,
        )]

    def close(self) -> None:
        BenchItem.__table__.drop(self.engine, checkfirst=True)
        self.database.dispose()


# --- profiling ----------------------------------------------------------------------------------------------


def profile(label: str, run: Callable[[], Any], setup: Callable[[], None] | None = None,
            top: int = 25) -> str:
    """Our code's share by cumulative time, then the hottest functions overall by own time."""
    if setup is not None:
        setup()
    profiler = cProfile.Profile()
    profiler.enable()
    run()
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("cumulative").print_stats(r"/db/(repositories|session)", 15)
    stats.strip_dirs().sort_stats("tottime").print_stats(top)
    return f"--- cProfile of {label} ---\n{out.getvalue().replace(str(Path.cwd()) + '/', '')}"


def profile_failures(results: list[Result], bench: SQLiteBench, pg: PostgresBench | None) -> list[str]:
    items = BenchItem.__table__
    runners: dict[str, tuple[Callable[[], Any], Callable[[], None] | None]] = {
        "1": (bench.ours_create_many, lambda: bench.reset(items)),
        "2": (bench.ours_create_many, lambda: bench.reset(items)),
        "3": (lambda: bench.ours_create_many(returning=True), lambda: bench.reset(items)),
    }
    if pg is not None:
        runners["6"] = (pg.ours_create_many, pg.reset)
    return [profile(f"#{r.key} {r.ours_label}", *runners[r.key]) for r in results
            if r.verdict == "FAIL" and r.key in runners]


# --- report -------------------------------------------------------------------------------------------------


def versions(pg_version: str | None) -> dict[str, str]:
    found = {
        "date": dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "machine": f"{platform.platform()}, {platform.machine()}, {os.cpu_count()} CPUs",
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "SQLAlchemy": metadata.version("sqlalchemy"),
        "advanced-alchemy": metadata.version("advanced-alchemy"),
        "psycopg": metadata.version("psycopg"),
    }
    if pg_version:
        found["PostgreSQL"] = pg_version
    return found


def text_table(results: list[Result]) -> str:
    header = ("#", "measurement", "ours (median)", "baseline (median)", "ratio", "target", "result")
    rows = [(r.key, r.title, f"{r.ours_label}: {_seconds(r.ours_median)}",
             f"{r.base_label}: {_seconds(r.base_median)}", r.ratio_text, r.target_text, r.verdict)
            for r in results]
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    line = "  ".join("-" * width for width in widths)
    def joined(cells: Sequence[str]) -> str:
        return "  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True)).rstrip()

    return "\n".join([joined(header), line, *(joined(row) for row in rows)])


def markdown_section(results: list[Result], info: dict[str, str], args: argparse.Namespace,
                     notes: list[str], skipped: str | None, profiles: list[str]) -> str:
    lines = [f"## {info['date']}", ""]
    lines += [f"- **{key}**: {value}" for key, value in info.items() if key != "date"]
    command = " ".join(["bench/bench_foundation.py", *sys.argv[1:]])
    lines += [f"- **run**: `{command}`: {args.rows:,} rows, {args.repeats} repeats, "
              f"{args.lookups:,} lookups, {args.page_calls} page calls per repeat", ""]
    lines += ["| # | measurement | ours (median s) | baseline (median s) | ratio | target | result | "
              "spread (min-max ours / baseline) |",
              "|---|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r.key} | {r.title} | {r.ours_label}: {r.ours_median:.6f} | "
                     f"{r.base_label}: {r.base_median:.6f} | {r.ratio_text} | {r.target_text} | "
                     f"{f'**{r.verdict}**' if r.limit is not None else r.verdict} | {r.spread} |")
    if skipped:
        lines.append(f"| 6 | PostgreSQL create_many | - | - | - | ≤ 2x | SKIPPED ({skipped}) | |")
    lines.append("")
    lines += [f"- #{r.key}: {r.note}" for r in results if r.note]
    if notes:
        lines += ["", "```", *"\n\n".join(notes).splitlines(), "```"]
    for text_ in profiles:
        title = text_.splitlines()[0].strip("- ")
        lines += ["", f"<details><summary>{title}</summary>", "", "```", *text_.splitlines()[1:], "```", "",
                  "</details>"]
    return "\n".join(lines) + "\n"


def write_results(path: Path, section: str) -> None:
    """Newest section first, under the title; earlier sections are kept."""
    intro = (f"{RESULTS_TITLE}\n\nWritten by `bench/bench_foundation.py` (newest run first). Ratios are "
             "ratios of medians over the repeats; the script's docstring says what each side times.\n\n")
    old = path.read_text(encoding="utf-8") if path.exists() else ""
    start = old.find("\n## ")
    previous = old[start + 1:] if start >= 0 else ""
    path.write_text(intro + section + ("\n" + previous if previous else ""), encoding="utf-8")


# --- main ---------------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark create_many, get_by_id and page() against raw drivers, SQLAlchemy and "
                    "advanced-alchemy; print PASS/FAIL against each target and update bench/RESULTS.md.",
    )
    parser.add_argument("--rows", type=int, default=100_000, help="rows per table (default 100000)")
    parser.add_argument("--repeats", type=int, default=5, help="repeats of every measurement (default 5)")
    parser.add_argument("--lookups", type=int, default=10_000, help="get_by_id lookups (default 10000)")
    parser.add_argument("--page-calls", type=int, default=100, help="page() calls per repeat (default 100)")
    parser.add_argument("--pg-url", default=DEFAULT_PG_URL, help=f"PostgreSQL URL (default {DEFAULT_PG_URL})")
    parser.add_argument("--skip-postgres", action="store_true", help="skip the PostgreSQL comparison")
    parser.add_argument("--seed", type=int, default=20_240_601, help="random seed for ids and categories")
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS, help="markdown file to update")
    parser.add_argument("--no-write", action="store_true", help="print only; leave the results file alone")
    parser.add_argument("--profile", action="store_true", help="cProfile our side of every failed target")
    args = parser.parse_args(argv)
    needed = PAGE_NUMBER * PAGE_SIZE + PAGE_SIZE
    if args.rows < needed:
        parser.error(f"--rows must be at least {needed} for a full page {PAGE_NUMBER} with a next page")
    if args.repeats < 1 or args.lookups < 1 or args.page_calls < 1:
        parser.error("--repeats, --lookups and --page-calls must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    results: list[Result] = []
    notes: list[str] = []
    profiles: list[str] = []
    skipped: str | None = "--skip-postgres" if args.skip_postgres else None
    pg: PostgresBench | None = None
    with tempfile.TemporaryDirectory(prefix="bench-foundation-") as directory:
        bench = SQLiteBench(Path(directory) / "bench.db", args.rows, args.repeats, args.lookups,
                            args.page_calls, args.seed)
        try:
            results += bench.run()
            notes += bench.notes
            if not args.skip_postgres:
                pg = PostgresBench(args.pg_url, args.rows, args.repeats)
                try:
                    results += pg.run()
                except Exception as error:  # an unreachable server: reported, not fatal
                    skipped = f"{type(error).__name__}: {str(error).splitlines()[0][:120]}"
                    pg.database.dispose()
                    pg = None
                    print(f"PostgreSQL skipped: {skipped}", flush=True)
            if args.profile:
                profiles = profile_failures(results, bench, pg)
        finally:
            bench.database.dispose()
            if pg is not None:
                pg.close()

    info = versions(pg.server_version if pg else None)
    print()
    print("\n".join(f"{key}: {value}" for key, value in info.items()))
    print()
    print(text_table(results))
    if skipped:
        print(f"6  PostgreSQL create_many: SKIPPED ({skipped})")
    for note in notes:
        print(f"\n{note}")
    for text_ in profiles:
        print(f"\n{text_}")
    if not args.no_write:
        write_results(args.results, markdown_section(results, info, args, notes, skipped, profiles))
        print(f"\nwrote {args.results}")
    return 1 if any(r.verdict == "FAIL" for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
