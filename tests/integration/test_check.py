"""``check`` on every engine: a sound database passes; each kind of damage it covers is found and named."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Column, MetaData, String, Table, select, update
from sqlalchemy.schema import DropIndex

from db import Database
from db.admin_catalog import SYSTEM
from db.cli import main
from db.dialects import dialect_named
from db.migrations import runner
from db.models.file_object import StoredFile
from db.models.log_audit import AuditEntry
from db.scripts.check_db import CheckReport, check
from db.settings import Settings
from db.storage import LocalStorage
from tests.support import TestDatabases

PASSWORD = "correct horse battery staple"
CHECKS = ["integrity", "foreign keys", "revision", "schema", "audit chain", "storage", "blobs", "restore"]


@pytest.fixture
def db(engine_name: str, test_databases: TestDatabases, tmp_path: Path) -> Iterator[Database]:
    """A database of its own with two users, an account and two files (damage is done for real, then dropped)."""
    settings = Settings.for_tests(storage_root=tmp_path / "files")
    with test_databases.own(engine_name, "cln_check", settings) as database:
        yield populated(database)


def populated(database: Database) -> Database:
    with database.unit_of_work(actor=SYSTEM) as uow:
        ada = uow.users.create(email="ada@example.com", password=PASSWORD)
        bob = uow.users.create(email="bob@example.com", password=PASSWORD)
        acme = uow.accounts.create(name="Acme", slug="acme", owner=ada)
        uow.accounts.add_member(acme, bob, "member")
        uow.files.store(account=acme, owner=ada, filename="a.txt", stream=b"first file")
        uow.files.store(account=acme, owner=bob, filename="b.txt", stream=b"second file")
    return database


def blob_keys(database: Database) -> list[str]:
    with database.session() as session:
        return sorted(set(session.scalars(select(StoredFile.sha256))))


def storage_of(database: Database) -> LocalStorage:
    return LocalStorage(database.settings.storage_root)


def failed(report: CheckReport) -> list[str]:
    return [result.name for result in report.failed]


def test_a_sound_database_passes_every_check(db: Database) -> None:
    report = check(db)

    assert report.ok, report
    assert [result.name for result in report.results] == CHECKS
    on_sqlite = db.backend == "sqlite"
    assert report.result("integrity").ok is (True if on_sqlite else None)
    assert report.result("foreign keys").ok is (True if on_sqlite else None)
    assert report.result("blobs").summary.startswith("2 blobs")
    assert report.result("audit chain").ok is True


def test_a_blob_whose_bytes_changed_fails_and_is_named(db: Database) -> None:
    changed = blob_keys(db)[0]
    storage_of(db).path_of(changed).write_bytes(b"first filf")  # same size, other bytes

    report = check(db)

    assert failed(report) == ["blobs"]
    assert report.result("blobs").problems == (f"{changed}: changed (its bytes hash to "
                                               f"{_sha(b'first filf')})",)


def test_a_missing_blob_fails_and_is_named(db: Database) -> None:
    missing = blob_keys(db)[1]
    storage_of(db).path_of(missing).unlink()

    report = check(db)

    assert failed(report) == ["blobs"]
    assert report.result("blobs").problems == (f"{missing}: missing",)


def test_bytes_no_row_names_are_a_warning_not_a_failure(db: Database) -> None:
    loose, _ = storage_of(db).put(b"left by a crash")

    report = check(db)

    assert report.ok
    assert any(loose in warning for warning in report.result("blobs").warnings)


def test_blobs_are_skipped_when_not_asked_for(db: Database) -> None:
    storage_of(db).path_of(blob_keys(db)[0]).unlink()

    report = check(db, blobs=False)

    assert report.ok and report.result("blobs").ok is None


def test_an_audit_entry_whose_content_no_longer_matches_its_hash_breaks_the_chain(db: Database) -> None:
    backend = db.engine.dialect.name
    with db.engine.begin() as connection:  # as someone with raw SQL access could: triggers lifted, then put back
        for statement in dialect_named(backend).drop_append_only_ddl():
            connection.exec_driver_sql(statement)
        connection.execute(update(AuditEntry).where(AuditEntry.seq == 3).values(actor="mallory"))
        for statement in dialect_named(backend).append_only_ddl():
            connection.exec_driver_sql(statement)

    report = check(db)

    assert failed(report) == ["audit chain"]
    assert report.result("audit chain").problems == (
        f"broken at seq 3 (entry {entry_id(db, 3)}): its content does not match its hash",
    )


def entry_id(database: Database, seq: int) -> str:
    with database.session() as session:
        return str(session.scalar(select(AuditEntry.id).where(AuditEntry.seq == seq)))


def test_a_dropped_index_is_schema_drift(db: Database) -> None:
    index = next(index for index in StoredFile.__table__.indexes if index.name == "ix_file_content_type")
    with db.engine.begin() as connection:
        connection.execute(DropIndex(index))

    report = check(db)

    assert failed(report) == ["schema"]
    assert any("ix_file_content_type" in problem for problem in report.result("schema").problems)


def test_an_extra_column_is_schema_drift(db: Database) -> None:
    with db.engine.begin() as connection:
        connection.exec_driver_sql("ALTER TABLE account ADD COLUMN nickname INTEGER")

    report = check(db)

    assert failed(report) == ["schema"]
    assert report.result("schema").problems == ("remove_column account.nickname",)


def test_a_revision_behind_the_head_fails_and_the_drift_is_not_compared(db: Database) -> None:
    versions = Table("alembic_version", MetaData(), Column("version_num", String(32)))
    with db.engine.begin() as connection:
        connection.execute(update(versions).values(version_num="0003_identity"))

    report = check(db)

    assert failed(report) == ["revision"]
    assert "0003_identity" in report.result("revision").problems[0]
    assert report.result("schema").ok is None
    assert runner.head_revision() in report.result("revision").summary


# --- SQLite only: the file itself ------------------------------------------------------------------------------


SQLITE_ONLY = pytest.mark.parametrize("backend", ["sqlite"])  # counted as SQLite in the per-engine tally


@pytest.fixture
def sqlite_db(backend: str, test_databases: TestDatabases, tmp_path: Path) -> Iterator[Database]:
    """SQLite's own file checks (the servers enforce foreign keys and look after their pages): SQLite only."""
    settings = Settings.for_tests(storage_root=tmp_path / "files")
    with test_databases.own(backend, "cln_check_file", settings) as database:
        yield populated(database)


@SQLITE_ONLY
def test_sqlite_a_dangling_foreign_key_is_found(sqlite_db: Database) -> None:
    sqlite_db.dispose()
    with sqlite3.connect(str(sqlite_db.url.database)) as raw:  # foreign keys are off in a plain connection
        raw.execute("DELETE FROM user WHERE email_key = 'bob@example.com'")
    raw.close()

    report = check(sqlite_db)

    assert "foreign keys" in failed(report)
    problems = report.result("foreign keys").problems
    assert any(problem.startswith("membership row") and "missing user" in problem for problem in problems)
    assert any(problem.startswith("file row") and "missing user" in problem for problem in problems)


@SQLITE_ONLY
def test_sqlite_a_damaged_page_fails_the_integrity_check(sqlite_db: Database) -> None:
    path = Path(str(sqlite_db.url.database))
    with sqlite_db.engine.connect() as connection:
        page_size = int(connection.exec_driver_sql("PRAGMA page_size").scalar_one())
        root = int(connection.exec_driver_sql(
            "SELECT rootpage FROM sqlite_master WHERE name = 'ix_audit_entry_created_at'").scalar_one())
    sqlite_db.dispose()  # the last connection checkpoints the WAL into the file
    try:
        with path.open("r+b") as file:
            file.seek((root - 1) * page_size)
            file.write(b"\x00" * 16)  # the index's b-tree page header: no longer a valid page type

        report = check(sqlite_db, blobs=False)

        assert "integrity" in failed(report)
        assert report.result("integrity").problems
    finally:
        sqlite_db.dispose()
        path.unlink()  # the next test's database of its own has the same name


# --- command line ----------------------------------------------------------------------------------------------


def cli(database: Database, *args: str) -> int:
    url = database.url.render_as_string(hide_password=False)
    return main(["check", "--url", url, "--storage", str(database.settings.storage_root), *args])


def test_the_command_shows_a_table_and_exits_0_when_sound(db: Database, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(db) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in CHECKS)
    assert "all checks passed" in out


def test_the_command_exits_1_and_names_the_failed_checks(db: Database, capsys: pytest.CaptureFixture[str]) -> None:
    missing = blob_keys(db)[0]
    storage_of(db).path_of(missing).unlink()

    assert cli(db) == 1
    captured = capsys.readouterr()
    assert "FAILED" in captured.out and f"blobs: {missing}: missing" in captured.out
    assert "check failed: blobs" in captured.err

    assert cli(db, "--no-blobs") == 0


def test_the_command_reports_an_unreachable_database_in_one_line(capsys: pytest.CaptureFixture[str],
                                                                   tmp_path: Path) -> None:
    url = "postgresql+psycopg://nobody@127.0.0.1:1/nowhere"
    assert main(["check", "--url", url, "--storage", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: the database refused or could not be reached") and "\n" not in err


def _sha(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def test_the_command_does_not_create_a_missing_sqlite_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "typo.db"

    assert main(["check", "--url", f"sqlite:///{missing}", "--storage", str(tmp_path)]) == 1
    assert main(["cleanup", "--url", f"sqlite:///{missing}", "--storage", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.count(f"error: no SQLite database at {missing}") == 2
    assert not missing.exists()
