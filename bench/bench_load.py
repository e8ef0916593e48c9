#!/usr/bin/env python
"""Mixed load from many processes: creates, transfers (locking updates), pages and logins, on SQLite and PostgreSQL.

    .venv/bin/python bench/bench_load.py                          # SQLite file, 16 processes, 60 s
    .venv/bin/python bench/bench_load.py --engine postgresql --seconds 30
    .venv/bin/python bench/bench_load.py --processes 8 --mix create=4,transfer=3,page=4,login=1

Each process loops for ``--seconds``, picking an operation at random by the weights of ``--mix``, each through the
layer the way an application writes it, with the **default settings** (busy timeout, argon2 parameters):

- create: ``with database.unit_of_work() as uow: repo.create(...)`` (not retried: a busy error is a failure);
- transfer: ``database.run_in_transaction(...)``: two accounts read ``for_update=True`` in id order, one unit moved
  from one to the other (retried by ``run_in_transaction``; its latency includes the retries);
- page: ``with database.unit_of_work() as uow: repo.page(...)`` of 50 rows;
- login: ``with database.unit_of_work() as uow: uow.users.authenticate(...)``, right and wrong passwords alike.

It prints, per operation: how many ran, how many failed with ``TransientError`` (a busy database the caller sees)
and with anything else, throughput, and the p50 and p99 latency; then whether the money was conserved. Nothing is
a baseline here: the numbers are the target (no caller sees a busy error; p99 in RESULTS.md). The load average
is printed before and after.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import MetaData, String, func, select
from sqlalchemy.engine import make_url
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from db import AuthenticationError, BaseRepository, Database, TransientError, UnitOfWork, dialects
from db.base import NAMING_CONVENTION, TABLE_OPTIONS, TYPE_ANNOTATION_MAP
from db.migrations import runner
from db.models.base import Timestamps, UUIDPrimaryKey, Versioned

PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/dblayer_bench_load"
PASSWORD = "violet-Harbor-42-lantern"
ACCOUNTS = 50
USERS = 20


class LoadBase(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = TYPE_ANNOTATION_MAP


class LoadItem(UUIDPrimaryKey, Timestamps, LoadBase):
    __tablename__ = "load_item"
    __table_args__ = TABLE_OPTIONS
    name: Mapped[str] = mapped_column(String(100), index=True)


class LoadAccount(UUIDPrimaryKey, Versioned, LoadBase):
    __tablename__ = "load_account"
    __table_args__ = TABLE_OPTIONS
    balance: Mapped[int] = mapped_column(default=0)


class ItemRepository(BaseRepository[LoadItem]):
    model = LoadItem


class AccountRepository(BaseRepository[LoadAccount]):
    model = LoadAccount


def prepare(url: str) -> tuple[list[str], list[str]]:
    """A fresh schema, accounts with 1,000 each, users; returns (account ids, emails)."""
    database = Database(url)
    with database.engine.begin() as connection:
        LoadBase.metadata.drop_all(connection)
    existing = MetaData()
    existing.reflect(database.engine)
    existing.drop_all(database.engine)
    runner.upgrade(database)
    LoadBase.metadata.create_all(database.engine)
    with database.unit_of_work() as uow:
        accounts = uow.repository(AccountRepository).create_many([{"balance": 1000}] * ACCOUNTS, returning=True)
        uow.repository(ItemRepository).create_many({"name": f"seed-{i:06d}"} for i in range(2000))
    emails = [f"load-{i}@example.com" for i in range(USERS)]
    for email in emails:
        with database.unit_of_work() as uow:
            uow.users.create(email=email, password=PASSWORD)
    database.dispose()
    return [str(account.id) for account in accounts], emails


def transfer(uow: UnitOfWork, first: str, second: str) -> None:
    repo = uow.repository(AccountRepository)
    source, target = (repo.get_by_id(ident, for_update=True) for ident in sorted((first, second)))
    assert source is not None and target is not None
    repo.update(source, balance=source.balance - 1)
    repo.update(target, balance=target.balance + 1)


def worker(url: str, seconds: float, mix: dict[str, int], accounts: list[str], emails: list[str],
           seed: int, start: Any) -> list[tuple[str, str, float]]:
    """(operation, outcome, seconds) of every operation this process ran."""
    rng = random.Random(seed)
    database = Database(url)
    names, weights = list(mix), list(mix.values())
    results: list[tuple[str, str, float]] = []
    start.wait()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        operation = rng.choices(names, weights)[0]
        began = time.perf_counter()
        try:
            run(database, operation, rng, accounts, emails)
            outcome = "ok"
        except TransientError:
            outcome = "transient"
        except AuthenticationError:
            outcome = "ok"  # a wrong password, refused as it should be
        except Exception as error:  # reported, not raised: one failure must not stop the run
            outcome = f"error:{type(error).__name__}"
        results.append((operation, outcome, time.perf_counter() - began))
    database.dispose()
    return results


def run(database: Database, operation: str, rng: random.Random, accounts: list[str], emails: list[str]) -> None:
    if operation == "create":
        with database.unit_of_work() as uow:
            uow.repository(ItemRepository).create(name=f"item-{uuid.uuid4().hex}")
    elif operation == "transfer":
        first, second = rng.sample(accounts, 2)
        database.run_in_transaction(lambda uow: transfer(uow, first, second))
    elif operation == "page":
        with database.unit_of_work() as uow:
            uow.repository(ItemRepository).page(order_by=["-created_at"], size=50,
                                                filters={"name__startswith": rng.choice(["seed-0", "item-"])})
    elif operation == "login":
        password = PASSWORD if rng.random() < 0.7 else "wrong-Password-99"
        with database.unit_of_work() as uow:
            uow.users.authenticate(rng.choice(emails), password)


def report(results: list[tuple[str, str, float]], seconds: float) -> None:
    print("| operation | ran | transient errors | other errors | per second | p50 | p99 |")
    print("|---|---|---|---|---|---|---|")
    for operation in sorted({op for op, _, _ in results}):
        mine = [(outcome, took) for op, outcome, took in results if op == operation]
        times = sorted(took for _, took in mine)
        transient = sum(outcome == "transient" for outcome, _ in mine)
        other = sum(outcome.startswith("error") for outcome, _ in mine)
        p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
        print(f"| {operation} | {len(mine)} | {transient} | {other} | {len(mine) / seconds:.1f} | "
              f"{statistics.median(times) * 1000:.0f} ms | {p99 * 1000:.0f} ms |")
    errors = sorted({outcome for _, outcome, _ in results if outcome.startswith("error")})
    if errors:
        print(f"\nother errors: {', '.join(errors)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engine", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--url", help="a database to use instead (its tables are dropped)")
    parser.add_argument("--processes", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--mix", default="create=4,transfer=3,page=4,login=1")
    args = parser.parse_args()
    mix = {name: int(weight) for name, weight in (part.split("=") for part in args.mix.split(","))}
    with tempfile.TemporaryDirectory() as scratch:
        url = args.url or (f"sqlite:///{scratch}/load.db" if args.engine == "sqlite" else PG_URL)
        if not url.startswith("sqlite"):
            dialects.dialect_of(make_url(url)).create_database_if_missing(make_url(url))
        accounts, emails = prepare(url)
        print(f"# {args.processes} processes, {args.seconds:.0f} s, mix {args.mix}, {url.split(':')[0]}")
        print(f"load average before: {os.getloadavg()}")
        context = multiprocessing.get_context("spawn")
        with context.Manager() as manager:
            start = manager.Barrier(args.processes)
            with context.Pool(args.processes) as pool:
                jobs = [pool.apply_async(worker, (url, args.seconds, mix, accounts, emails, seed, start))
                        for seed in range(args.processes)]
                results = [row for job in jobs for row in job.get(timeout=args.seconds * 10 + 600)]
        print(f"load average after: {os.getloadavg()}\n")
        report(results, args.seconds)
        database = Database(url)
        with database.session() as session:
            total = session.scalar(select(func.sum(LoadAccount.balance)))
        database.dispose()
        print(f"\nmoney conserved: {total == ACCOUNTS * 1000} ({total} of {ACCOUNTS * 1000})")


if __name__ == "__main__":
    main()
