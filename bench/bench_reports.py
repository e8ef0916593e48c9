#!/usr/bin/env python
"""Reports at scale on SQLite: each report vs the same aggregation written by hand and run through sqlite3.

    .venv/bin/python bench/bench_reports.py                    # full size, appends a section to bench/RESULTS.md
    .venv/bin/python bench/bench_reports.py --audit-rows 100000 --users 10000 --repeats 3 --no-write
    .venv/bin/python bench/bench_reports.py --db /tmp/reports.db       # keep the generated file and reuse it
    .venv/bin/python bench/bench_reports.py --without-extra-indexes    # only the models' own indexes

The data (1,000,000 audit entries, 100,000 users, 10,000 accounts, 200,000 files over the year 2025 by default)
is generated with Core bulk inserts (``exec_driver_sql`` of tuples) straight into a dedicated SQLite file in a
temporary directory, never ``db/data/app.db``. The audit chain is synthetic (random hashes): this measures
aggregation, not the chain. The schema is the application's (``Base.metadata.create_all``) plus, unless
``--without-extra-indexes``, the indexes the reports need that other tables' models do not declare yet
(``EXTRA_INDEXES``). ``ANALYZE`` is not run: the application never runs it either.

What each side times (opening connections and the data are untimed; the same machine state for both, as the
sides run interleaved and alternate which goes first):

- ours: ``ReportService(session).<report>(...)`` in a fresh ``database.session()`` (its BEGIN and COMMIT
  included), returning the typed rows;
- baseline: ``conn.execute(sql, params).fetchall()`` on an open ``sqlite3`` connection, where ``sql`` is the
  aggregation as one would write it by hand (``HAND_WRITTEN``), not the SQL the repository generates.

Both sides must return the same rows (checked before timing). The target is ours / baseline ≤ 1.5 on the median
of ``--repeats`` runs. The query plans of the repository's statements are printed and recorded.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import gc
import os
import platform
import random
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import uuid_utils
from sqlalchemy import Engine, event

import db.models  # noqa: F401 - every model on Base.metadata
from db import Database
from db.base import Base
from db.models.file_blob import FileBlob  # noqa: F401 - the file tables (not yet in db.models)
from db.models.file_object import StoredFile  # noqa: F401
from db.services.reports import ReportService

HERE = Path(__file__).resolve().parent
DEFAULT_RESULTS = HERE / "RESULTS.md"
SECTION_TITLE = "Report benchmarks (issue 4)"
LIMIT = 1.5
YEAR = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
YEAR_SECONDS = 365 * 24 * 3600
BATCH = 50_000

# Indexes the reports need on tables whose models are not ours; the models and migration 0004 get them.
EXTRA_INDEXES = {
    "ix_user_created_at": 'CREATE INDEX ix_user_created_at ON "user" (created_at)',
    "ix_audit_entry_action_created_at": "CREATE INDEX ix_audit_entry_action_created_at ON audit_entry "
                                        "(action, created_at, entity_id)",
}

ACTIONS = [  # (action, kind, weight): the activity mix of the synthetic log
    ("login.success", "event", 45), ("login.failure", "event", 8), ("user.locked", "event", 1),
    ("token.issued", "event", 5), ("token.consumed", "event", 4), ("create", "change", 14),
    ("update", "change", 20), ("delete", "change", 3),
]
PLANS = [("free", 70), ("pro", 25), ("enterprise", 5)]
STATUSES = [("active", 90), ("suspended", 7), ("closed", 3)]
CONTENT_TYPES = [
    "image/png", "image/jpeg", "image/gif", "image/webp", "application/pdf", "text/plain", "text/csv",
    "application/zip", "application/json", "video/mp4", "audio/mpeg", "application/octet-stream",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document", "text/html", "image/svg+xml",
]


# --- data ---------------------------------------------------------------------------------------------------


def stamp(seconds: float) -> str:
    """What ``UTCDateTime`` stores on SQLite for ``YEAR + seconds``."""
    return (YEAR + dt.timedelta(seconds=seconds)).strftime("%Y-%m-%d %H:%M:%S.%f")


def insert(connection: Any, table: str, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]) -> None:
    names = ", ".join(f'"{name}"' for name in columns)
    marks = ", ".join("?" * len(columns))
    connection.exec_driver_sql(f'INSERT INTO "{table}" ({names}) VALUES ({marks})', list(rows))


def batches(count: int) -> Iterator[range]:
    for start in range(0, count, BATCH):
        yield range(start, min(count, start + BATCH))


def generate(database: Database, args: argparse.Namespace) -> dict[str, int]:
    """Fill the schema with synthetic data; returns the row counts."""
    rng = random.Random(args.seed)
    started = time.perf_counter()
    with database.engine.begin() as connection:
        users = [uuid_utils.uuid7() for _ in range(args.users)]
        user_hex = [ident.hex for ident in users]
        user_text = [str(ident) for ident in users]
        columns = ["id", "email", "email_key", "is_active", "is_verified", "must_change_password",
                   "failed_login_count", "created_at", "updated_at", "deleted_at", "version"]
        for chunk in batches(args.users):
            rows: list[tuple[Any, ...]] = []
            for i in chunk:
                created = stamp(rng.random() * YEAR_SECONDS)
                email = f"user{i}@example.com"
                deleted = created if rng.random() < 0.02 else None
                rows.append((user_hex[i], email, email, 1, 0, 0, 0, created, created, deleted, 1))
            insert(connection, "user", columns, rows)

        accounts = [uuid_utils.uuid7().hex for _ in range(args.accounts)]
        plans, plan_weights = zip(*PLANS, strict=True)
        statuses, status_weights = zip(*STATUSES, strict=True)
        rows = []
        for i, ident in enumerate(accounts):
            created = stamp(rng.random() * YEAR_SECONDS)
            deleted = created if rng.random() < 0.01 else None
            rows.append((ident, f"Account {i}", f"account-{i}", rng.choices(plans, plan_weights)[0],
                         rng.choices(statuses, status_weights)[0], 10 * 2**30, created, created, deleted, 1))
        insert(connection, "account", ["id", "name", "slug", "plan", "status", "storage_quota_bytes", "created_at",
                                       "updated_at", "deleted_at", "version"], rows)

        actors = rng.sample(user_text, max(1, args.users // 5))  # a fifth of the users act; plus system and none
        names, kinds, weights = zip(*ACTIONS, strict=True)
        moments = sorted(rng.random() * YEAR_SECONDS for _ in range(args.audit_rows))
        columns = ["id", "seq", "kind", "action", "entity_type", "entity_id", "actor", "changes", "data",
                   "created_at", "prev_hash", "hash"]
        prev = "0" * 64
        for chunk in batches(args.audit_rows):
            rows = []
            for i in chunk:
                index = rng.choices(range(len(names)), weights)[0]
                action, kind = names[index], kinds[index]
                user = user_text[min(int(rng.paretovariate(1.2)) - 1, args.users - 1) * 7919 % args.users]
                if kind == "event":
                    entity, actor = ("user", user), (user if action == "login.success" else None)
                    data, changes = f'{{"user_id":"{user}"}}', None
                else:
                    entity, actor = ("note", str(uuid_utils.uuid7())), rng.choice([*actors[:50], "system", None])
                    data, changes = None, '{"title":["draft","final"],"stars":[3,4]}'
                digest = f"{rng.getrandbits(256):064x}"
                rows.append((uuid_utils.uuid7().hex, i + 1, kind, action, *entity, actor, changes, data,
                             stamp(moments[i]), prev, digest))
                prev = digest
            insert(connection, "audit_entry", columns, rows)

        columns = ["id", "account_id", "owner_id", "filename", "content_type", "declared_type", "size", "sha256",
                   "created_at", "updated_at", "deleted_at"]
        for chunk in batches(args.files):
            blobs, rows = [], []
            for i in chunk:
                sha = f"{rng.getrandbits(256):064x}"
                size = int(rng.lognormvariate(11, 2.5))
                blobs.append((sha, size, stamp(0)))
                created = stamp(rng.random() * YEAR_SECONDS)
                owner = user_hex[rng.randrange(args.users)] if rng.random() < 0.97 else None
                deleted = created if rng.random() < 0.05 else None
                content_type = CONTENT_TYPES[min(int(rng.expovariate(0.35)), len(CONTENT_TYPES) - 1)]
                rows.append((uuid_utils.uuid7().hex, accounts[int(rng.paretovariate(1.1)) % args.accounts], owner,
                             f"file-{i}.bin", content_type, None, size, sha, created, created, deleted))
            insert(connection, "file_blob", ["sha256", "size", "created_at"], blobs)
            insert(connection, "file", columns, rows)
    counts = {table: count_rows(database, table) for table in ("user", "account", "audit_entry", "file")}
    print(f"generated {sum(counts.values()):,} rows in {time.perf_counter() - started:.1f} s: {counts}", flush=True)
    return counts


def count_rows(database: Database, table: str) -> int:
    with database.engine.connect() as connection:
        return int(connection.exec_driver_sql(f'SELECT count(*) FROM "{table}"').scalar() or 0)


def prepare(path: Path, args: argparse.Namespace) -> tuple[Database, dict[str, int]]:
    """The database at ``path``: generated unless it already holds data of the asked size (``--db``)."""
    database = Database(f"sqlite:///{path}")
    Base.metadata.create_all(database.engine)
    wanted = {"user": args.users, "account": args.accounts, "audit_entry": args.audit_rows, "file": args.files}
    counts = {table: count_rows(database, table) for table in wanted}
    if counts != wanted:
        if any(counts.values()):
            database.dispose()
            path.unlink()
            for suffix in ("-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
            database = Database(f"sqlite:///{path}")
            Base.metadata.create_all(database.engine)
        counts = generate(database, args)
    else:
        print(f"reusing {path}: {counts}", flush=True)
    with database.engine.begin() as connection:
        present = {row[0] for row in connection.exec_driver_sql("SELECT name FROM sqlite_master WHERE type='index'")}
        for name, ddl in EXTRA_INDEXES.items():
            if args.without_extra_indexes and name in present:
                connection.exec_driver_sql(f"DROP INDEX {name}")
            elif not args.without_extra_indexes and name not in present:
                connection.exec_driver_sql(ddl)
    with database.engine.connect() as connection:
        connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    return database, counts


# --- the reports and their hand-written twins ---------------------------------------------------------------

START, END = YEAR, YEAR.replace(year=2026)
MARCH = (YEAR.replace(month=3), YEAR.replace(month=4))
WHOLE_YEAR = (START.strftime("%Y-%m-%d %H:%M:%S.%f"), END.strftime("%Y-%m-%d %H:%M:%S.%f"))
MARCH_TEXT = tuple(moment.strftime("%Y-%m-%d %H:%M:%S.%f") for moment in MARCH)

DAY = "substr(created_at, 1, 10)"
WEEK = "date(substr(created_at, 1, 10), 'weekday 0', '-6 days')"
MONTH = "substr(created_at, 1, 7) || '-01'"
IN_RANGE = "created_at >= ? AND created_at < ?"


def per_period(bucket: str, table: str, measures: str, where: str = "") -> str:
    return (f'SELECT {bucket} AS period, {measures} FROM "{table}" WHERE {where}{IN_RANGE} '
            f"GROUP BY period ORDER BY period")


LOGINS = ("sum(action = 'login.success'), sum(action = 'login.failure'), sum(action = 'user.locked')",
          "action IN ('login.success', 'login.failure', 'user.locked') AND ")
HAND_WRITTEN: dict[str, str] = {
    "signups_day": per_period(DAY, "user", "count(*)"),
    "signups_week": per_period(WEEK, "user", "count(*)"),
    "signups_month": per_period(MONTH, "user", "count(*)"),
    "active_users_day": per_period(DAY, "audit_entry", "count(DISTINCT entity_id)", "action = 'login.success' AND "),
    "active_users_week": per_period(WEEK, "audit_entry", "count(DISTINCT entity_id)",
                                    "action = 'login.success' AND "),
    "logins_day": per_period(DAY, "audit_entry", *LOGINS),
    "logins_month": per_period(MONTH, "audit_entry", *LOGINS),
    "logins_day_march": per_period(DAY, "audit_entry", *LOGINS),
    "audit_by_period_day": per_period(DAY, "audit_entry", "count(*)"),
    "audit_by_action": f"SELECT action, count(*) AS n FROM audit_entry WHERE {IN_RANGE} GROUP BY action "
                       "ORDER BY n DESC, action",
    "audit_by_actor": f"SELECT actor, count(*) AS n FROM audit_entry WHERE {IN_RANGE} GROUP BY actor "
                      "ORDER BY n DESC, actor",
    "accounts_by_plan": "SELECT plan, status, count(*) FROM account WHERE deleted_at IS NULL GROUP BY plan, status "
                        "ORDER BY plan, status",
    "storage_by_account": "SELECT a.id, a.slug, s.n, s.bytes, a.storage_quota_bytes FROM (SELECT account_id, "
                          "count(*) AS n, sum(size) AS bytes FROM file WHERE deleted_at IS NULL GROUP BY account_id) "
                          "AS s JOIN account AS a ON a.id = s.account_id ORDER BY s.bytes DESC, a.id",
    "storage_by_content_type": "SELECT content_type, count(*), sum(size) AS bytes FROM file WHERE deleted_at IS NULL "
                               "GROUP BY content_type ORDER BY bytes DESC, content_type",
    "top_uploaders": "SELECT owner_id, count(*) AS n, sum(size) AS bytes FROM file WHERE deleted_at IS NULL AND "
                     "owner_id IS NOT NULL GROUP BY owner_id ORDER BY bytes DESC, n DESC, owner_id LIMIT 10",
}


@dataclass(frozen=True)
class Case:
    key: str
    title: str
    ours: Callable[[ReportService], list[Any]]
    params: tuple[Any, ...] = ()


def whole_year(**extra: Any) -> dict[str, Any]:
    return {"start": START, "end": END, **extra}


CASES = [
    Case("signups_day", "signups, day buckets, 1 year", lambda r: r.signups(**whole_year(bucket="day")), WHOLE_YEAR),
    Case("signups_week", "signups, week buckets, 1 year", lambda r: r.signups(**whole_year(bucket="week")),
         WHOLE_YEAR),
    Case("signups_month", "signups, month buckets, 1 year", lambda r: r.signups(**whole_year(bucket="month")),
         WHOLE_YEAR),
    Case("active_users_day", "active users, day buckets, 1 year",
         lambda r: r.active_users(**whole_year(bucket="day")), WHOLE_YEAR),
    Case("active_users_week", "active users, week buckets, 1 year",
         lambda r: r.active_users(**whole_year(bucket="week")), WHOLE_YEAR),
    Case("logins_day", "logins/failures/lockouts, day buckets, 1 year",
         lambda r: r.logins(**whole_year(bucket="day")), WHOLE_YEAR),
    Case("logins_month", "logins/failures/lockouts, month buckets, 1 year",
         lambda r: r.logins(**whole_year(bucket="month")), WHOLE_YEAR),
    Case("logins_day_march", "logins/failures/lockouts, day buckets, March only",
         lambda r: r.logins(start=MARCH[0], end=MARCH[1], bucket="day"), MARCH_TEXT),
    Case("audit_by_period_day", "audit entries per day, 1 year",
         lambda r: r.audit_by_period(**whole_year(bucket="day")), WHOLE_YEAR),
    Case("audit_by_action", "audit entries per action, 1 year", lambda r: r.audit_by_action(**whole_year()),
         WHOLE_YEAR),
    Case("audit_by_actor", "audit entries per actor, 1 year", lambda r: r.audit_by_actor(**whole_year()),
         WHOLE_YEAR),
    Case("accounts_by_plan", "accounts per plan and status", lambda r: r.accounts_by_plan()),
    Case("storage_by_account", "storage per account", lambda r: r.storage_by_account()),
    Case("storage_by_content_type", "storage per content type", lambda r: r.storage_by_content_type()),
    Case("top_uploaders", "top 10 uploaders by bytes", lambda r: r.top_uploaders(limit=10)),
]


def comparable(rows: Sequence[Any]) -> list[tuple[Any, ...]]:
    """Typed rows as plain tuples, ids as the hex text SQLite stores."""
    return [tuple(value.hex if isinstance(value, uuid.UUID) else value for value in dataclasses.astuple(row))
            for row in rows]


# --- measuring ----------------------------------------------------------------------------------------------


@dataclass
class Result:
    key: str
    title: str
    ours: list[float] = field(default_factory=list)
    base: list[float] = field(default_factory=list)
    rows: int = 0
    limit: float | None = LIMIT

    @property
    def ratio(self) -> float:
        return statistics.median(self.ours) / statistics.median(self.base)

    @property
    def verdict(self) -> str:
        if self.limit is None:
            return "-"
        return "PASS" if self.ratio <= self.limit else "FAIL"


def seconds(value: float) -> str:
    if value >= 1:
        return f"{value:.3f} s"
    if value >= 1e-3:
        return f"{value * 1e3:.1f} ms"
    return f"{value * 1e6:.0f} µs"


class Bench:
    def __init__(self, database: Database, path: Path, repeats: int) -> None:
        self.database = database
        self.engine: Engine = database.engine
        self.raw = sqlite3.connect(path, isolation_level=None)
        for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON", "busy_timeout=5000"):
            self.raw.execute(f"PRAGMA {pragma}")
        self.repeats = repeats
        self.plans: list[str] = []

    def ours(self, case: Case) -> tuple[float, list[Any]]:
        start = time.perf_counter()
        with self.database.session() as session:
            rows = case.ours(ReportService(session))
        return time.perf_counter() - start, rows

    def base(self, case: Case) -> tuple[float, list[Any]]:
        start = time.perf_counter()
        rows = self.raw.execute(HAND_WRITTEN[case.key], case.params).fetchall()
        return time.perf_counter() - start, rows

    def measure(self, case: Case) -> Result:
        _, ours = self.ours(case)  # warm-up: compile, cache pages; and both sides must agree
        _, base = self.base(case)
        if comparable(ours) != [tuple(row) for row in base]:
            raise AssertionError(f"{case.key}: the repository and the hand-written SQL disagree")
        result = Result(case.key, case.title, rows=len(ours))
        sides = [(self.ours, result.ours), (self.base, result.base)]
        for repeat in range(self.repeats):
            for run, sink in sides if repeat % 2 == 0 else sides[::-1]:
                gc.collect()
                sink.append(run(case)[0])
        print(f"  {case.title}: ours {seconds(statistics.median(result.ours))}, hand-written "
              f"{seconds(statistics.median(result.base))}, {result.ratio:.2f}x [{result.verdict}]", flush=True)
        self.plans.append(self.plan(case))
        return result

    def measure_saved_run(self) -> Result:
        """Context: ``run(..., save=True)`` (stores the run) vs the hand-written aggregation alone."""
        case = next(case for case in CASES if case.key == "logins_day")
        result = Result("logins_day_saved", "run('logins', day, 1 year, save=True), rows stored", limit=None)

        def saved() -> float:
            start = time.perf_counter()
            with self.database.unit_of_work() as uow:
                run = uow.repository(ReportService).run("logins", save=True, **whole_year(bucket="day"))
            result.rows = run.row_count
            return time.perf_counter() - start

        for repeat in range(self.repeats):
            for side in ("ours", "base") if repeat % 2 == 0 else ("base", "ours"):
                gc.collect()
                if side == "ours":
                    result.ours.append(saved())
                else:
                    result.base.append(self.base(case)[0])
        print(f"  {result.title}: ours {seconds(statistics.median(result.ours))}, hand-written "
              f"{seconds(statistics.median(result.base))}, {result.ratio:.2f}x [context]", flush=True)
        return result

    def plan(self, case: Case) -> str:
        """SQLite's plan for the SELECT the repository really sends."""
        captured: list[tuple[str, Any]] = []

        def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
            if statement.lstrip().upper().startswith("SELECT"):
                captured.append((statement, parameters))

        event.listen(self.engine, "before_cursor_execute", capture)
        try:
            self.ours(case)
        finally:
            event.remove(self.engine, "before_cursor_execute", capture)
        statement, parameters = captured[-1]
        rows = self.raw.execute(f"EXPLAIN QUERY PLAN {statement}", parameters).fetchall()
        return "\n".join([f"{case.key}:", *(f"    {' '.join(statement.split())}".splitlines()),
                          *(f"    -> {row[-1]}" for row in rows)])

    def close(self) -> None:
        self.raw.close()
        self.database.dispose()


# --- report -------------------------------------------------------------------------------------------------


def versions() -> dict[str, str]:
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.platform()}, {platform.machine()}, {os.cpu_count()} CPUs",
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "SQLAlchemy": metadata.version("sqlalchemy"),
    }


def text_table(results: Sequence[Result]) -> str:
    header = ("#", "report", "rows", "ours (median)", "hand-written (median)", "ratio", "target", "result")
    lines = [(r.key, r.title, f"{r.rows:,}", seconds(statistics.median(r.ours)), seconds(statistics.median(r.base)),
              f"{r.ratio:.2f}x", "(context)" if r.limit is None else f"≤ {r.limit:g}x", r.verdict) for r in results]
    widths = [max(len(str(row[i])) for row in [header, *lines]) for i in range(len(header))]

    def joined(cells: Sequence[str]) -> str:
        return "  ".join(str(cell).ljust(width) for cell, width in zip(cells, widths, strict=True)).rstrip()

    return "\n".join([joined(header), "  ".join("-" * width for width in widths), *map(joined, lines)])


def markdown_section(results: Sequence[Result], info: dict[str, str], args: argparse.Namespace,
                     counts: dict[str, int], plans: Sequence[str]) -> str:
    indexes = "models' own only" if args.without_extra_indexes else "models' own plus " + ", ".join(
        f"`{ddl.split(' ON ')[1]}`" for ddl in EXTRA_INDEXES.values())
    lines = [f"## {SECTION_TITLE}: {info['date']}", ""]
    lines += [f"- **{key}**: {value}" for key, value in info.items() if key != "date"]
    lines += [f"- **run**: `{' '.join(['bench/bench_reports.py', *sys.argv[1:]])}`: {args.repeats} repeats, "
              f"rows: {', '.join(f'{table} {count:,}' for table, count in counts.items())}",
              f"- **indexes**: {indexes}",
              "- **sides**: ours = `ReportService(session).<report>(...)` in a fresh `database.session()`, typed "
              "rows returned; hand-written = the aggregation written by hand, `sqlite3` `execute().fetchall()` on "
              "an open connection. Both return the same rows (checked). Ratio = ratio of medians.",
              "", "| # | report | rows | ours (median s) | hand-written (median s) | ratio | target | result | "
              "spread ours / hand-written |", "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        target = "(context)" if r.limit is None else f"≤ {r.limit:g}x"
        verdict = r.verdict if r.limit is None else f"**{r.verdict}**"
        spread = f"{seconds(min(r.ours))}-{seconds(max(r.ours))} / {seconds(min(r.base))}-{seconds(max(r.base))}"
        lines.append(f"| {r.key} | {r.title} | {r.rows:,} | {statistics.median(r.ours):.6f} | "
                     f"{statistics.median(r.base):.6f} | {r.ratio:.2f}x | {target} | {verdict} | {spread} |")
    lines += ["", "<details><summary>Query plans of the repository's statements</summary>", "", "```",
              *"\n\n".join(plans).splitlines(), "```", "", "</details>"]
    return "\n".join(lines) + "\n"


def append_results(path: Path, section: str) -> None:
    """Append a section at the end; the sections already there are left as they are."""
    old = path.read_text(encoding="utf-8") if path.exists() else ""
    path.write_text(old.rstrip("\n") + "\n\n" + section if old else section, encoding="utf-8")


# --- main ---------------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Time every report against hand-written SQL through sqlite3; "
                                                 "print PASS/FAIL (ours / hand-written ≤ 1.5) and append the "
                                                 "results to bench/RESULTS.md.")
    parser.add_argument("--audit-rows", type=int, default=1_000_000, help="audit entries (default 1000000)")
    parser.add_argument("--users", type=int, default=100_000, help="users (default 100000)")
    parser.add_argument("--accounts", type=int, default=10_000, help="accounts (default 10000)")
    parser.add_argument("--files", type=int, default=200_000, help="files (default 200000)")
    parser.add_argument("--repeats", type=int, default=7, help="repeats of every measurement (default 7)")
    parser.add_argument("--seed", type=int, default=20_250_101, help="random seed of the data")
    parser.add_argument("--db", type=Path, help="SQLite file to generate into and reuse (default: a temporary one)")
    parser.add_argument("--without-extra-indexes", action="store_true", help="only the models' own indexes")
    parser.add_argument("--only", action="append", help="run only this case (repeatable)")
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS, help="markdown file to append to")
    parser.add_argument("--no-write", action="store_true", help="print only; leave the results file alone")
    args = parser.parse_args(argv)
    if min(args.audit_rows, args.users, args.accounts, args.files, args.repeats) < 1:
        parser.error("every count and --repeats must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-reports-") as directory:
        path = args.db.resolve() if args.db else Path(directory) / "reports.db"
        database, counts = prepare(path, args)
        bench = Bench(database, path, args.repeats)
        try:
            print(f"SQLite {sqlite3.sqlite_version} at {path}", flush=True)
            cases = [case for case in CASES if not args.only or case.key in args.only]
            results = [bench.measure(case) for case in cases]
            if not args.only:
                results.append(bench.measure_saved_run())
        finally:
            bench.close()
    info = versions()
    print("\n" + "\n".join(f"{key}: {value}" for key, value in info.items()) + "\n")
    print(text_table(results))
    for plan in bench.plans:
        print(f"\n{plan}")
    if not args.no_write:
        append_results(args.results, markdown_section(results, info, args, counts, bench.plans))
        print(f"\nappended to {args.results}")
    return 1 if any(r.verdict == "FAIL" for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
