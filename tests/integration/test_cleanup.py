"""Cleanup on every engine: a dry run changes nothing, apply removes exactly the listed items, a rerun nothing."""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from db import Conflict, Database, ValidationError
from db.admin_catalog import SYSTEM
from db.cli import main
from db.dialects import dialect_named
from db.models.account import Account
from db.models.base import utcnow
from db.models.file_blob import FileBlob
from db.models.file_object import StoredFile
from db.models.log_audit import AuditEntry
from db.models.user import User
from db.models.user_token import UserToken
from db.repositories.file_blob_repository import FileBlobRepository
from db.scripts.cleanup_db import (
    BLOB,
    SOFT_DELETED,
    TOKEN,
    RetentionPolicy,
    apply,
    cleanup,
    plan,
)
from db.scripts.retention import MAX_AGE, parse_age
from db.settings import Settings
from db.storage import LocalStorage
from tests.support import TestDatabases

PASSWORD = "correct horse battery staple"
ZERO = dt.timedelta(0)
EVERYTHING_FINISHED = RetentionPolicy(tokens_after=ZERO, deleted_after=ZERO, audit_after=ZERO)


@pytest.fixture
def db(engine_name: str, test_databases: TestDatabases, tmp_path: Path) -> Iterator[Database]:
    """A database of its own (cleanup commits, purges the audit log and vacuums), blobs under tmp_path."""
    settings = Settings.for_tests(storage_root=tmp_path / "files")
    with test_databases.own(engine_name, "cln_cleanup", settings) as database:
        yield database


@dataclass
class World:
    """What ``populate`` made, by what a user would expect cleanup to do with it."""

    revoked_token: str
    used_token: str
    live_token: str
    deleted_file: str  # soft-deleted, its bytes named by nothing else
    shared_deleted_file: str  # soft-deleted, its bytes also named by a live file
    kept_file: str
    gone_file: str  # the gone account's file, soft-deleted
    gone_account: str  # soft-deleted, its only file soft-deleted too
    busy_account: str  # soft-deleted, still has a live file: kept
    gone_user: str
    unique_sha: str
    gone_sha: str
    shared_sha: str
    loose_sha: str  # bytes on disk without a row
    unnamed_row_sha: str  # a blob row no file names


def populate(database: Database) -> World:
    storage = LocalStorage(database.settings.storage_root)
    with database.unit_of_work(actor=SYSTEM) as uow:
        ada = uow.users.create(email="ada@example.com", password=PASSWORD)
        bob = uow.users.create(email="bob@example.com", password=PASSWORD)
        acme = uow.accounts.create(name="Acme", slug="acme", owner=ada)
        gone = uow.accounts.create(name="Gone", slug="gone", owner=ada)
        busy = uow.accounts.create(name="Busy", slug="busy", owner=ada)
        uow.users.issue_token(ada, "verify_email")
        uow.users.issue_token(ada, "verify_email")  # revokes the first
        used = uow.users.issue_token(bob, "verify_email")
        uow.users.consume_token(used, "verify_email")
        uow.users.issue_token(ada, "password_reset")  # live: not expired, used nor revoked
        kept = uow.files.store(account=acme, owner=ada, filename="kept.txt", stream=b"shared bytes")
        shared = uow.files.store(account=acme, owner=ada, filename="copy.txt", stream=b"shared bytes")
        unique = uow.files.store(account=acme, owner=ada, filename="unique.txt", stream=b"unique bytes")
        gone_file = uow.files.store(account=gone, owner=ada, filename="gone.txt", stream=b"gone bytes")
        uow.files.store(account=busy, owner=ada, filename="busy.txt", stream=b"busy bytes")
        unnamed_row, size = storage.put(b"unnamed row")
        uow.repository(FileBlobRepository).claim(unnamed_row, size)
    with database.unit_of_work(actor=SYSTEM) as uow:
        for stored in (shared, unique, gone_file):
            uow.files.delete(stored)
        uow.admin.soft_delete_account(gone, reason="closed")
        uow.admin.soft_delete_account(busy, reason="closed")
        uow.users.delete(bob)
        tokens = {row.used_at is not None: row for row in uow.session.scalars(select(UserToken))
                  if row.used_at is not None or row.revoked_at is not None}
        live = uow.session.scalar(select(UserToken.id).where(UserToken.purpose == "password_reset"))
    loose = storage.put(b"loose bytes")[0]
    return World(
        revoked_token=str(tokens[False].id), used_token=str(tokens[True].id), live_token=str(live),
        deleted_file=str(unique.id), shared_deleted_file=str(shared.id), kept_file=str(kept.id),
        gone_file=str(gone_file.id), gone_account=str(gone.id), busy_account=str(busy.id), gone_user=str(bob.id),
        unique_sha=unique.sha256, gone_sha=gone_file.sha256, shared_sha=shared.sha256, loose_sha=loose,
        unnamed_row_sha=unnamed_row,
    )


def snapshot(database: Database) -> dict[str, set[str]]:
    """Every row id (blob key, audit seq) per table, and the blob keys on disk."""
    with database.session() as session:
        found = {
            model.__tablename__: {str(ident) for ident in session.scalars(select(model.id))}
            for model in (UserToken, StoredFile, Account, User)
        }
        found["file_blob"] = set(session.scalars(select(FileBlob.sha256)))
        found["audit_entry"] = {str(seq) for seq in session.scalars(select(AuditEntry.seq))}
    found["disk"] = set(LocalStorage(database.settings.storage_root).keys())
    return found


def listed(items: Any, kind: str, table: str | None = None) -> set[str]:
    return set(items.keys(kind, table))


# --- plan ------------------------------------------------------------------------------------------------------


def test_a_dry_run_lists_each_kind_and_changes_nothing(db: Database, tmp_path: Path) -> None:
    world = populate(db)
    before = snapshot(db)
    run = cleanup(db, policy=EVERYTHING_FINISHED, archive_dir=tmp_path / "archive")

    assert run.result is None
    assert snapshot(db) == before
    assert not (tmp_path / "archive").exists()
    found = run.plan
    assert listed(found, TOKEN) == {world.revoked_token, world.used_token}
    assert listed(found, SOFT_DELETED, "file") == {world.deleted_file, world.shared_deleted_file, world.gone_file}
    assert listed(found, SOFT_DELETED, "account") == {world.gone_account}
    assert listed(found, SOFT_DELETED, "user") == {world.gone_user}
    assert listed(found, BLOB) == {world.unique_sha, world.gone_sha, world.loose_sha, world.unnamed_row_sha}
    assert any(world.busy_account in note and "1 file" in note for note in found.kept)
    assert found.audit_range == (1, max(int(seq) for seq in before["audit_entry"]))


def test_the_default_retention_keeps_what_is_recent(db: Database) -> None:
    world = populate(db)
    found = plan(db)

    assert {item.kind for item in found.items} == {BLOB}  # orphaned blobs have no age
    assert listed(found, BLOB) == {world.loose_sha, world.unnamed_row_sha}


def test_an_age_of_never_keeps_that_kind(db: Database) -> None:
    populate(db)
    found = plan(db, policy=RetentionPolicy(tokens_after=None, deleted_after=None, audit_after=None, blobs=False))

    assert not found


# --- apply -----------------------------------------------------------------------------------------------------


def test_apply_removes_exactly_the_listed_items(db: Database, tmp_path: Path) -> None:
    world = populate(db)
    found = plan(db, policy=EVERYTHING_FINISHED)
    before = snapshot(db)

    result = apply(db, found, archive_dir=tmp_path / "archive")

    after = snapshot(db)
    for table in ("user_token", "file", "account", "user"):
        assert after[table] == before[table] - set(found.keys(table_kind(table), table)), table
    assert after["file_blob"] == before["file_blob"] - {world.unique_sha, world.gone_sha, world.unnamed_row_sha}
    assert after["disk"] == before["disk"] - set(found.keys(BLOB))
    assert set(found.keys(BLOB)) == {world.unique_sha, world.gone_sha, world.loose_sha, world.unnamed_row_sha}
    assert world.live_token in after["user_token"] and world.busy_account in after["account"]
    assert world.kept_file in after["file"] and world.shared_sha in after["disk"]
    first, last = found.audit_range or (0, 0)
    assert not {str(seq) for seq in range(first, last + 1)} & after["audit_entry"]
    assert dict(((kind, table), rows) for kind, table, rows in result.removed) == {
        (kind, table): rows for kind, table, rows in found.groups()
    }
    assert result.archive is not None and (tmp_path / "archive" / result.archive).is_file()
    assert (tmp_path / "archive" / result.archive).stat().st_mode & 0o777 == 0o600  # owner-only
    with db.session() as session:
        assert uow_chain_ok(db)
        purged = session.scalars(select(AuditEntry.action).where(AuditEntry.action.in_(
            ["audit.purged", "admin.purge", "token.purged"]))).all()
    assert sorted(set(purged)) == ["admin.purge", "audit.purged", "token.purged"]


def table_kind(table: str) -> str:
    return TOKEN if table == "user_token" else SOFT_DELETED


def uow_chain_ok(database: Database) -> bool:
    with database.unit_of_work() as uow:
        return uow.audit.verify_chain().ok


def test_a_second_apply_removes_nothing(db: Database, tmp_path: Path) -> None:
    populate(db)
    now = utcnow()
    apply(db, plan(db, policy=EVERYTHING_FINISHED, now=now), archive_dir=tmp_path / "archive")
    before = snapshot(db)

    again = plan(db, policy=EVERYTHING_FINISHED, now=now)
    result = apply(db, again, archive_dir=tmp_path / "archive")

    assert not again and result.total == 0
    assert snapshot(db) == before


def test_rows_deleted_or_restored_after_the_plan_are_left_alone(db: Database, tmp_path: Path) -> None:
    world = populate(db)
    found = plan(db, policy=EVERYTHING_FINISHED)
    with db.unit_of_work(actor=SYSTEM) as uow:
        uow.files.restore(world.deleted_file)  # listed, then restored: stays, and so do its bytes
        uow.files.delete(world.kept_file)  # not listed: deleted afterwards, stays deleted
    apply(db, found, archive_dir=tmp_path / "archive")

    after = snapshot(db)
    assert {world.deleted_file, world.kept_file} <= after["file"]
    assert world.unique_sha in after["disk"] and world.unique_sha in after["file_blob"]
    assert world.shared_deleted_file not in after["file"]


def test_rows_restored_and_deleted_again_after_the_plan_are_not_old_enough_to_go(db: Database,
                                                                               tmp_path: Path) -> None:
    world = populate(db)
    found = plan(db, policy=EVERYTHING_FINISHED)
    assert {world.gone_user, world.deleted_file} <= listed(found, SOFT_DELETED)
    with db.unit_of_work(actor=SYSTEM) as uow:
        user = uow.users.get_by_id(world.gone_user, include_deleted=True)
        assert user is not None
        user.deleted_at = None  # restored (users have no restore method: an administrator's direct fix)
        uow.flush()
        uow.users.delete(user)  # deleted again: its retention starts over
        uow.files.restore(world.deleted_file)
        uow.files.delete(world.deleted_file)
    apply(db, found, archive_dir=tmp_path / "archive")

    after = snapshot(db)
    assert world.gone_user in after["user"] and world.deleted_file in after["file"]


def test_a_broken_audit_chain_stops_the_apply_before_anything_is_removed(db: Database, tmp_path: Path) -> None:
    populate(db)
    found = plan(db, policy=EVERYTHING_FINISHED)
    tamper_with_audit_entry(db, seq=2)
    before = snapshot(db)

    with pytest.raises(Conflict, match="audit chain broken at seq 2"):
        apply(db, found, archive_dir=tmp_path / "archive")

    assert snapshot(db) == before


def tamper_with_audit_entry(database: Database, *, seq: int) -> None:
    """Edit an entry as someone with raw SQL access could: the append-only triggers lifted, then put back."""
    backend = database.engine.dialect.name
    with database.engine.begin() as connection:
        for statement in dialect_named(backend).drop_append_only_ddl():
            connection.exec_driver_sql(statement)
        connection.execute(update(AuditEntry).where(AuditEntry.seq == seq).values(action="tampered"))
        for statement in dialect_named(backend).append_only_ddl():
            connection.exec_driver_sql(statement)


# --- policy ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "age"), [
    ("7d", dt.timedelta(days=7)), ("12h", dt.timedelta(hours=12)), ("30m", dt.timedelta(minutes=30)),
    ("45s", dt.timedelta(seconds=45)), ("2w", dt.timedelta(weeks=2)), ("0", ZERO), ("never", None),
    (" 3D ", dt.timedelta(days=3)),
])
def test_ages_are_a_number_and_a_unit(text: str, age: dt.timedelta | None) -> None:
    assert parse_age(text) == age


@pytest.mark.parametrize("text", ["", "7", "d", "-1d", "1.5d", "7 days", "1y"])
def test_a_malformed_age_is_refused(text: str) -> None:
    with pytest.raises(ValidationError, match="a number and a unit"):
        parse_age(text)


def test_a_negative_retention_is_refused() -> None:
    with pytest.raises(ValidationError, match="tokens_after"):
        RetentionPolicy(tokens_after=dt.timedelta(days=-1))


@pytest.mark.parametrize("text", ["999999w", "999999d", "52001w"])
def test_an_age_reaching_before_the_calendar_is_refused_not_an_overflow(text: str) -> None:
    with pytest.raises(ValidationError, match="at most 52,000w"):
        parse_age(text)


def test_the_longest_age_still_plans(db: Database) -> None:
    longest = parse_age("52000w")
    assert longest == MAX_AGE
    plan(db, policy=RetentionPolicy(tokens_after=longest, deleted_after=longest, audit_after=longest))


def test_a_retention_longer_than_the_calendar_is_refused_by_the_policy() -> None:
    with pytest.raises(ValidationError, match="audit_after"):
        RetentionPolicy(audit_after=MAX_AGE + dt.timedelta(seconds=1))


# --- command line ----------------------------------------------------------------------------------------------


def cli(database: Database, *args: str) -> int:
    url = database.url.render_as_string(hide_password=False)
    return main(["cleanup", "--url", url, "--storage", str(database.settings.storage_root), *args])


def test_the_command_lists_by_default_and_removes_with_apply(db: Database, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    world = populate(db)
    before = snapshot(db)
    ages = ["--tokens-after", "0", "--deleted-after", "0s", "--audit-after", "0"]

    assert cli(db, *ages, "--verbose") == 0
    listing = capsys.readouterr().out
    assert snapshot(db) == before
    assert "dry run" in listing and "--apply" in listing and world.revoked_token[:8] in listing
    assert "soft-deleted" in listing and "audit_entry" in listing and world.busy_account in listing

    assert cli(db, *ages, "--apply", "--yes", "--archive-dir", str(tmp_path / "archive")) == 0
    done = capsys.readouterr().out
    assert "Removed" in done and "removed" in done
    assert world.deleted_file not in snapshot(db)["file"]

    # the audit entries the apply wrote are all that is left, and only for an audit retention of 0
    assert cli(db, *ages[:4], "--audit-after", "never") == 0
    assert "nothing to clean up" in capsys.readouterr().out


def test_the_command_never_shows_a_token_hash(db: Database, capsys: pytest.CaptureFixture[str]) -> None:
    populate(db)
    with db.session() as session:
        hashes = list(session.scalars(select(UserToken.token_hash)))

    assert cli(db, "--tokens-after", "0", "--verbose") == 0
    captured = capsys.readouterr()
    assert hashes and not any(digest[:16] in captured.out + captured.err for digest in hashes)


def test_the_command_refuses_a_malformed_age_as_a_usage_error(db: Database,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(db, "--deleted-after", "a month") == 2
    assert "--deleted-after" in capsys.readouterr().err


@pytest.mark.parametrize("flag", ["--tokens-after", "--audit-after", "--deleted-after"])
def test_the_command_refuses_an_age_too_long_as_a_usage_error_naming_the_option(
    db: Database, flag: str, capsys: pytest.CaptureFixture[str]
) -> None:
    before = snapshot(db)
    assert cli(db, flag, "999999w", "--apply", "--yes") == 2
    err = " ".join(capsys.readouterr().err.split())
    assert flag in err and "at most 52,000w" in err and "internal error" not in err
    assert snapshot(db) == before


def test_apply_asks_first_and_a_no_removes_nothing(db: Database, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    populate(db)
    before = snapshot(db)
    monkeypatch.setattr("sys.stdin", io.StringIO("n\n"))

    assert cli(db, "--tokens-after", "0", "--apply") == 1
    assert "Remove these" in capsys.readouterr().out
    assert snapshot(db) == before
