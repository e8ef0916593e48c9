#!/usr/bin/env python
"""How long a refused login takes, by why it was refused: the timing oracle of issue 9, point 2.

    .venv/bin/python bench/bench_login_timing.py                 # SQLite file, default argon2 parameters
    .venv/bin/python bench/bench_login_timing.py --repeats 31

Three refusals are timed, interleaved (each repeat runs all three, in a rotating order), through
``uow.users.authenticate`` with the **default** settings (argon2id, 64 MiB, 3 passes, 4 lanes):

- unknown: an e-mail nobody has (the baseline: one dummy verification with the current parameters);
- outdated: a wrong password for a user whose hash was made with the test parameters (t=1, m=8 KiB), as every
  user's is after the parameters are raised until they next log in;
- current: a wrong password for a user whose hash has the current parameters.

It prints the median of each and its ratio to the unknown e-mail's. Before the fix, outdated answered in a few
milliseconds against ~150-230 ms: a ratio near 0.03, which tells a registered e-mail from an unknown one.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from db import AuthenticationError, Database
from db.migrations import runner
from db.settings import Settings

PASSWORD = "violet-Harbor-42-lantern"


def refuse(database: Database, email: str) -> float:
    started = time.perf_counter()
    try:
        with database.unit_of_work() as uow:
            uow.users.authenticate(email, "wrong-Password-99")
    except AuthenticationError:
        return time.perf_counter() - started
    raise AssertionError("a wrong password was accepted")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=21)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        url = f"sqlite:///{scratch}/timing.db"
        old = Database(url, settings=Settings.for_tests(storage_root=Path(scratch) / "files"))
        runner.upgrade(old)
        with old.unit_of_work() as uow:
            uow.users.create(email="outdated@example.com", password=PASSWORD)
        old.dispose()
        database = Database(url, settings=Settings(storage_root=Path(scratch) / "files"))
        with database.unit_of_work() as uow:
            uow.users.create(email="current@example.com", password=PASSWORD)
        cases = {"unknown": "nobody@example.com", "outdated": "outdated@example.com", "current": "current@example.com"}
        for email in cases.values():
            refuse(database, email)  # warm-up, and the first measurement of a current verification
        times: dict[str, list[float]] = {name: [] for name in cases}
        names = list(cases)
        print(f"load average before: {os.getloadavg()}")
        for repeat in range(args.repeats):
            for name in names[repeat % 3:] + names[: repeat % 3]:
                times[name].append(refuse(database, cases[name]))
        print(f"load average after: {os.getloadavg()}\n")
        base = statistics.median(times["unknown"])
        print("| refusal | median | ratio to unknown e-mail | min-max |")
        print("|---|---|---|---|")
        for name in names:
            median = statistics.median(times[name])
            print(f"| {name} | {median * 1000:.1f} ms | {median / base:.2f} | "
                  f"{min(times[name]) * 1000:.0f}-{max(times[name]) * 1000:.0f} ms |")
        database.dispose()


if __name__ == "__main__":
    main()
