"""What the test modules share (fixtures stay in conftest.py): the test databases on each engine, and the
repositories of the test models.

Server databases are named ``<name><TEST_DB_SUFFIX>``, plus ``_<worker>`` under a parallel run (pytest-xdist's
``gw0``, ``gw1``, ...), so that two runs on one server, or two workers of one run, never share a database.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import MetaData
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import NullPool

from db import BaseRepository, Database, dialects
from db.migrations import runner
from db.settings import Settings
from tests.models import Gadget, TestBase, Widget

ENGINES = ("sqlite", "postgresql", "mariadb")
DEFAULT_SERVER_URLS = {
    "postgresql": "postgresql+psycopg://postgres@127.0.0.1:5432/dblayer_test",
    "mariadb": "mariadb+pymysql://root@127.0.0.1:3306/dblayer_test",
}
APP_DB = Path(__file__).resolve().parents[1] / "db" / "data" / "app.db"


class WidgetRepository(BaseRepository[Widget]):
    model = Widget


class GadgetRepository(BaseRepository[Gadget]):
    model = Gadget


def selected_engines() -> list[str]:
    wanted = [name.strip() for name in os.environ.get("TEST_ENGINES", ",".join(ENGINES)).split(",") if name.strip()]
    unknown = set(wanted) - set(ENGINES)
    if unknown:
        raise pytest.UsageError(f"TEST_ENGINES names unknown engines: {sorted(unknown)}")
    return wanted


def database_suffix() -> str:
    """``TEST_DB_SUFFIX``, then the pytest-xdist worker's name (``_gw0``) when the run is parallel."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    return os.environ.get("TEST_DB_SUFFIX", "") + (f"_{worker}" if worker else "")


def server_url(engine: str, database: str | None = None) -> URL:
    """The server test database ``database`` (default: the one ``TEST_<ENGINE>_URL`` names), its name suffixed
    by ``database_suffix()``."""
    url = make_url(os.environ.get(f"TEST_{engine.upper()}_URL", DEFAULT_SERVER_URLS[engine]))
    return url.set(database=database + database_suffix()) if database else url


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
                     isolation_level="AUTOCOMMIT", poolclass=NullPool)
    quoted = f'"{url.database}"' if backend == "postgresql" else f"`{url.database}`"
    try:
        with admin.engine.connect() as connection:
            connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {quoted}")
    finally:
        admin.dispose()


def unavailable(engine: str, reason: str) -> None:
    """Skip the test, saying why the engine's server is unusable; under CI (``CI=true``) fail it instead."""
    message = f"{engine} server not reachable ({reason}); start it or set TEST_{engine.upper()}_URL"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI requires {engine}: {message}", pytrace=False)
    pytest.skip(message)


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
