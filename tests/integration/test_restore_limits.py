"""What a restore refuses and what it never leaves behind, on every engine: decompression bombs (memory stays flat,
measured in a child process), manifests that lie about a SQLite snapshot, a full disk (a small tmpfs), a SQLite
path that does not exist yet, and tables that are not the application's."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import secrets
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import insert, text

from db import Database
from db.backup import restore as restore_module
from db.backup.leftovers import restore_leftovers
from db.backup.manifest import Manifest, TableDump
from db.backup.reader import DEFAULT_LIMITS, Limits
from db.backup.writer import ArchiveWriter
from db.cli import main
from db.errors import BackupError, DiskFull
from db.migrations import runner
from db.models.report_run import ReportRun
from db.scripts.backup_db import backup
from db.scripts.check_db import check
from db.scripts.restore_db import restore, verify_backup
from db.storage import LocalStorage
from tests.bombs import huge_extended_header, member_flood, one_line_bomb, table_bomb
from tests.integration.test_backup_restore import PASSWORD, all_rows, populate, repack, settings_for
from tests.support import TestDatabases

ROOT = Path(__file__).resolve().parents[2]
HEAD = str(runner.head_revision())
PEAK_RSS_BOUND = 300 << 20  # a resource bound, generous: importing the layer takes about a third of it


@pytest.fixture
def occupied(engine_name: str, test_databases: TestDatabases, tmp_path: Path) -> Iterator[Database]:
    with test_databases.own(engine_name, "lim_target", settings_for(tmp_path / "target-files")) as database:
        populate(database, prefix="old", users=2)
        yield database


def untouched(database: Database) -> tuple[object, ...]:
    """What a user would compare: every row, the stored blobs, what restores left behind."""
    database.dispose()
    return (all_rows(database), sorted(LocalStorage(database.settings.storage_root).keys()),
            restore_leftovers(database))


# --- decompression bombs ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("raised", [False, True], ids=["default limits", "ratio raised"])
def test_a_decompression_bomb_is_refused_and_nothing_is_written(raised: bool, occupied: Database,
                                                                tmp_path: Path) -> None:
    bomb = one_line_bomb(tmp_path / "bomb.tar", revision=HEAD)  # 140 KiB, 4 GiB of one line
    before = untouched(occupied)
    limits = Limits(max_ratio=1e12) if raised else DEFAULT_LIMITS
    expected = "a row longer than" if raised else "decompression bomb"

    with pytest.raises(BackupError, match=expected):
        restore(occupied, bomb, yes=True, limits=limits)
    assert untouched(occupied) == before
    assert check(occupied).ok


def peak_rss_of_restore(*arguments: str) -> tuple[int, str]:
    """Run ``python -m db restore ARGUMENTS`` in a child; its exit code's stderr and its peak RSS in bytes."""
    # VmHWM, the high-water mark of this process's resident memory (ru_maxrss would include the forking parent's).
    code = ("import sys\nfrom db.cli import main\ntry:\n    code = main(sys.argv[1:])\nfinally:\n"
            "    peak = [line.split()[1] for line in open('/proc/self/status') if line.startswith('VmHWM')][0]\n"
            "    print('PEAK', int(peak) * 1024)\nsys.exit(code)")
    done = subprocess.run([sys.executable, "-c", code, "restore", *arguments], cwd=ROOT, capture_output=True,
                          text=True, timeout=600, check=False, env={**os.environ, "PYTHONPATH": str(ROOT)})
    peak = next(int(line.split()[1]) for line in done.stdout.splitlines() if line.startswith("PEAK"))
    return peak, done.stderr


@pytest.mark.slow
def test_memory_stays_flat_while_a_bomb_is_decompressed(tmp_path: Path) -> None:
    """With the expansion limit raised, the bombs are decompressed for real: one endless line (refused at the row
    limit), and 1 GiB of short rows whose manifest is honest (verified in full, refused at its first row). Neither
    a line nor a part is ever held whole."""
    target = f"sqlite:///{tmp_path / 'new' / 'target.db'}"
    for bomb, refusal in ((one_line_bomb(tmp_path / "line.tar"), "a row longer than"),
                          (table_bomb(tmp_path / "rows.tar", b"[1]\n", 64, revision=HEAD), "cannot take")):
        peak, stderr = peak_rss_of_restore(str(bomb), "--url", target, "--storage", str(tmp_path / "files"),
                                           "--max-expansion-ratio", "1000000000", "--yes")
        assert refusal in stderr and "Traceback" not in stderr
        assert peak < PEAK_RSS_BOUND, f"peak RSS {peak / 2**20:.0f} MiB restoring {bomb.name}"
    assert not (tmp_path / "new").exists()


HEADER_GROWTH_BOUND = 100 << 20  # over a refused tiny archive; tarfile alone: +1.2 GB and +235 MB


@pytest.mark.slow
def test_memory_stays_flat_on_a_huge_pax_header_and_a_flood_of_members(tmp_path: Path) -> None:
    """A 400 MB PAX header (refused before it is read) and 300,000 empty blob members without a manifest (walked,
    none kept): `restore --verify-only` refuses both in one line, its peak RSS no higher than for a tiny archive."""
    baseline, _ = peak_rss_of_restore(str(member_flood(tmp_path / "tiny.tar", 1)), "--verify-only")
    for bomb, refusal in ((huge_extended_header(tmp_path / "pax.tar", 400_000_000), "extended tar header"),
                          (member_flood(tmp_path / "flood.tar", 300_000), "the manifest is missing")):
        peak, stderr = peak_rss_of_restore(str(bomb), "--verify-only")
        assert refusal in stderr and "Traceback" not in stderr, stderr
        assert peak - baseline < HEADER_GROWTH_BOUND, f"peak RSS +{(peak - baseline) / 2**20:.0f} MiB on {bomb.name}"


# --- SQLite snapshots whose manifest lies ----------------------------------------------------------------------


@pytest.fixture
def snapshot_archive(test_databases: TestDatabases, tmp_path: Path) -> Path:
    with test_databases.own("sqlite", "lim_source", settings_for(tmp_path / "source-files")) as source:
        populate(source, prefix="new", users=4)
        return backup(source, directory=tmp_path / "backups").path


@pytest.mark.slow
@pytest.mark.parametrize("lie", ["one row more", "one row less", "a table left out"])
def test_a_sqlite_snapshot_whose_manifest_lies_about_its_rows_is_refused(
    lie: str, snapshot_archive: Path, occupied: Database, tmp_path: Path
) -> None:
    def edit(manifest: Manifest) -> Manifest:
        tables = list(manifest.tables)
        user = next(index for index, table in enumerate(tables) if table.name == "user")
        if lie == "a table left out":
            del tables[user]
        else:
            change = 1 if lie == "one row more" else -1
            tables[user] = TableDump("user", tables[user].rows + change, tables[user].columns)
        return Manifest(engine=manifest.engine, revision=manifest.revision, created_at=manifest.created_at,
                        database=manifest.database, tables=tuple(tables))

    lying = repack(snapshot_archive, tmp_path / "lying.tar", tmp_path, edit_manifest=edit)
    before = untouched(occupied)
    with pytest.raises(BackupError, match=r"rows, the manifest says|does not list the tables"):
        restore(occupied, lying, yes=True)
    assert untouched(occupied) == before
    with pytest.raises(BackupError, match=r"rows, the manifest says|does not list the tables"):
        verify_backup(lying)  # restore --verify-only


# --- a full disk -----------------------------------------------------------------------------------------------


@contextlib.contextmanager
def small_tmpfs(where: Path, size: str) -> Iterator[Path]:
    where.mkdir(parents=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(where)],
                             capture_output=True, text=True, check=False)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


@pytest.fixture
def big_archive(test_databases: TestDatabases, tmp_path: Path) -> Path:
    """A backup holding a 3 MiB blob and a 3 MiB row (a saved report), neither compressible."""
    with test_databases.own("sqlite", "lim_big", settings_for(tmp_path / "big-files")) as source:
        populate(source, prefix="big", users=2)
        with source.unit_of_work(actor="seed") as uow:
            account = uow.accounts.create(name="Big", slug="big", owner=uow.users.create(email="b@example.com",
                                                                                        password=PASSWORD))
            uow.files.store(account=account, owner=None, filename="noise.bin", stream=secrets.token_bytes(3 << 20))
        with source.engine.begin() as connection:
            connection.execute(insert(ReportRun.__table__).values(
                id=uuid.uuid4(), name="noise", parameters="{}", started_at=dt.datetime.now(dt.UTC),
                duration_ms=1.0, row_count=1, result=secrets.token_hex(3 << 19), actor=None))
        return backup(source, directory=tmp_path / "backups").path


@contextlib.contextmanager
def target_on(engine: str, disk: Path, test_databases: TestDatabases) -> Iterator[Database]:
    """A target with old data whose blobs (and, on SQLite, whose file) are on ``disk``."""
    settings = settings_for(disk / "files")
    if engine == "sqlite":
        database = Database(f"sqlite:///{disk / 'app.db'}", settings=settings)
        try:
            runner.upgrade(database)
            populate(database, prefix="old", users=2)
            yield database
        finally:
            database.dispose()
        return
    with test_databases.own(engine, "lim_disk", settings) as database:
        populate(database, prefix="old", users=2)
        yield database


@pytest.mark.parametrize("precheck", [True, False], ids=["refused up front", "disk fills while writing"])
def test_a_full_disk_gives_disk_full_and_the_old_data_stays(
    precheck: bool, engine_name: str, test_databases: TestDatabases, big_archive: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with small_tmpfs(tmp_path / "tmpfs", "2m") as disk, target_on(engine_name, disk, test_databases) as target:
        before = untouched(target)
        if not precheck:  # as if another process had filled the disk after the check
            monkeypatch.setattr(restore_module, "check_free_space", lambda needs: None)

        with pytest.raises(DiskFull, match="nothing was changed" if precheck else "still holds its previous data"):
            restore(target, big_archive, yes=True)
        assert untouched(target) == before
        assert check(target).ok
        assert not list((disk / "files").glob(".tmp/*"))  # no half-copied blob either


# --- a SQLite file that does not exist yet ---------------------------------------------------------------------


def test_a_failed_restore_into_a_missing_sqlite_path_leaves_nothing_behind(tmp_path: Path,
                                                                           capsys: pytest.CaptureFixture[str]) -> None:
    columns = (("id", "uuid"), ("name", "str"))  # the account table has more columns: loading fails
    bad = tmp_path / "short-rows.tar"
    with bad.open("wb") as out:
        writer = ArchiveWriter(out)
        writer.add("tables/account.jsonl.zst", [b'["0192f0c4-0000-7000-8000-000000000001","Acme"]\n'])
        writer.close(Manifest(engine="postgresql", revision=HEAD, created_at=dt.datetime.now(dt.UTC),
                              database="test", parts=tuple(writer.parts), tables=(TableDump("account", 1, columns),)))
    missing = tmp_path / "not" / "yet" / "app.db"

    rc = main(["restore", str(bad), "--url", f"sqlite:///{missing}", "--storage", str(tmp_path / "files"), "--yes"])
    captured = capsys.readouterr()
    assert rc == 1 and "Traceback" not in captured.err
    assert not (tmp_path / "not").exists()


def test_a_restore_into_a_missing_sqlite_path_creates_it(snapshot_archive: Path, tmp_path: Path) -> None:
    missing = tmp_path / "fresh" / "app.db"
    database = Database(f"sqlite:///{missing}", settings=settings_for(tmp_path / "files"))
    try:
        result = restore(database, snapshot_archive)
        assert result.replaced is False and missing.is_file()
        assert check(database).ok
        assert not [path.name for path in missing.parent.iterdir() if ".restore-" in path.name]
    finally:
        database.dispose()


# --- tables that are not the application's ---------------------------------------------------------------------


def test_tables_of_another_application_are_left_alone(snapshot_archive: Path, occupied: Database) -> None:
    with occupied.engine.begin() as connection:
        connection.execute(text("CREATE TABLE notes (id INTEGER PRIMARY KEY, body VARCHAR(40))"))
        connection.execute(text("INSERT INTO notes (id, body) VALUES (1, 'mine'), (2, 'also mine')"))

    restore(occupied, snapshot_archive, yes=True)
    occupied.dispose()
    with occupied.engine.connect() as connection:
        assert connection.execute(text("SELECT id, body FROM notes ORDER BY id")).all() == [
            (1, "mine"), (2, "also mine")]
    assert check(occupied).result("restore").ok


def test_a_table_of_another_application_referring_to_ours_makes_the_restore_refuse(
    snapshot_archive: Path, occupied: Database
) -> None:
    id_type = "CHAR(32)" if occupied.backend == "sqlite" else "UUID"  # as the models' Uuid is stored
    user = occupied.engine.dialect.identifier_preparer.quote("user")
    with occupied.engine.begin() as connection:
        connection.execute(text(f"CREATE TABLE project (id INTEGER PRIMARY KEY, owner {id_type} "
                                f"REFERENCES {user} (id))"))
    before = untouched(occupied)
    with pytest.raises(BackupError, match=r"project .* has a foreign key to user"):
        restore(occupied, snapshot_archive, yes=True)
    assert untouched(occupied) == before
