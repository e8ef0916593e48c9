#!/usr/bin/env python
"""Start-up time of ``python -m db`` against Alembic's command line, each in a fresh subprocess.

    .venv/bin/python bench/bench_startup.py                  # 15 repeats, prints a Markdown section
    .venv/bin/python bench/bench_startup.py --repeats 31 --write   # also appends it to bench/RESULTS.md

Pairs (ours / Alembic's): ``python -m db --help`` / ``alembic --help``, ``python -m db status`` /
``alembic current``, and for context ``python -m db migrate current`` / ``alembic current``. The database is a
sample SQLite database made once, untimed, in a temporary directory (``python -m db setup --sample --history N``);
both sides reach it through ``DATABASE_URL``. Each pair runs ``--repeats`` times, interleaved with the order
alternated, so a noisy machine hurts both alike; the table shows the median wall-clock seconds of each side and the
ratio of the medians (below 1: we start faster). The load average is printed before and after: on a shared
machine a ratio means more than an absolute time.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DEFAULT_RESULTS = HERE / "RESULTS.md"
ALEMBIC = str(Path(sys.executable).with_name("alembic"))


@dataclass
class Pair:
    ours: list[str]
    base: list[str]
    ours_times: list[float] = field(default_factory=list)
    base_times: list[float] = field(default_factory=list)

    @property
    def title(self) -> str:
        return f"`{_shown(self.ours)}` / `{_shown(self.base)}`"

    @property
    def ratio(self) -> float:
        return statistics.median(self.ours_times) / statistics.median(self.base_times)


def _shown(command: Sequence[str]) -> str:
    words = ["python" if word == sys.executable else "alembic" if word == ALEMBIC else word for word in command]
    return " ".join(words)


def timed(command: Sequence[str], environment: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, cwd=ROOT, env=environment, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def run_pairs(pairs: Sequence[Pair], repeats: int, environment: dict[str, str]) -> None:
    for repeat in range(repeats):
        for pair in pairs:
            sides = [(pair.ours, pair.ours_times), (pair.base, pair.base_times)]
            for command, sink in sides if repeat % 2 == 0 else sides[::-1]:
                sink.append(timed(command, environment))


def make_sample(directory: Path, history: int) -> dict[str, str]:
    """An environment whose DATABASE_URL is a fresh sample database (and its blobs) in ``directory``."""
    environment = {**os.environ, "DATABASE_URL": f"sqlite:///{directory / 'sample.db'}",
                   "DBLAYER_STORAGE_ROOT": str(directory / "files")}
    environment.pop("DBLAYER_ADMIN_EMAIL", None)
    subprocess.run([sys.executable, "-m", "db", "setup", "--sample", "--history", str(history)], cwd=ROOT,
                   env=environment, check=True, stdout=subprocess.DEVNULL)
    return environment


def section(pairs: Sequence[Pair], repeats: int, history: int, loads: tuple[float, float]) -> str:
    lines = [
        f"## Start-up: `python -m db` vs `alembic` ({dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC)",
        "",
        f"`.venv/bin/python bench/bench_startup.py --repeats {repeats} --history {history}`; Python "
        f"{platform.python_version()}, {os.cpu_count()} cores, load average {loads[0]:.2f} before, "
        f"{loads[1]:.2f} after. Wall-clock seconds of a subprocess, median over {repeats} interleaved runs; the "
        "sample database is SQLite.",
        "",
        "| ours / Alembic's | ours (median) | Alembic (median) | ratio | ours (min-max) | Alembic (min-max) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for pair in pairs:
        lines.append(
            f"| {pair.title} | {statistics.median(pair.ours_times):.3f} s | "
            f"{statistics.median(pair.base_times):.3f} s | {pair.ratio:.2f}x | {_span(pair.ours_times)} | "
            f"{_span(pair.base_times)} |"
        )
    return "\n".join(lines) + "\n"


def _span(values: Sequence[float]) -> str:
    return f"{min(values):.3f}-{max(values):.3f}"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=15, help="runs of each command (default 15)")
    parser.add_argument("--history", type=int, default=20_000,
                        help="rows of generated activity in the sample database (default 20,000, as setup --sample)")
    parser.add_argument("--write", action="store_true", help=f"append the section to {DEFAULT_RESULTS.name}")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    python = [sys.executable, "-m", "db"]
    pairs = [
        Pair([*python, "--help"], [ALEMBIC, "--help"]),
        Pair([*python, "status"], [ALEMBIC, "current"]),
        Pair([*python, "migrate", "current"], [ALEMBIC, "current"]),
    ]
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as directory:
        environment = make_sample(Path(directory), args.history)
        load_before = os.getloadavg()[0]
        run_pairs(pairs, args.repeats, environment)
        load_after = os.getloadavg()[0]
    text = section(pairs, args.repeats, args.history, (load_before, load_after))
    print(text)
    if args.write:
        with DEFAULT_RESULTS.open("a", encoding="utf-8") as results:
            results.write("\n" + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
