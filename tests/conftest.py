"""Test engines and isolation.

Every test that takes ``database`` runs once per engine in ``TEST_ENGINES`` (default: sqlite, postgresql,
mariadb), inside an outer transaction that is rolled back (sessions join it through SAVEPOINTs).

- SQLite uses a file in a temporary directory: never ``db/data/app.db``.
- PostgreSQL and MariaDB use the database named by ``TEST_POSTGRESQL_URL`` / ``TEST_MARIADB_URL`` (default: a
  ``dblayer_test`` database on the local server, created on demand).
- An unreachable server skips that engine's tests with a message, except under CI (``CI=true``), where it fails.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import MetaData
from sqlalchemy.engine import URL, make_url

import db.models  # noqa: F401 - registers every model on Base.metadata
from db import Database, dialects
from db.migrations import runner
from db.settings import STORAGE_ROOT_ENV, Settings
from tests.models import TestBase

ENGINES = ("sqlite", "postgresql", "mariadb")
DEFAULT_SERVER_URLS = {
    "postgresql": "postgresql+psycopg://postgres@127.0.0.1:5432/dblayer_test",
    "mariadb": "mariadb+pymysql://root@127.0.0.1:3306/dblayer_test",
}
APP_DB = Path(__file__).resolve().parents[1] / "db" / "data" / "app.db"


def selected_engines() -> list[str]:
    wanted = [name.strip() for name in os.environ.get("TEST_ENGINES", ",".join(ENGINES)).split(",") if name.strip()]
    unknown = set(wanted) - set(ENGINES)
    if unknown:
        raise pytest.UsageError(f"TEST_ENGINES names unknown engines: {sorted(unknown)}")
    return wanted


def server_url(engine: str, database: str | None = None) -> URL:
    """The server test database ``database`` (default: the one ``TEST_<ENGINE>_URL`` names).

    ``TEST_DB_SUFFIX`` is appended to every name given here, so that two test runs on one server (two checkouts,
    say) never share a database.
    """
    url = make_url(os.environ.get(f"TEST_{engine.upper()}_URL", DEFAULT_SERVER_URLS[engine]))
    return url.set(database=database + os.environ.get("TEST_DB_SUFFIX", "")) if database else url


def ensure_server_database(url: URL) -> str | None:
    """Create the database named in ``url`` if missing; return why the server is unusable, or None."""
    try:
        dialects.dialect_of(url).create_database_if_missing(url)
    except Exception as error:
        return f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"
    return None


def drop_all_tables(database: Database) -> None:
    """Drop every table the database has (whatever made them), children first."""
    with database.engine.begin() as connection:
        existing = MetaData()
        existing.reflect(connection)
        existing.drop_all(connection)


def reset_schema(database: Database) -> None:
    """Drop every table, then build the application's schema through its migrations (triggers and seeds too)."""
    drop_all_tables(database)
    runner.upgrade(database)


def drop_server_database(url: URL) -> None:
    """Drop a server database made by ``TestDatabases.own`` (a SQLite file stays in pytest's temporary directory)."""
    backend = url.get_backend_name()
    if backend == "sqlite":
        return
    admin = Database(url.set(database="postgres" if backend == "postgresql" else "mysql"),
                     isolation_level="AUTOCOMMIT", poolclass=_null_pool())
    quoted = f'"{url.database}"' if backend == "postgresql" else f"`{url.database}`"
    try:
        with admin.engine.connect() as connection:
            connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {quoted}")
    finally:
        admin.dispose()


def _null_pool() -> type:
    from sqlalchemy.pool import NullPool

    return NullPool


def unavailable(engine: str, reason: str) -> None:
    message = f"{engine} server not reachable ({reason}); start it or set TEST_{engine.upper()}_URL"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI requires {engine}: {message}", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def sqlite_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("sqlite")


def engine_url(engine: str, sqlite_dir: Path, name: str = "dblayer_test") -> URL:
    """A URL for a test database called ``name`` on ``engine`` (created on demand), or a skip/fail."""
    return TestDatabases(sqlite_dir).url(engine, name)


class TestDatabases:
    """One Database per engine with the test tables freshly created, made on first use."""

    __test__ = False

    def __init__(self, sqlite_dir: Path) -> None:
        self.sqlite_dir = sqlite_dir
        self._made: dict[str, Database] = {}
        self._problems: dict[str, str] = {}

    def get(self, engine: str) -> Database:
        if engine in self._problems:
            unavailable(engine, self._problems[engine])
        if engine not in self._made:
            url = self.url(engine)
            database = Database(url, settings=self.settings(engine, "dblayer_test"))
            assert Path(database.url.database or "") != APP_DB
            reset_schema(database)
            TestBase.metadata.create_all(database.engine)
            self._made[engine] = database
        return self._made[engine]

    def settings(self, engine: str, name: str) -> Settings:
        """Test settings with a storage root of the database's own: a root serves one database, and a database
        made again (a new schema, so a new identity) is another database."""
        return Settings.for_tests(storage_root=self.sqlite_dir / f"files-{engine}-{name}-{uuid.uuid4().hex[:8]}")

    def url(self, engine: str, name: str = "dblayer_test") -> URL:
        if engine == "sqlite":
            return make_url(f"sqlite:///{self.sqlite_dir / (name + '.db')}")
        url = server_url(engine, name)
        problem = ensure_server_database(url)
        if problem:
            self._problems[engine] = problem
            unavailable(engine, problem)
        return url

    @contextmanager
    def own(self, engine: str, name: str, settings: Settings | None = None) -> Iterator[Database]:
        """A database of its own, for tests that commit for real: the audit log is append-only, so their entries
        must not land in the shared test database. Schema fresh from the migrations; dropped afterwards."""
        url = self.url(engine, name)
        database = Database(url, settings=settings or self.settings(engine, name))
        reset_schema(database)
        try:
            yield database
        finally:
            database.dispose()
            drop_server_database(url)

    def dispose(self) -> None:
        for database in self._made.values():
            database.dispose()


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

_ENGINE_OF: dict[str, str] = {}
_TALLY: dict[str, dict[str, int]] = {}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        _ENGINE_OF[item.nodeid] = str(params.get("engine_name") or params.get("backend") or "engine-free")


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call" or (report.when == "setup" and not report.passed):
        outcome = "passed" if report.passed else "skipped" if report.skipped else "failed"
        counts = _TALLY.setdefault(_ENGINE_OF.get(report.nodeid, "engine-free"), {})
        counts[outcome] = counts.get(outcome, 0) + 1


def pytest_terminal_summary(terminalreporter: Any) -> None:
    terminalreporter.section("tests per engine")
    for engine in ("memory", *ENGINES, "engine-free"):
        counts = _TALLY.get(engine)
        if counts:
            line = ", ".join(f"{counts.get(k, 0)} {k}" for k in ("passed", "failed", "skipped"))
            terminalreporter.write_line(f"{engine:>12}: {line}")
