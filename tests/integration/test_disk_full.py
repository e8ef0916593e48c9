"""A full disk is ``DiskFull`` on every engine, and nothing is half-written.

Each test puts the table on a small tmpfs it mounts itself: the SQLite file; a PostgreSQL tablespace; a MariaDB
InnoDB table with its DATA DIRECTORY there. It fills the rest of the tmpfs with a file, then every write that needs
a new page (create_many, create, update, and on SQLite the commit, which appends to the WAL) must raise
``DiskFull``, the rows committed before stay exactly as they were, and once space is freed the database works again.
Where the tmpfs cannot be mounted, or the server refuses the set-up, the test is skipped and says why.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from db import Database, DiskFull
from db.settings import Settings
from tests.models import TestBase, Widget
from tests.support import TestDatabases, WidgetRepository, database_suffix, drop_server_database

ROW = {"category": "c" * 50, "secret_token": "t" * 100}


def mount_tmpfs(path: Path, size: str) -> None:
    path.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
                            capture_output=True, text=True, check=False)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs to fill ({result.stderr.strip() or 'mount refused'}): "
                    "disk-full behaviour not tested here")


def unmount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)
    shutil.rmtree(path, ignore_errors=True)


@dataclass
class FullDisk:
    """The database whose widget table lives on the tmpfs at ``mount``, and the filler that uses up the rest."""

    database: Database
    mount: Path

    @property
    def filler(self) -> Path:
        return self.mount / "filler"

    def fill(self) -> None:
        """Use up every free byte of the tmpfs (smaller and smaller writes until not one byte fits)."""
        descriptor = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        try:
            size = 1 << 20
            while size:
                try:
                    os.write(descriptor, b"\0" * size)
                except OSError as error:
                    if error.errno != errno.ENOSPC:
                        raise
                    size //= 2
        finally:
            os.close(descriptor)

    def free(self) -> None:
        self.filler.unlink(missing_ok=True)

    def count(self) -> int:
        with self.database.session() as session:
            return WidgetRepository(session).count()

    def fill_table_then_disk(self) -> None:
        """Rows until the table's pages are full and the disk is too: the next write needs a page it cannot get."""
        self.fill()
        made = 0
        for batch in (200, 20, 1):  # a failed batch leaves its pages free: smaller batches fill them too
            with contextlib.suppress(DiskFull):
                while True:
                    with self.database.unit_of_work() as uow:
                        uow.repository(WidgetRepository).create_many(
                            {"name": f"pad-{made + i}", **ROW} for i in range(batch))
                    made += batch


@contextlib.contextmanager
def _sqlite(mount: Path, databases: TestDatabases) -> Iterator[Database]:
    database = Database(f"sqlite:///{mount / 'full.db'}", settings=Settings.for_tests())
    TestBase.metadata.create_all(database.engine, tables=[Widget.__table__])
    yield database
    database.dispose()


@contextlib.contextmanager
def _postgresql(mount: Path, databases: TestDatabases) -> Iterator[Database]:
    shutil.chown(mount, "postgres", "postgres")
    url = databases.url("postgresql", "dblayer_diskfull")
    database = Database(url, settings=Settings.for_tests())
    space = f"dblayer_full{database_suffix()}_{uuid.uuid4().hex[:8]}"
    admin = database.engine.execution_options(isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.exec_driver_sql(f"CREATE TABLESPACE {space} LOCATION '{mount}'")
    except Exception as error:  # the server's refusal is the reason to skip
        database.dispose()
        drop_server_database(url)
        pytest.skip(f"PostgreSQL refused a tablespace on a tmpfs ({str(error).splitlines()[0][:120]})")
    try:
        TestBase.metadata.drop_all(database.engine, tables=[Widget.__table__])
        TestBase.metadata.create_all(database.engine, tables=[Widget.__table__])
        with admin.connect() as connection:
            connection.exec_driver_sql(f"ALTER TABLE widget SET TABLESPACE {space}")
            for index in connection.exec_driver_sql("SELECT indexname FROM pg_indexes WHERE tablename = 'widget'"):
                connection.exec_driver_sql(f'ALTER INDEX "{index[0]}" SET TABLESPACE {space}')
        yield database
    finally:
        database.dispose()
        drop_server_database(url)
        with Database(url.set(database="postgres")).engine.execution_options(
                isolation_level="AUTOCOMMIT").connect() as connection:
            connection.exec_driver_sql(f"DROP TABLESPACE IF EXISTS {space}")


@contextlib.contextmanager
def _mariadb(mount: Path, databases: TestDatabases) -> Iterator[Database]:
    shutil.chown(mount, "mysql", "mysql")
    url = databases.url("mariadb", "dblayer_diskfull")
    database = Database(url, settings=Settings.for_tests())
    try:
        with database.engine.begin() as connection:
            if connection.exec_driver_sql("SELECT @@innodb_file_per_table").scalar() != 1:
                pytest.skip("MariaDB has innodb_file_per_table off: a table cannot have its own DATA DIRECTORY")
            connection.exec_driver_sql("DROP TABLE IF EXISTS widget")
        TestBase.metadata.create_all(database.engine, tables=[Widget.__table__])
        with database.engine.begin() as connection:
            ddl = connection.exec_driver_sql("SHOW CREATE TABLE widget").one()[1]
            connection.exec_driver_sql("DROP TABLE widget")
            try:
                connection.exec_driver_sql(f"{ddl} DATA DIRECTORY = '{mount}'")
            except Exception as error:
                pytest.skip(f"MariaDB refused a DATA DIRECTORY on a tmpfs ({str(error).splitlines()[0][:120]})")
        yield database
    finally:
        database.dispose()
        drop_server_database(url)


@pytest.fixture
def full_disk(engine_name: str, test_databases: TestDatabases) -> Iterator[FullDisk]:
    mount = Path("/tmp") / f"dblayer-full{database_suffix()}-{engine_name}-{uuid.uuid4().hex[:6]}"
    mount_tmpfs(mount, "3m")
    try:
        with _MAKERS[engine_name](mount, test_databases) as database:
            yield FullDisk(database, mount)
    finally:
        unmount(mount)


_MAKERS = {"sqlite": _sqlite, "postgresql": _postgresql, "mariadb": _mariadb}


def _committed(disk: FullDisk, rows: int) -> None:
    with disk.database.unit_of_work() as uow:
        uow.repository(WidgetRepository).create_many({"name": f"kept-{i}", **ROW} for i in range(rows))


def expect_disk_full(disk: FullDisk, write: Callable[[Any], Any]) -> None:
    """``write`` (or the commit after it) raises DiskFull, and the table holds what it held before."""
    before = disk.count()
    with pytest.raises(DiskFull) as raised, disk.database.unit_of_work() as uow:
        write(uow.repository(WidgetRepository))
    assert "disk" in str(raised.value) and "full" in str(raised.value)
    assert disk.count() == before


def test_create_many_on_a_full_disk_is_disk_full_and_writes_nothing(full_disk: FullDisk) -> None:
    _committed(full_disk, 50)
    full_disk.fill()
    expect_disk_full(full_disk, lambda widgets: widgets.create_many(
        {"name": f"more-{i}", **ROW} for i in range(50_000)))
    full_disk.free()
    assert full_disk.count() == 50
    _committed(full_disk, 0)
    with full_disk.database.unit_of_work() as uow:
        uow.repository(WidgetRepository).create(name="after")
    assert full_disk.count() == 51


def test_create_and_update_on_a_full_disk_are_disk_full(full_disk: FullDisk) -> None:
    _committed(full_disk, 20)
    full_disk.fill_table_then_disk()
    rows = full_disk.count()
    expect_disk_full(full_disk, lambda widgets: [widgets.create(name=f"one-{i}", **ROW) for i in range(50)])
    grown = {"ratio": 0.5, "released_at": "2026-01-01T00:00:00Z", "quantity": 2**62}  # every row grows
    expect_disk_full(full_disk, lambda widgets: [widgets.update(row, **grown) for row in widgets.list()])
    expect_disk_full(full_disk, lambda widgets: widgets.update_many({"quantity__gte": 0}, **grown))
    with full_disk.database.session() as session:
        assert WidgetRepository(session).count({"ratio__isnull": False}) == 0
    full_disk.free()
    with full_disk.database.unit_of_work() as uow:
        widgets = uow.repository(WidgetRepository)
        widgets.update(widgets.list(filters={"name": "kept-0"})[0], category="updated")
    assert full_disk.count() == rows


def test_a_unit_of_work_that_meets_the_full_disk_at_its_commit_leaves_nothing(full_disk: FullDisk,
                                                                              engine_name: str) -> None:
    """SQLite writes a transaction's pages at commit (to the WAL), so there it is the commit that meets the full disk;
    the servers extend the table's file at the insert. Either way: DiskFull, and not one of the rows."""
    _committed(full_disk, 5)
    full_disk.fill()
    before, reached_commit = full_disk.count(), False
    with pytest.raises(DiskFull), full_disk.database.unit_of_work() as uow:
        widgets = uow.repository(WidgetRepository)
        for i in range(200):
            widgets.create(name=f"late-{i}", **ROW)
        reached_commit = True
    assert reached_commit or engine_name != "sqlite"
    assert full_disk.count() == before
    full_disk.free()
    with full_disk.database.session() as session:
        assert session.execute(text("SELECT 1")).scalar() == 1


def test_a_sqlite_file_that_cannot_grow_its_journal_on_a_full_disk_is_disk_full(test_databases: TestDatabases) -> None:
    """A new connection must create the WAL and shared-memory files beside the database: on a full disk SQLite says
    only "disk I/O error" or "unable to open", which is told apart by the free space where the file is. (SQLite's
    own: no engine parameter.)"""
    mount = Path("/tmp") / f"dblayer-full{database_suffix()}-journal-{uuid.uuid4().hex[:6]}"
    mount_tmpfs(mount, "3m")
    try:
        with _sqlite(mount, test_databases) as database:
            disk = FullDisk(database, mount)
            _committed(disk, 5)
            database.dispose()  # the last connection removes the WAL: the next one must create it again
            disk.fill()
            reopened = Database(database.url, settings=database.settings)
            try:
                with pytest.raises(DiskFull), reopened.session() as session:
                    WidgetRepository(session).count()
            finally:
                reopened.dispose()
            disk.free()
            assert disk.count() == 5
    finally:
        unmount(mount)
