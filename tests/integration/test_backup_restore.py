"""Backup and restore on every engine: online backups under a writing process, cross-engine round trips, refused
archives that leave the target untouched, confirmation, all-or-empty loading, retention and the command line."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import multiprocessing
import tarfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import zstandard
from sqlalchemy import func, inspect, select

from db import Database
from db.backup import sizes, snapshot
from db.backup.leftovers import restore_leftovers
from db.backup.manifest import MANIFEST, SQLITE_PART, Manifest, TableDump
from db.backup.reader import unpack, verify_archive
from db.backup.writer import ArchiveWriter
from db.base import Base
from db.cli import main
from db.errors import BackupError, ConfirmationRequired
from db.migrations import runner
from db.models.account import Account
from db.models.file_object import StoredFile
from db.models.user import User
from db.repositories.audit_repository import AuditRepository
from db.scripts.backup_db import backup, database_label
from db.scripts.check_db import check
from db.scripts.restore_db import restore
from db.settings import Settings
from db.storage import LocalStorage
from tests.support import TestDatabases, drop_all_tables

PASSWORD = "correct horse battery staple"
Rows = dict[str, list[tuple[Any, ...]]]


# --- helpers ---------------------------------------------------------------------------------------------------


def settings_for(root: Path) -> Settings:
    return Settings.for_tests(storage_root=root)


@pytest.fixture
def source(engine_name: str, test_databases: TestDatabases, tmp_path: Path) -> Iterator[Database]:
    with test_databases.own(engine_name, "bkb_source", settings_for(tmp_path / "source-files")) as database:
        yield database


@pytest.fixture
def target(engine_name: str, test_databases: TestDatabases, tmp_path: Path) -> Iterator[Database]:
    """An empty database on the engine (no tables at all), its blobs in a storage root of its own."""
    with test_databases.own(engine_name, "bkb_target", settings_for(tmp_path / "target-files")) as database:
        drop_all_tables(database)
        yield database


def populate(database: Database, prefix: str = "p", users: int = 4) -> None:
    """Users, accounts, members, tokens, files (two sharing one blob), a purged audit prefix with a checkpoint."""
    with database.unit_of_work(actor="seed") as uow:
        people = [uow.users.create(email=f"{prefix}{n}@example.com", password=PASSWORD, display_name=f"Ünïcødé {n}")
                  for n in range(users)]
        account = uow.accounts.create(name=f"Acme {prefix}", slug=f"acme-{prefix}", owner=people[0])
        for person in people[1:]:
            uow.accounts.add_member(account, person, "member")
        uow.users.issue_token(people[1], "password_reset")
        uow.files.store(account=account, owner=people[0], filename="a.txt", stream=b"same bytes")
        uow.files.store(account=account, owner=people[1], filename="b.txt", stream=b"same bytes")
        uow.files.store(account=account, owner=people[-1], filename="c.bin", stream=bytes(range(256)) * 50)
    with database.unit_of_work(actor="seed") as uow:
        uow.audit.purge(before=dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1), reason="test retention",
                        archive_dir=database.settings.storage_root.parent / "audit-archive")
        uow.users.create(email=f"{prefix}-late@example.com", password=PASSWORD)


def all_rows(database: Database, *, skip: frozenset[str] = frozenset()) -> Rows:
    """Every row of every application table, sorted, as plain tuples (values typed by the models); but not the
    database's identity, which a restore never copies (see test_storage_binding.py)."""
    found: Rows = {}
    with database.engine.connect() as connection:
        for table in Base.metadata.sorted_tables:
            if table.name in skip or table.name == "database_identity":
                continue
            rows = connection.execute(select(table)).all()
            found[table.name] = sorted((tuple(row) for row in rows), key=repr)
    return found


def blob_hashes(database: Database) -> set[str]:
    with database.engine.connect() as connection:
        return set(connection.scalars(select(StoredFile.sha256)))


def assert_blobs_present(database: Database) -> None:
    storage = LocalStorage(database.settings.storage_root)
    for key in blob_hashes(database):
        with storage.open(key) as stream:
            assert hashlib.sha256(stream.read()).hexdigest() == key


def assert_chain_ok(database: Database) -> None:
    with database.session() as session:
        report = AuditRepository(session).verify_chain()
    assert report.ok, report.reason


def app_tables(database: Database) -> set[str]:
    with database.engine.connect() as connection:
        return set(inspect(connection).get_table_names()) & {*Base.metadata.tables, "alembic_version"}


def count(database: Database, model: type[Any]) -> int:
    with database.engine.connect() as connection:
        return int(connection.scalar(select(func.count()).select_from(model)) or 0)


def repack(original: Path, destination: Path, tmp: Path, *,
           edit_part: Callable[[str, bytes], bytes] = lambda name, data: data,
           edit_manifest: Callable[[Manifest], Manifest] = lambda manifest: manifest,
           keep_manifest_hashes: bool = False) -> Path:
    """Rewrite an archive with edited parts and/or manifest (the manifest lists the new hashes unless told not to)."""
    parts_dir = tmp / f"parts-{destination.name}"
    manifest = unpack(original, parts_dir)
    with destination.open("wb") as out:
        writer = ArchiveWriter(out)
        for part in manifest.parts:
            writer.add(part.name, [edit_part(part.name, (parts_dir / part.extracted_name).read_bytes())])
        parts = manifest.parts if keep_manifest_hashes else tuple(writer.parts)
        edited = edit_manifest(manifest)
        writer.close(Manifest(engine=edited.engine, revision=edited.revision, created_at=edited.created_at,
                              database=edited.database, tables=edited.tables, parts=parts))
    return destination


def hostile_archive(path: Path, member: tarfile.TarInfo, data: bytes = b"") -> Path:
    with tarfile.open(path, "w") as tar:
        tar.addfile(member, io.BytesIO(data) if member.isreg() else None)
    return path


# --- online backup while another process writes ----------------------------------------------------------------


def keep_writing(url: str, storage_root: str, started: Any, stop: Any) -> None:
    """Child process: one committed transaction after another (user, account, file) until told to stop."""
    database = Database(url, settings=settings_for(Path(storage_root)), attempts=50)
    written = 0
    while not stop.is_set():
        def work(uow: Any, n: int = written) -> None:
            user = uow.users.create(email=f"w{n}@example.com", password=PASSWORD)
            account = uow.accounts.create(name=f"W {n}", slug=f"w-{n}", owner=user)
            uow.files.store(account=account, owner=user, filename=f"{n}.txt", stream=f"writer {n}".encode())

        database.run_in_transaction(work, actor="writer")
        written += 1
        if written == 3:
            started.set()
    database.dispose()


@pytest.mark.slow
def test_online_backup_while_another_process_writes_restores_a_consistent_snapshot(
    source: Database, target: Database, tmp_path: Path
) -> None:
    populate(source)
    context = multiprocessing.get_context("spawn")
    started, stop = context.Event(), context.Event()
    writer = context.Process(target=keep_writing, args=(
        source.url.render_as_string(hide_password=False), str(source.settings.storage_root), started, stop))
    writer.start()
    try:
        assert started.wait(120), "the writer process did not start writing"
        result = backup(source, directory=tmp_path / "backups")
        at_backup = count(source, Account)
        deadline = time.monotonic() + 60
        while count(source, Account) <= at_backup + 2 and time.monotonic() < deadline:
            time.sleep(0.05)  # the writer keeps going after (and during) the backup
    finally:
        stop.set()
        writer.join(120)
    assert writer.exitcode == 0
    assert count(source, Account) > at_backup

    restored = restore(target, result.path)

    # Every restored row is a row of the source, unchanged (the writer only inserts), and the snapshot is one
    # moment: each writer transaction is all there or not at all, and the audit chain's head matches its entries.
    after = all_rows(source, skip=frozenset({"audit_chain_head"}))
    snapshot = all_rows(target, skip=frozenset({"audit_chain_head"}))
    for table, rows in snapshot.items():
        assert set(rows) <= set(after[table]), table
        assert len(rows) == result.manifest.row_counts[table] == restored.rows[table], table
    # populate() made 5 users, 1 account, 3 files; each writer transaction adds one of each
    assert count(target, StoredFile) == count(target, Account) + 2
    assert count(target, User) == count(target, Account) + 4
    assert count(target, Account) < count(source, Account)
    assert_chain_ok(target)
    assert_blobs_present(target)
    assert runner.current_revision(target) == runner.head_revision()


# --- round trips -----------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_sqlite_backup_restores_into_the_engine_and_back(
    engine_name: str, test_databases: TestDatabases, target: Database, tmp_path: Path
) -> None:
    with test_databases.own("sqlite", "bkb_origin", settings_for(tmp_path / "origin-files")) as origin:
        populate(origin)
        original = all_rows(origin)
        first = backup(origin, directory=tmp_path / "backups")
        assert first.manifest.engine == "sqlite" and first.manifest.blob_count == 2

    result = restore(target, first.path)
    assert result.replaced is False
    assert all_rows(target) == original
    assert_chain_ok(target)
    assert_blobs_present(target)

    second = backup(target, directory=tmp_path / "backups")
    assert second.manifest.engine == engine_name
    with test_databases.own("sqlite", "bkb_back", settings_for(tmp_path / "back-files")) as back:
        restore(back, second.path, yes=True)
        assert all_rows(back) == original
        assert_chain_ok(back)
        assert_blobs_present(back)


@pytest.mark.slow
def test_restore_replaces_existing_data_only_when_confirmed(source: Database, target: Database,
                                                           tmp_path: Path) -> None:
    populate(source, prefix="src")
    made = backup(source, directory=tmp_path / "backups")
    runner.upgrade(target)
    populate(target, prefix="old", users=2)
    before = all_rows(target)
    questions: list[str] = []

    def refuse(question: str) -> bool:
        questions.append(question)
        return False

    with pytest.raises(ConfirmationRequired, match="--yes"):
        restore(target, made.path)
    garbage = tmp_path / "garbage.tar"
    garbage.write_bytes(b"not an archive")
    with pytest.raises(ConfirmationRequired, match="--yes"):  # refused before the archive is even read
        restore(target, garbage)
    with pytest.raises(ConfirmationRequired, match="not confirmed"):
        restore(target, made.path, confirm=refuse)
    assert all_rows(target) == before
    assert questions and target.url.render_as_string(hide_password=True) in questions[0]

    result = restore(target, made.path, confirm=lambda question: True)
    assert result.replaced is True
    assert all_rows(target) == all_rows(source)
    assert_chain_ok(target)


@pytest.mark.slow
def test_a_backup_from_an_older_revision_is_restored_then_upgraded(source: Database, target: Database,
                                                                  tmp_path: Path) -> None:
    with source.unit_of_work(actor="seed") as uow:  # written at head: this code writes the head's schema only
        ada = uow.users.create(email="ada@example.com", password=PASSWORD)
        uow.accounts.create(name="Old", slug="old", owner=ada)
    runner.downgrade(source, "0003_identity")
    made = backup(source, directory=tmp_path / "backups")
    assert made.manifest.revision == "0003_identity"
    assert "file" not in made.manifest.row_counts and made.manifest.blob_count == 0
    runner.upgrade(source)  # compared with the target at head, column for column

    result = restore(target, made.path)
    assert result.revision == runner.head_revision() == runner.current_revision(target)
    assert all_rows(target, skip=frozenset({"file", "file_blob", "report_run"})) == all_rows(
        source, skip=frozenset({"file", "file_blob", "report_run"}))
    assert_chain_ok(target)


# --- refused archives leave the target untouched ---------------------------------------------------------------


@pytest.fixture
def made(source: Database, tmp_path: Path) -> Path:
    populate(source)
    return backup(source, directory=tmp_path / "backups").path


@pytest.fixture
def occupied(target: Database) -> Database:
    runner.upgrade(target)
    populate(target, prefix="keep", users=2)
    return target


def _flip_middle_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _damaged_blob(name: str, data: bytes) -> bytes:
    return (b"X" + data[1:]) if name.startswith("blobs/") else data


@pytest.mark.parametrize("damage", ["flipped byte", "truncated", "part checksum", "newer revision",
                                    "no manifest"])
@pytest.mark.slow
def test_a_damaged_archive_is_refused_and_the_target_untouched(
    damage: str, made: Path, occupied: Database, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.tar"
    if damage == "flipped byte":
        bad.write_bytes(made.read_bytes())
        _flip_middle_byte(bad)
        expected = "corrupt|SHA-256|truncated|missing"
    elif damage == "truncated":
        bad.write_bytes(made.read_bytes()[: made.stat().st_size * 2 // 3])
        expected = "truncated"
    elif damage == "part checksum":
        repack(made, bad, tmp_path, edit_part=_damaged_blob, keep_manifest_hashes=True)
        expected = "fails its SHA-256 check"
    elif damage == "newer revision":
        repack(made, bad, tmp_path, edit_manifest=lambda m: Manifest(
            engine=m.engine, revision="9999_from_the_future", created_at=m.created_at, database=m.database,
            tables=m.tables))
        expected = "does not know"
    else:
        with bad.open("wb") as out:
            ArchiveWriter(out).add("blobs/" + "0" * 64, [])  # and never closed: no manifest
        expected = "manifest is missing"
    before = all_rows(occupied)
    stored_before = sorted(LocalStorage(occupied.settings.storage_root).keys())

    with pytest.raises(BackupError, match=expected):
        restore(occupied, bad, yes=True)
    assert all_rows(occupied) == before
    assert sorted(LocalStorage(occupied.settings.storage_root).keys()) == stored_before
    if damage != "newer revision":
        with pytest.raises(BackupError, match=expected):
            verify_archive(bad)


@pytest.mark.parametrize("member", ["../escape.txt", "/tmp/bkb-absolute.txt", "blobs/../../escape.txt",
                                    "symlink", "hardlink", "device", "unexpected.txt"])
def test_an_archive_whose_members_escape_is_refused(member: str, occupied: Database, tmp_path: Path) -> None:
    if member == "symlink":
        info = tarfile.TarInfo("blobs/" + "a" * 64)
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
    elif member == "hardlink":
        info = tarfile.TarInfo("manifest.json")
        info.type, info.linkname = tarfile.LNKTYPE, "/etc/passwd"
    elif member == "device":
        info = tarfile.TarInfo("database.sqlite")
        info.type = tarfile.CHRTYPE
    else:
        info = tarfile.TarInfo(member)
        info.size = 5
    bad = hostile_archive(tmp_path / "hostile.tar", info, b"owned")
    before = all_rows(occupied)

    with pytest.raises(BackupError, match="unsafe archive"):
        restore(occupied, bad, yes=True)
    assert all_rows(occupied) == before
    assert not (tmp_path / "escape.txt").exists() and not Path("/tmp/bkb-absolute.txt").exists()


@pytest.mark.slow
def test_a_failure_while_loading_keeps_the_old_data_and_leaves_nothing_staged(occupied: Database,
                                                                             tmp_path: Path) -> None:
    columns = (("id", "uuid"), ("name", "str"))  # the account table has more columns: the insert fails
    line = b'["0192f0c4-0000-7000-8000-000000000001","Acme"]\n'
    bad = tmp_path / "short-rows.tar"
    with bad.open("wb") as out:
        writer = ArchiveWriter(out)
        writer.add("tables/account.jsonl.zst", [line])
        writer.close(Manifest(engine="postgresql", revision=str(runner.head_revision()),
                              created_at=dt.datetime.now(dt.UTC), database="test", parts=tuple(writer.parts),
                              tables=(TableDump("account", 1, columns),)))
    assert verify_archive(bad).row_counts == {"account": 1}
    before = all_rows(occupied)

    with pytest.raises(BackupError, match="still holds its previous data"):
        restore(occupied, bad, yes=True)
    assert all_rows(occupied) == before
    assert restore_leftovers(occupied) == []
    assert check(occupied).ok


# --- backups: blobs, retention, temporary names ----------------------------------------------------------------


def test_a_missing_blob_fails_the_backup_and_leaves_no_archive(source: Database, tmp_path: Path) -> None:
    populate(source)
    storage = LocalStorage(source.settings.storage_root)
    storage.path_of(next(iter(blob_hashes(source)))).unlink()
    with pytest.raises(BackupError, match="missing"):
        backup(source, directory=tmp_path / "backups")
    assert [path.name for path in (tmp_path / "backups").iterdir()] == []


def test_keep_deletes_all_but_the_newest_backups_of_that_database(source: Database, tmp_path: Path) -> None:
    folder = tmp_path / "backups"
    folder.mkdir()
    unrelated = folder / "notes.txt"
    unrelated.write_text("mine")
    made = [backup(source, directory=folder, keep=2) for _ in range(3)]
    assert made[2].removed == (made[0].path,)
    assert sorted(folder.iterdir()) == sorted([made[1].path, made[2].path, unrelated])
    assert [result.manifest.revision for result in made] == [runner.head_revision()] * 3


def test_keep_never_touches_the_backups_of_another_database_with_the_same_file_name(tmp_path: Path) -> None:
    folder = tmp_path / "backups"
    databases = []
    for stage in ("prod", "staging"):
        (tmp_path / stage).mkdir()
        database = Database(f"sqlite:///{tmp_path / stage / 'app.db'}", settings=settings_for(tmp_path / stage))
        runner.upgrade(database)
        databases.append(database)
    try:
        prod = backup(databases[0], directory=folder)
        staging = [backup(databases[1], directory=folder, keep=1) for _ in range(2)]
    finally:
        for database in databases:
            database.dispose()
    assert database_label(databases[0]) != database_label(databases[1])
    assert database_label(databases[0]).startswith("sqlite-app-")
    assert staging[1].removed == (staging[0].path,)
    assert prod.path.exists()


def test_a_backup_is_readable_by_its_owner_only(made: Path) -> None:
    assert made.stat().st_mode & 0o777 == 0o600


# --- the command line ------------------------------------------------------------------------------------------


def url_of(database: Database) -> str:
    return database.url.render_as_string(hide_password=False)


@pytest.mark.slow
def test_cli_backup_then_restore_then_verify(source: Database, target: Database, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    populate(source)
    folder = tmp_path / "backups"
    rc = main(["backup", "--url", url_of(source), "--storage", str(source.settings.storage_root),
               "--dir", str(folder), "--keep", "1"])
    out = capsys.readouterr().out
    [made] = list(folder.iterdir())
    assert rc == 0 and made.name in out.replace("\n", "") and "audit_entry" in out

    rc = main(["restore", str(made), "--url", url_of(target), "--storage", str(target.settings.storage_root)])
    assert rc == 0 and "restored into" in capsys.readouterr().out
    assert all_rows(target) == all_rows(source)

    rc = main(["restore", str(made), "--url", url_of(target), "--storage", str(target.settings.storage_root)])
    captured = capsys.readouterr()
    assert rc == 1 and "--yes" in captured.err and "Traceback" not in captured.err

    rc = main(["restore", str(made), "--url", url_of(target), "--yes",
               "--storage", str(target.settings.storage_root)])
    assert rc == 0 and "replaced the contents" in capsys.readouterr().out


def test_cli_reports_bad_archives_with_exit_code_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["restore", str(tmp_path / "missing.tar"), "--verify-only"])
    captured = capsys.readouterr()
    assert rc == 1 and "no backup archive" in captured.err and "Traceback" not in captured.err

    garbage = tmp_path / "garbage.tar"
    garbage.write_bytes(b"this is not an archive" * 100)
    rc = main(["restore", str(garbage), "--verify-only"])
    captured = capsys.readouterr()
    assert rc == 1 and "corrupt" in captured.err

    rc = main(["backup", "--keep", "0", "--dir", str(tmp_path)])
    assert rc == 2


def test_backing_up_a_sqlite_file_that_does_not_exist_creates_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "typo.db"
    rc = main(["backup", "--url", f"sqlite:///{missing}", "--dir", str(tmp_path / "backups"),
               "--storage", str(tmp_path / "files")])
    captured = capsys.readouterr()
    assert rc == 1 and "no SQLite database at" in captured.err
    assert not missing.exists()


def test_cli_verify_only_describes_an_intact_archive(made: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["restore", str(made), "--verify-only"])
    out = capsys.readouterr().out
    assert rc == 0 and "intact" in out and "audit_entry" in out


def test_the_archive_is_a_plain_tar_whose_parts_match_the_manifest(made: Path, tmp_path: Path) -> None:
    """What a user can check with standard tools: ``tar -tf``, ``sha256sum`` of a member, ``zstd -d``."""
    with tarfile.open(made) as tar:
        members = tar.getmembers()
        stored = {member.name: tar.extractfile(member).read() for member in members}  # type: ignore[union-attr]
    names = [member.name for member in members]
    assert names[-1] == MANIFEST and any(name.startswith("blobs/") for name in names)
    manifest = Manifest.from_json(stored[MANIFEST])
    assert [part.name for part in manifest.parts] == names[:-1]
    for part in manifest.parts:
        data = stored[part.name]
        assert (len(data), hashlib.sha256(data).hexdigest()) == (part.size, part.sha256), part.name
        if part.is_compressed:
            data = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data), read_across_frames=True).read()
        assert len(data) == part.raw_size, part.name
        if part.name == SQLITE_PART:
            assert data.startswith(b"SQLite format 3\x00")
        elif part.name.startswith("tables/"):
            assert len(data.splitlines()) == manifest.row_counts[part.name[7:].removesuffix(".jsonl.zst")]


@pytest.mark.slow
def test_large_parts_are_split_into_frames_and_restore_on_every_engine(
    source: Database, target: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Small frames (1 KiB instead of 16 MiB, rows fetched 7 at a time) so that the large parts span several frames:
    their order and joins hold."""
    monkeypatch.setattr(sizes, "CHUNK", 1024)
    monkeypatch.setattr(snapshot, "BATCH_ROWS", 7)
    populate(source, users=40)
    made = backup(source, directory=tmp_path / "backups")
    with tarfile.open(made.path) as tar:
        frames = max(_frame_count(tar.extractfile(member).read())  # type: ignore[union-attr]
                     for member in tar.getmembers() if member.name.endswith(".zst"))
    assert frames >= 5
    restore(target, made.path)
    assert all_rows(target) == all_rows(source)
    assert_chain_ok(target)


def _frame_count(stored: bytes) -> int:
    count = 0
    while stored:
        frame = zstandard.ZstdDecompressor().decompressobj()
        frame.decompress(stored)
        stored, count = frame.unused_data, count + 1
    return count
