"""A storage root serves one database: two databases pointed at one root by mistake (on every engine, and a SQLite
file beside each), roots from before markers, racing processes, the command line in real processes, and restores.

The database under test (``first``) is on the engine of the run; ``second`` is a SQLite file that shares its root.
"""

from __future__ import annotations

import contextlib
import hashlib
import multiprocessing
import os
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, inspect, select

from db import Database, StorageMismatch
from db.base import Base
from db.errors import ConfirmationRequired
from db.models.file_blob import FileBlob
from db.models.file_object import StoredFile
from db.models.user import User
from db.scripts import bind_storage
from db.scripts.backup_db import backup
from db.scripts.check_db import check
from db.scripts.cleanup_db import RetentionPolicy, cleanup
from db.scripts.restore_db import restore
from db.scripts.sample_generator import GeneratorOptions, generate
from db.settings import Settings
from db.storage import MARKER, LocalStorage
from db.storage_binding import BindingState, database_location, existing_identity, stamp_identity
from tests.integration.storage_workers import new_account, store_one
from tests.support import TestDatabases, drop_all_tables

ROOT_DIR = Path(__file__).resolve().parents[2]
EVERYTHING_OLD = RetentionPolicy(tokens_after=None, deleted_after=None, audit_after=None, blobs=True)


# --- helpers -----------------------------------------------------------------------------------------------------


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "shared-files"


@pytest.fixture
def first(engine_name: str, test_databases: TestDatabases, root: Path) -> Iterator[Database]:
    with test_databases.own(engine_name, "sb_first", Settings.for_tests(storage_root=root)) as database:
        yield database


@pytest.fixture
def second(test_databases: TestDatabases, root: Path) -> Iterator[Database]:
    """A SQLite database pointed at ``first``'s root by mistake."""
    with test_databases.own("sqlite", "sb_second", Settings.for_tests(storage_root=root)) as database:
        yield database


def identity(database: Database) -> uuid.UUID:
    with database.engine.connect() as connection:
        found = existing_identity(connection)
    assert found is not None
    return found


def store(database: Database, account_id: str, data: bytes, filename: str = "f.bin") -> StoredFile:
    with database.unit_of_work() as uow:
        return uow.files.store(account=account_id, owner=None, filename=filename, stream=data)


def with_files(database: Database, tag: str = "acme", count: int = 3) -> list[StoredFile]:
    account_id = new_account(database, tag)
    return [store(database, account_id, f"{tag} file {index}".encode(), f"{index}.txt") for index in range(count)]


def rows(database: Database, model: type[Base]) -> int:
    with database.engine.connect() as connection:
        return int(connection.scalar(select(func.count()).select_from(model)) or 0)


def contents(root: Path) -> dict[str, bytes]:
    """Every blob under the root, by key, with its bytes."""
    storage = LocalStorage(root)
    keys = list(storage.keys())
    return {key: storage.path_of(key).read_bytes() for key in keys}


def all_verified(database: Database, files: list[StoredFile]) -> bool:
    with database.unit_of_work() as uow:
        return all(uow.files.verify(stored.id).ok for stored in files)


def url_of(database: Database) -> str:
    return database.url.render_as_string(hide_password=False)


def run_db(*args: str, root: Path) -> subprocess.CompletedProcess[str]:
    """``python -m db ARGS`` in a process of its own, the storage root given only by DBLAYER_STORAGE_ROOT."""
    env = os.environ | {"DBLAYER_STORAGE_ROOT": str(root)}
    env.pop("DATABASE_URL", None)
    return subprocess.run([sys.executable, "-m", "db", *args], cwd=ROOT_DIR, env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=300, check=False)


def flat(text: str) -> str:
    return " ".join(text.split())


# --- two databases, one root --------------------------------------------------------------------------------------


def test_a_second_database_on_a_bound_root_can_neither_store_nor_clean_and_nothing_is_removed(
    first: Database, second: Database, root: Path
) -> None:
    files = with_files(first)
    before = contents(root)
    account_id = new_account(second, "intruder")

    with pytest.raises(StorageMismatch) as refused:
        store(second, account_id, b"the second database's upload")
    assert refused.value.bound_to == str(identity(first)) and refused.value.database_id == identity(second)
    assert str(identity(first)) in str(refused.value) and str(identity(second)) in str(refused.value)
    with pytest.raises(StorageMismatch), second.unit_of_work() as uow:
        uow.files.reclaim_orphans()
    with pytest.raises(StorageMismatch):
        cleanup(second, apply=True, policy=EVERYTHING_OLD)
    with pytest.raises(StorageMismatch):
        cleanup(second, apply=False, policy=EVERYTHING_OLD)  # the dry run does not list another one's blobs

    assert contents(root) == before
    assert rows(second, StoredFile) == rows(second, FileBlob) == 0
    assert all_verified(first, files) and check(first).ok


def test_sample_data_is_not_generated_into_another_databases_root(
    first: Database, second: Database, root: Path
) -> None:
    with_files(first)
    before = contents(root)
    with pytest.raises(StorageMismatch):
        generate(second, GeneratorOptions(users=20, accounts=2, files_per_account=2, events_per_user=1, seed=5))
    assert contents(root) == before and rows(second, User) == rows(second, FileBlob) == 0  # nothing written


def test_check_of_the_second_database_reports_whose_root_it_is(first: Database, second: Database) -> None:
    with_files(first)
    report = check(second)
    assert not report.ok
    storage = report.result("storage")
    assert storage.ok is False and str(identity(first)) in storage.problems[0]
    assert report.result("blobs").ok is None  # another database's blobs are not this one's to judge
    assert check(first).result("storage").ok is True


@pytest.mark.slow
def test_cleanup_of_another_database_on_the_command_line_refuses_and_the_owner_still_checks(
    first: Database, second: Database, root: Path
) -> None:
    """The report's case, in real processes: cleanup --apply --yes of another database over a shared root."""
    files = with_files(first)
    before = contents(root)

    cleaned = run_db("cleanup", "--apply", "--yes", "--url", url_of(second), root=root)
    assert cleaned.returncode == 1, cleaned.stdout + cleaned.stderr
    assert f"belongs to database {identity(first)}" in flat(cleaned.stderr) and "Traceback" not in cleaned.stderr
    assert contents(root) == before

    checked = run_db("check", "--url", url_of(first), root=root)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    checked = run_db("check", "--url", url_of(second), root=root)
    assert checked.returncode == 1 and "storage" in checked.stderr
    assert all_verified(first, files)


@pytest.mark.slow
def test_a_database_reads_the_storage_root_from_the_environment_as_the_command_line_does(
    first: Database, root: Path
) -> None:
    """A file stored by the library with the root given only by DBLAYER_STORAGE_ROOT is found by ``check``."""
    account_id = new_account(first, "env")
    script = ("import sys; from db import Database; d = Database(sys.argv[1]); "
              "u = d.unit_of_work().__enter__(); u.files.store(account=sys.argv[2], owner=None, filename='e', "
              "stream=b'stored by the library'); u.session.commit(); print(d.settings.storage_root)")
    env = os.environ | {"DBLAYER_STORAGE_ROOT": str(root)}
    done = subprocess.run([sys.executable, "-c", script, url_of(first), account_id], cwd=ROOT_DIR, env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(root)
    assert hashlib.sha256(b"stored by the library").hexdigest() in contents(root)
    assert run_db("check", "--url", url_of(first), root=root).returncode == 0


@pytest.mark.slow
def test_processes_of_two_databases_racing_for_a_new_root_leave_it_to_one_of_them(
    first: Database, second: Database, root: Path
) -> None:
    context = multiprocessing.get_context("spawn")
    jobs = [(url_of(database), str(root), f"racer-{name}-{index}")
            for index in range(3) for name, database in (("a", first), ("b", second))]
    with context.Manager() as manager, context.Pool(len(jobs)) as pool:
        start = manager.Barrier(len(jobs))
        outcomes = pool.starmap(store_one, [(*job, start) for job in jobs])
    by_database = {name: [outcome for (_, _, tag), outcome in zip(jobs, outcomes, strict=True) if f"-{name}-" in tag]
                   for name in ("a", "b")}
    assert sorted(map(tuple, by_database.values())) == [("refused",) * 3, ("stored",) * 3], by_database
    winner, loser = (first, second) if by_database["a"][0] == "stored" else (second, first)
    owner = LocalStorage(root).owner()
    assert owner is not None and owner.database_id == str(identity(winner))
    assert rows(loser, StoredFile) == rows(loser, FileBlob) == 0
    with winner.engine.connect() as connection:
        assert sorted(contents(root)) == sorted(connection.scalars(select(FileBlob.sha256)))


# --- roots without a marker: from before markers, or whose marker was deleted --------------------------------------


def test_a_root_without_a_marker_is_adopted_only_by_the_database_that_names_all_its_blobs(
    first: Database, second: Database, root: Path
) -> None:
    files = with_files(first)
    (root / MARKER).unlink()
    before = contents(root)

    with pytest.raises(StorageMismatch, match="not bound to any database and holds 3 blob"):
        cleanup(second, apply=True, policy=EVERYTHING_OLD)
    with pytest.raises(StorageMismatch):
        store(second, new_account(second, "late"), b"would be named by the wrong database")
    assert contents(root) == before and (root / MARKER).exists() is False

    with first.unit_of_work() as uow:  # the database that names every blob takes it back, and removes nothing
        assert uow.files.reclaim_orphans().blobs == 0
    owner = LocalStorage(root).owner()
    assert owner is not None and owner.database_id == str(identity(first))
    assert contents(root) == before and all_verified(first, files)


@pytest.mark.slow
def test_a_root_without_a_marker_holding_a_blob_nobody_names_waits_for_an_operator_to_bind_it(
    first: Database, root: Path
) -> None:
    files = with_files(first)
    (root / MARKER).unlink()
    loose, _ = LocalStorage(root).put(b"left by an upload that crashed before its row was written")

    with pytest.raises(StorageMismatch, match="1 blob"), first.unit_of_work() as uow:
        uow.files.reclaim_orphans()
    assert loose in contents(root)
    assert bind_storage.describe(first).state is BindingState.UNCLAIMED
    with pytest.raises(ConfirmationRequired, match="--yes"):
        bind_storage.bind(first)
    refused = run_db("storage", "--bind", "--url", url_of(first), root=root)  # no terminal, no --yes: nothing
    assert refused.returncode == 1 and LocalStorage(root).owner() is None

    bound = run_db("storage", "--bind", "--yes", "--url", url_of(first), root=root)
    assert bound.returncode == 0, bound.stderr
    assert str(identity(first)) in flat(bound.stdout)
    with first.unit_of_work() as uow:
        assert uow.files.reclaim_orphans().loose_blobs == 1
    assert loose not in contents(root) and all_verified(first, files)


def test_a_database_whose_identity_row_was_deleted_uses_no_root_until_it_is_given_a_new_one(
    first: Database, root: Path
) -> None:
    files = with_files(first)
    old = identity(first)
    with first.engine.begin() as connection:
        connection.execute(Base.metadata.tables["database_identity"].delete())
    with pytest.raises(StorageMismatch, match="no identity"), first.unit_of_work() as uow:
        uow.files.verify(files[0].id)  # a read: refused too
    assert check(first).result("storage").ok is False

    result = bind_storage.bind(first, yes=True)  # a new identity; the root, bound to the old one, is taken over
    assert result.new_identity and identity(first) != old
    assert result.before.state is BindingState.FOREIGN
    assert all_verified(first, files) and check(first).ok


# --- backup and restore: a copy never passes for the original ---------------------------------------------------------


@pytest.fixture
def copy_target(engine_name: str, test_databases: TestDatabases, root: Path) -> Iterator[Database]:
    """An empty database on the engine, pointed (as a careless restore would be) at ``first``'s root."""
    with test_databases.own(engine_name, "sb_copy", Settings.for_tests(storage_root=root)) as database:
        drop_all_tables(database)
        yield database


@pytest.mark.slow
def test_a_backup_restored_into_another_database_cannot_take_over_the_originals_root(
    first: Database, copy_target: Database, root: Path, tmp_path: Path
) -> None:
    files = with_files(first)
    made = backup(first, directory=tmp_path / "backups")
    before = contents(root)

    with pytest.raises(StorageMismatch, match=str(identity(first))):
        restore(copy_target, made.path)
    with copy_target.engine.connect() as connection:
        assert inspect(connection).get_table_names() == []  # refused before anything was touched
    assert contents(root) == before

    own_root = tmp_path / "copy-files"
    copy_target.settings = Settings.for_tests(storage_root=own_root)
    restore(copy_target, made.path)
    copied = identity(copy_target)
    assert copied != identity(first)
    owner = LocalStorage(own_root).owner()
    assert owner is not None and owner.database_id == str(copied)
    assert check(copy_target).ok and check(first).ok and all_verified(first, files)


@pytest.mark.slow
def test_a_restore_over_a_database_keeps_its_identity_and_its_root(
    first: Database, test_databases: TestDatabases, engine_name: str, tmp_path: Path
) -> None:
    with_files(first, "source")
    made = backup(first, directory=tmp_path / "backups")
    target_root = tmp_path / "target-files"
    with test_databases.own(engine_name, "sb_target", Settings.for_tests(storage_root=target_root)) as target:
        with_files(target, "target", count=1)
        kept = identity(target)
        restore(target, made.path, yes=True)
        assert identity(target) == kept != identity(first)
        account_id = new_account(target, "after")
        assert store(target, account_id, b"stored after the restore").size == 24  # its root is still its own
        assert check(target).ok


# --- a copy made outside the layer: the same identity, another location ----------------------------------------------


@pytest.fixture
def copy_of_first(first: Database, engine_name: str, test_databases: TestDatabases, root: Path,
                  tmp_path: Path) -> Iterator[Callable[[], Database]]:
    """Makes a copy of ``first`` as it is then, at another location, pointed at ``first``'s root: for SQLite a copy
    of the file; on a server another database holding ``first``'s identity (what ``pg_dump | psql`` or ``CREATE
    DATABASE ... TEMPLATE`` gives)."""
    settings = Settings.for_tests(storage_root=root)
    with contextlib.ExitStack() as stack:

        def make() -> Database:
            if engine_name == "sqlite":
                copied = tmp_path / "copy.db"
                with contextlib.closing(sqlite3.connect(str(first.url.database))) as source, \
                        contextlib.closing(sqlite3.connect(copied)) as target:
                    source.backup(target)  # the file as ``cp`` copies it once the WAL is checkpointed
                database = Database(f"sqlite:///{copied}", settings=settings)
                stack.callback(database.dispose)
                return database
            database = stack.enter_context(test_databases.own(engine_name, "sb_dup", settings))
            with database.engine.begin() as connection:
                stamp_identity(connection, identity(first))
            return database

        yield make


@pytest.mark.slow
def test_a_copy_of_the_database_can_neither_clean_nor_store_in_the_originals_root(
    first: Database, copy_of_first: Callable[[], Database], root: Path, engine_name: str
) -> None:
    """The review's case: a copy has the original's identity, but not its location."""
    files = with_files(first)
    copy = copy_of_first()
    assert identity(copy) == identity(first)
    files.append(store(first, files[0].account_id, b"uploaded after the copy: the copy does not name it"))
    before = contents(root)

    cleaned = run_db("cleanup", "--apply", "--yes", "--url", url_of(copy), root=root)
    assert cleaned.returncode == 1, cleaned.stdout + cleaned.stderr
    message = flat(cleaned.stderr)
    assert "same identity" in message and "python -m db storage --bind" in message and "Traceback" not in message
    with pytest.raises(StorageMismatch, match="same identity"), copy.unit_of_work() as uow:
        uow.files.reclaim_orphans()
    with pytest.raises(StorageMismatch, match="same identity"):
        store(copy, new_account(copy, "copy"), b"the copy's upload")
    if engine_name == "sqlite":  # the copy names the original's first files: it may read them
        assert all_verified(copy, files[:-1])
        with copy.unit_of_work() as uow:
            uow.files.delete(files[0].id)
        with pytest.raises(StorageMismatch, match="same identity"), copy.unit_of_work() as uow:
            uow.files.purge()

    assert contents(root) == before
    assert check(copy).result("storage").ok is False
    checked = run_db("check", "--url", url_of(first), root=root)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert all_verified(first, files)


def equivalent_url(database: Database, engine_name: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Another URL of the same database: a relative SQLite path; another spelling of the engine, host and port, and
    on PostgreSQL (whose test server trusts local connections) a password."""
    url = database.url
    if engine_name == "sqlite":
        file = Path(str(url.database))
        monkeypatch.chdir(file.parent)
        return f"sqlite:///{file.name}"
    other = url.set(drivername="mysql", host="localhost", port=None)
    if engine_name == "postgresql":
        other = url.set(drivername="postgres", host="localhost", port=None, password="not-compared")
    return other.render_as_string(hide_password=False)


def test_the_same_database_by_an_equivalent_url_may_still_clean_its_root(
    first: Database, root: Path, engine_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = with_files(first)
    loose, _ = LocalStorage(root).put(b"bytes without a row: an orphan")
    same = Database(equivalent_url(first, engine_name, monkeypatch), settings=Settings.for_tests(storage_root=root))
    try:
        assert same.url != first.url and identity(same) == identity(first)
        assert bind_storage.describe(same).state is BindingState.BOUND
        with same.unit_of_work() as uow:
            assert uow.files.reclaim_orphans().loose_blobs == 1
        assert loose not in contents(root)
        store(same, files[0].account_id, b"stored through the other URL")
    finally:
        same.dispose()
    assert all_verified(first, files) and check(first).ok


@pytest.mark.slow
def test_a_copy_takes_the_root_over_only_when_an_operator_rebinds_it_and_then_the_original_is_refused(
    first: Database, copy_of_first: Callable[[], Database], root: Path
) -> None:
    with_files(first)
    copy = copy_of_first()
    refused = run_db("storage", "--bind", "--url", url_of(copy), root=root)  # no terminal, no --yes
    assert refused.returncode == 1 and "nothing was changed" in flat(refused.stderr)
    assert "same identity as this database" in flat(refused.stdout)  # the question it asked
    owner = LocalStorage(root).owner()
    assert owner is not None and owner.location == database_location(first.url)

    bound = run_db("storage", "--bind", "--yes", "--url", url_of(copy), root=root)
    assert bound.returncode == 0, bound.stderr
    owner = LocalStorage(root).owner()
    assert owner is not None and owner.location == database_location(copy.url)
    assert bind_storage.describe(copy).state is BindingState.BOUND
    assert bind_storage.describe(first).state is BindingState.ELSEWHERE
    with pytest.raises(StorageMismatch, match="same identity"):
        cleanup(first, apply=True, policy=EVERYTHING_OLD)
