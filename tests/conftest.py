"""Test engines and isolation (the helpers the test modules share are in ``tests/support.py``).

Every test that takes ``database`` runs once per engine in ``TEST_ENGINES`` (default: sqlite, postgresql,
mariadb), inside an outer transaction that is rolled back (sessions join it through SAVEPOINTs).

- SQLite uses a file in a temporary directory: never ``db/data/app.db``.
- PostgreSQL and MariaDB use the database named by ``TEST_POSTGRESQL_URL`` / ``TEST_MARIADB_URL`` (default: a
  ``dblayer_test`` database on the local server, created on demand), suffixed as ``tests.support.server_url`` says.
- An unreachable server skips that engine's tests with a message, except under CI (``CI=true``), where it fails.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import db.models  # noqa: F401 - registers every model on Base.metadata
from db import Database
from db.settings import STORAGE_ROOT_ENV
from tests.support import ENGINES, TestDatabases, selected_engines


@pytest.fixture(scope="session")
def sqlite_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("sqlite")


@pytest.fixture(scope="session", autouse=True)
def storage_root_of_the_environment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """DBLAYER_STORAGE_ROOT, which ``Database()`` and every command read, points into a temporary directory for the
    whole run: no test touches db/data/files or a root the developer's environment names."""
    root = tmp_path_factory.mktemp("environment-files")
    before = os.environ.get(STORAGE_ROOT_ENV)
    os.environ[STORAGE_ROOT_ENV] = str(root)
    yield root
    if before is None:
        os.environ.pop(STORAGE_ROOT_ENV, None)
    else:
        os.environ[STORAGE_ROOT_ENV] = before


@pytest.fixture(scope="session")
def test_databases(sqlite_dir: Path) -> Iterator[TestDatabases]:
    databases = TestDatabases(sqlite_dir)
    yield databases
    databases.dispose()


@pytest.fixture(scope="session", params=selected_engines())
def engine_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="session")
def session_database(engine_name: str, test_databases: TestDatabases) -> Database:
    """The engine's Database with the test tables; writes through it are committed (see ``database``)."""
    return test_databases.get(engine_name)


@pytest.fixture
def database(session_database: Database) -> Iterator[Database]:
    """The engine's Database, isolated: everything the test writes is rolled back at its end."""
    with session_database.isolated() as isolated:
        yield isolated


# --- a per-engine tally at the end of the run --------------------------------------------------------------
# Each test's engine travels with its reports as a user property: under pytest-xdist the reports reach the
# controller, which never collected the items.

_TALLY: dict[str, dict[str, int]] = {}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        engine = params.get("engine_name") or params.get("backend") or "engine-free"
        item.user_properties.append(("engine", str(engine)))


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call" or (report.when == "setup" and not report.passed):
        outcome = "passed" if report.passed else "skipped" if report.skipped else "failed"
        counts = _TALLY.setdefault(str(dict(report.user_properties).get("engine", "engine-free")), {})
        counts[outcome] = counts.get(outcome, 0) + 1


def pytest_terminal_summary(terminalreporter: Any) -> None:
    terminalreporter.section("tests per engine")
    for engine in ("memory", *ENGINES, "engine-free"):
        counts = _TALLY.get(engine)
        if counts:
            line = ", ".join(f"{counts.get(k, 0)} {k}" for k in ("passed", "failed", "skipped"))
            terminalreporter.write_line(f"{engine:>12}: {line}")
