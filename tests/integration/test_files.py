"""Files on every engine: bytes in and out, dedup, quota, transactions, purge, verify, hostile names, access, events."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import os
import random
import subprocess
import sys
import threading
import time
import tracemalloc
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from db import Database, DiskFull, InvalidFilter, NotFound, PermissionDenied, QuotaExceeded, ValidationError
from db.models.account import Account
from db.models.file_blob import FileBlob
from db.models.file_object import StoredFile
from db.models.user import User
from db.scripts.check_db import check
from db.services.files import FileService
from db.settings import Settings
from db.storage import LocalStorage
from tests.support import TestDatabases
from tests.tmpfs import small_disk

PASSWORD = "correct horse battery staple"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(64)


# --- fixtures and helpers --------------------------------------------------------------------------------------


@pytest.fixture
def files_db(database: Database, tmp_path: Path) -> Database:
    """The isolated database, with blobs kept under the test's own temporary directory."""
    database.settings = replace(database.settings, storage_root=tmp_path / "files")
    return database


@pytest.fixture
def storage(files_db: Database) -> LocalStorage:
    return LocalStorage(files_db.settings.storage_root)


@pytest.fixture
def people(files_db: Database) -> dict[str, User]:
    with files_db.unit_of_work() as uow:
        return {name: uow.users.create(email=f"{name}@example.com", password=PASSWORD)
                for name in ("ada", "bob", "vic", "eve")}


@pytest.fixture
def acme(files_db: Database, people: dict[str, User]) -> Account:
    """Ada owns it, Bob is a member, Vic a viewer; Eve is an outsider."""
    with files_db.unit_of_work() as uow:
        account = uow.accounts.create(name="Acme", slug="acme", owner=people["ada"])
        uow.accounts.add_member(account, people["bob"], "member")
        uow.accounts.add_member(account, people["vic"], "viewer")
        return account


@pytest.fixture
def globex(files_db: Database, people: dict[str, User]) -> Account:
    with files_db.unit_of_work() as uow:
        return uow.accounts.create(name="Globex", slug="globex", owner=people["eve"])


def store(database: Database, account: Account, owner: User | None, data: bytes | Any, filename: str = "f.bin",
          **options: Any) -> StoredFile:
    with database.unit_of_work() as uow:
        return uow.files.store(account=account, owner=owner, filename=filename, stream=data, **options)


def read(database: Database, file_id: uuid.UUID, user: User) -> bytes:
    with database.unit_of_work() as uow, uow.files.open(file_id, user=user) as stream:
        return stream.read()


def blob_rows(database: Database) -> list[str]:
    with database.unit_of_work() as uow:
        return list(uow.session.scalars(select(FileBlob.sha256).order_by(FileBlob.sha256)))


def file_rows(database: Database) -> int:
    with database.unit_of_work() as uow:
        return int(uow.session.scalar(select(func.count()).select_from(StoredFile)) or 0)


def on_disk(storage: LocalStorage) -> list[str]:
    return list(storage.keys())


def temporaries(storage: LocalStorage) -> list[Path]:
    directory = storage.root / ".tmp"
    return list(directory.iterdir()) if directory.is_dir() else []


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def nothing_left(database: Database, storage: LocalStorage) -> bool:
    return file_rows(database) == 0 and blob_rows(database) == [] and on_disk(storage) == [] and not temporaries(
        storage)


class GeneratedStream(io.RawIOBase):
    """``size`` pseudo-random bytes, made as they are read: never held in memory at once."""

    def __init__(self, size: int, seed: int = 7) -> None:
        self.left, self.random = size, random.Random(seed)

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        count = self.left if size is None or size < 0 else min(size, self.left)
        self.left -= count
        return self.random.randbytes(count)


def hashed(stream: Any, chunk: int = 2**20) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    while block := stream.read(chunk):
        digest.update(block)
        size += len(block)
    return digest.hexdigest(), size


# --- round trips -----------------------------------------------------------------------------------------------


def test_bytes_come_back_as_they_went_in(files_db: Database, acme: Account, people: dict[str, User]) -> None:
    data = b"hello, world\n"
    stored = store(files_db, acme, people["ada"], io.BytesIO(data), filename="hello.txt")
    assert (stored.filename, stored.size, stored.sha256) == ("hello.txt", len(data), sha(data))
    assert (stored.content_type, stored.declared_type, stored.owner_id) == ("text/plain", None, people["ada"].id)
    assert read(files_db, stored.id, people["bob"]) == data


def test_a_20_mb_stream_is_stored_and_read_back_in_chunks_without_being_held_in_memory(
    files_db: Database, acme: Account, people: dict[str, User]
) -> None:
    size = 20 * 2**20
    expected = hashed(GeneratedStream(size))
    tracemalloc.start()
    try:
        stored = store(files_db, acme, people["ada"], GeneratedStream(size), filename="big.bin")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 6 * 2**20, f"storing 20 MiB peaked at {peak} bytes of Python memory"
    assert (stored.sha256, stored.size) == expected
    with files_db.unit_of_work() as uow, uow.files.open(stored.id, user=people["ada"]) as stream:
        assert hashed(stream) == expected


def test_an_empty_file_is_a_valid_file(files_db: Database, acme: Account, people: dict[str, User]) -> None:
    stored = store(files_db, acme, people["ada"], b"", filename="")
    assert (stored.filename, stored.size, stored.sha256) == ("unnamed", 0, sha(b""))
    assert stored.content_type == "application/octet-stream"
    assert read(files_db, stored.id, people["ada"]) == b""


@pytest.mark.parametrize(("data", "declared", "sniffed", "kept"), [
    (PNG, "text/plain", "image/png", "text/plain"),                       # the bytes decide
    (b"%PDF-1.7\n...", None, "application/pdf", None),
    (b"a,b\n1,2\n", "text/csv; charset=utf-8", "text/csv", "text/csv"),   # a text type declared for text
    (b"a,b\n1,2\n", "image/png", "text/plain", "image/png"),              # but not a binary one
    ("naïve café\n".encode(), None, "text/plain", None),
    (bytes(range(256)), "application/x-thing", "application/x-thing", "application/x-thing"),
    (bytes(range(256)), None, "application/octet-stream", None),
])
def test_the_content_type_is_sniffed_from_the_bytes_and_the_declared_one_kept_beside_it(
    files_db: Database, acme: Account, people: dict[str, User], data: bytes, declared: str | None, sniffed: str,
    kept: str | None,
) -> None:
    stored = store(files_db, acme, people["ada"], data, content_type=declared)
    assert (stored.content_type, stored.declared_type) == (sniffed, kept)


def test_a_malformed_declared_type_is_refused_before_anything_is_stored(
    files_db: Database, storage: LocalStorage, acme: Account, people: dict[str, User]
) -> None:
    with pytest.raises(ValidationError) as refused:
        store(files_db, acme, people["ada"], b"x", content_type="not a type")
    assert refused.value.field == "content_type"
    assert nothing_left(files_db, storage)


# --- dedup, size and quota -------------------------------------------------------------------------------------


def test_identical_bytes_are_stored_once_however_many_files_name_them(
    files_db: Database, storage: LocalStorage, acme: Account, globex: Account, people: dict[str, User]
) -> None:
    first = store(files_db, acme, people["ada"], b"same bytes", filename="a.txt")
    second = store(files_db, globex, people["eve"], b"same bytes", filename="b.txt")
    assert first.id != second.id and first.sha256 == second.sha256
    assert on_disk(storage) == [sha(b"same bytes")]
    assert blob_rows(files_db) == [sha(b"same bytes")]
    assert file_rows(files_db) == 2


def test_a_file_over_the_maximum_size_is_refused_and_leaves_nothing(
    files_db: Database, storage: LocalStorage, acme: Account, people: dict[str, User]
) -> None:
    files_db.settings = replace(files_db.settings, max_file_size=1000, storage_chunk_size=64)
    with pytest.raises(ValidationError) as refused:
        store(files_db, acme, people["ada"], GeneratedStream(1001))
    assert (refused.value.field, refused.value.rule) == ("size", "max_size")
    assert nothing_left(files_db, storage)
    assert store(files_db, acme, people["ada"], GeneratedStream(1000)).size == 1000


def test_a_file_over_the_quota_is_refused_and_leaves_nothing(
    files_db: Database, storage: LocalStorage, acme: Account, people: dict[str, User]
) -> None:
    with files_db.unit_of_work() as uow:
        uow.accounts.update(acme, storage_quota_bytes=10)
    with pytest.raises(QuotaExceeded) as refused:
        store(files_db, acme, people["ada"], b"eleven byte")
    assert (refused.value.quota, refused.value.used, refused.value.size) == (10, 0, 11)
    assert nothing_left(files_db, storage)
    store(files_db, acme, people["ada"], b"ten bytes!")  # exactly the quota fits


def test_a_refused_upload_of_bytes_another_file_holds_leaves_those_bytes_alone(
    files_db: Database, storage: LocalStorage, acme: Account, globex: Account, people: dict[str, User]
) -> None:
    store(files_db, globex, people["eve"], b"shared content")
    with files_db.unit_of_work() as uow:
        uow.accounts.update(acme, storage_quota_bytes=5)
    with pytest.raises(QuotaExceeded):
        store(files_db, acme, people["ada"], b"shared content")
    assert on_disk(storage) == blob_rows(files_db) == [sha(b"shared content")]
    assert file_rows(files_db) == 1


def test_only_files_not_deleted_count_against_the_quota_and_a_restore_is_checked_again(
    files_db: Database, acme: Account, people: dict[str, User]
) -> None:
    with files_db.unit_of_work() as uow:
        uow.accounts.update(acme, storage_quota_bytes=10)
    first = store(files_db, acme, people["ada"], b"123456")
    with pytest.raises(QuotaExceeded):
        store(files_db, acme, people["ada"], b"abcdef")
    with files_db.unit_of_work() as uow:
        uow.files.delete(first)
    second = store(files_db, acme, people["ada"], b"abcdef")
    with files_db.unit_of_work() as uow:
        with pytest.raises(QuotaExceeded):
            uow.files.restore(first.id)
        uow.files.delete(second)
        assert uow.files.restore(first.id).deleted_at is None


def test_a_restore_given_the_instance_of_an_earlier_unit_of_work_is_saved(
    files_db: Database, acme: Account, people: dict[str, User]
) -> None:
    kept = store(files_db, acme, people["ada"], b"keep me")
    with files_db.unit_of_work() as uow:
        uow.files.delete(kept)
    with files_db.unit_of_work() as uow:
        assert uow.files.restore(kept).deleted_at is None
    with files_db.unit_of_work() as uow:
        assert uow.files.get_by_id(kept.id) is not None
        assert uow.files.open(kept.id, user=people["ada"]).read() == b"keep me"


# --- transactions --------------------------------------------------------------------------------------------


def test_a_rolled_back_upload_leaves_no_row_and_its_bytes_are_removed_at_once(
    files_db: Database, storage: LocalStorage, acme: Account, people: dict[str, User]
) -> None:
    with pytest.raises(RuntimeError), files_db.unit_of_work() as uow:
        stored = uow.files.store(account=acme, owner=people["ada"], filename="a.txt", stream=b"doomed")
        assert storage.exists(stored.sha256)  # in place before the commit
        raise RuntimeError("the request fails after the upload")
    assert nothing_left(files_db, storage)


def test_a_rolled_back_upload_of_bytes_a_committed_file_holds_keeps_them(
    files_db: Database, storage: LocalStorage, acme: Account, people: dict[str, User]
) -> None:
    kept = store(files_db, acme, people["ada"], b"precious")
    with pytest.raises(RuntimeError), files_db.unit_of_work() as uow:
        uow.files.store(account=acme, owner=people["bob"], filename="copy", stream=b"precious")
        raise RuntimeError("the request fails")
    assert on_disk(storage) == blob_rows(files_db) == [kept.sha256]
    with files_db.unit_of_work() as uow:
        assert uow.files.verify(kept.id).ok


def test_an_upload_undone_by_a_savepoint_is_removed_when_the_unit_of_work_commits(
    files_db: Database, storage: LocalStorage, acme: Account, people: dict[str, User]
) -> None:
    with files_db.unit_of_work() as uow:
        with pytest.raises(RuntimeError), uow.session.begin_nested():
            uow.files.store(account=acme, owner=people["ada"], filename="a", stream=b"undone")
            raise RuntimeError("this part fails")
        kept = uow.files.store(account=acme, owner=people["ada"], filename="b", stream=b"kept")
    assert on_disk(storage) == blob_rows(files_db) == [kept.sha256]
    assert file_rows(files_db) == 1


def test_a_rolled_back_plain_session_is_cleaned_up_too(
    files_db: Database, storage: LocalStorage, acme: Account, people: dict[str, User]
) -> None:
    with pytest.raises(RuntimeError), files_db.session() as session:
        session.info["settings"] = files_db.settings  # a plain session carries none: the defaults would apply
        stored = FileService(session).store(account=acme, owner=people["ada"], filename="a", stream=b"plain")
        assert storage.exists(stored.sha256)
        raise RuntimeError("the caller fails")
    assert nothing_left(files_db, storage)


def test_a_failed_store_leaves_the_unit_of_work_usable(
    files_db: Database, storage: LocalStorage, acme: Account, people: dict[str, User]
) -> None:
    with files_db.unit_of_work() as uow:
        uow.accounts.update(acme, storage_quota_bytes=4)
        with pytest.raises(QuotaExceeded):
            uow.files.store(account=acme, owner=people["ada"], filename="a", stream=b"too big")
        uow.files.store(account=acme, owner=people["ada"], filename="b", stream=b"fits")
    assert on_disk(storage) == [sha(b"fits")]


def test_orphans_left_by_a_crash_are_reclaimed_and_named_blobs_are_not(
    files_db: Database, storage: LocalStorage, acme: Account, people: dict[str, User]
) -> None:
    named = store(files_db, acme, people["ada"], b"named")
    loose_key, _ = storage.put(b"bytes whose row never committed")
    with files_db.unit_of_work() as uow:
        uow.session.add(FileBlob(sha256=sha(b"row only"), size=8))
    old, young = storage.root / ".tmp" / "upload-old.part", storage.root / ".tmp" / "upload-young.part"
    for path in (old, young):
        path.write_bytes(b"half an upload")
    two_days_ago = time.time() - 2 * 86_400
    os.utime(old, (two_days_ago, two_days_ago))
    with files_db.unit_of_work() as uow:
        result = uow.files.reclaim_orphans()
    assert (result.blob_rows, result.loose_blobs, result.temporaries, result.blobs) == (1, 1, 1, 2)
    assert on_disk(storage) == blob_rows(files_db) == [named.sha256]
    assert not storage.exists(loose_key)
    assert temporaries(storage) == [young]


# --- delete and purge ----------------------------------------------------------------------------------------


def test_purge_removes_deleted_files_and_only_the_blobs_no_other_file_names(
    files_db: Database, storage: LocalStorage, acme: Account, globex: Account, people: dict[str, User]
) -> None:
    shared_a = store(files_db, acme, people["ada"], b"shared")
    shared_b = store(files_db, globex, people["eve"], b"shared")
    alone = store(files_db, acme, people["ada"], b"alone")
    with files_db.unit_of_work() as uow:
        uow.files.delete(shared_a)
        uow.files.delete(alone)
    assert sorted(on_disk(storage)) == sorted([sha(b"shared"), sha(b"alone")])  # soft delete keeps the bytes
    with files_db.unit_of_work() as uow:
        result = uow.files.purge()
        assert (result.files, result.blobs) == (2, 1)
        assert storage.exists(sha(b"alone"))  # removed after the commit, not before
    assert on_disk(storage) == blob_rows(files_db) == [sha(b"shared")]
    with files_db.unit_of_work() as uow:
        assert uow.files.get_by_id(shared_a.id, include_deleted=True) is None
        assert uow.files.verify(shared_b.id).ok


def test_a_rolled_back_purge_keeps_every_blob(
    files_db: Database, storage: LocalStorage, acme: Account, people: dict[str, User]
) -> None:
    stored = store(files_db, acme, people["ada"], b"kept")
    with files_db.unit_of_work() as uow:
        uow.files.delete(stored)
    with pytest.raises(RuntimeError), files_db.unit_of_work() as uow:
        uow.files.purge()
        raise RuntimeError("the purge's transaction fails")
    with files_db.unit_of_work() as uow:
        assert uow.files.verify(stored.id).ok


def test_purge_takes_only_what_it_is_asked_for(
    files_db: Database, storage: LocalStorage, acme: Account, globex: Account, people: dict[str, User]
) -> None:
    ours, theirs = store(files_db, acme, people["ada"], b"ours"), store(files_db, globex, people["eve"], b"theirs")
    live = store(files_db, acme, people["ada"], b"live")
    with files_db.unit_of_work() as uow:
        uow.files.delete(ours)
        uow.files.delete(theirs)
    with files_db.unit_of_work() as uow:
        assert uow.files.purge(deleted_before=dt.datetime(2000, 1, 1, tzinfo=dt.UTC)).files == 0
        assert uow.files.purge(account=acme).files == 1
        with pytest.raises(ValidationError):
            uow.files.purge(deleted_before=dt.datetime(2000, 1, 1))  # naive: refused
    assert sorted(on_disk(storage)) == sorted([theirs.sha256, live.sha256])


def test_a_hard_delete_removes_the_row_and_then_its_unshared_bytes(
    files_db: Database, storage: LocalStorage, acme: Account, people: dict[str, User]
) -> None:
    stored = store(files_db, acme, people["ada"], b"gone")
    with files_db.unit_of_work() as uow:
        uow.files.delete(stored, hard=True)
    assert nothing_left(files_db, storage)


def test_a_hard_bulk_delete_removes_the_bytes_only_its_rows_named(
    files_db: Database, storage: LocalStorage, acme: Account, globex: Account, people: dict[str, User]
) -> None:
    store(files_db, acme, people["ada"], b"shared")
    store(files_db, acme, people["ada"], b"ours alone")
    store(files_db, globex, people["eve"], b"shared")
    with files_db.unit_of_work() as uow:
        assert uow.files.delete_many({"account_id": acme.id}, hard=True) == 2
    assert on_disk(storage) == blob_rows(files_db) == [sha(b"shared")]


# --- verify --------------------------------------------------------------------------------------------------


def test_verify_detects_damaged_and_missing_bytes(
    files_db: Database, storage: LocalStorage, acme: Account, people: dict[str, User]
) -> None:
    stored = store(files_db, acme, people["ada"], b"original bytes")
    with files_db.unit_of_work() as uow:
        assert uow.files.verify(stored.id)
    storage.path_of(stored.sha256).write_bytes(b"original bytez")  # same size, one byte flipped
    with files_db.unit_of_work() as uow:
        result = uow.files.verify(stored.id)
    assert not result.ok
    assert (result.expected_sha256, result.actual_sha256, result.actual_size) == (
        stored.sha256, sha(b"original bytez"), 14)
    storage.delete(stored.sha256)
    with files_db.unit_of_work() as uow:
        missing = uow.files.verify(stored.id)
        assert (missing.ok, missing.actual_sha256, missing.actual_size) == (False, None, None)
        with pytest.raises(NotFound):
            uow.files.verify(uuid.uuid4())


# --- hostile input -------------------------------------------------------------------------------------------

HOSTILE_NAMES = [
    ("../../etc/passwd", "passwd"),
    ("..\\..\\windows\\win.ini", "win.ini"),
    ("/etc/passwd", "passwd"),
    ("C:\\x", "x"),
    ("C:report.pdf", "report.pdf"),
    ("\\\\server\\share\\x.txt", "x.txt"),
    ("a\x00b.txt", "ab.txt"),
    ("new\nline\r\t.txt", "newline.txt"),
    ("\u202etxt.exe", "txt.exe"),
    ("CON.txt", "_CON.txt"),
    ("nul", "_nul"),
    ("com1.tar.gz", "_com1.tar.gz"),
    ("lpt9", "_lpt9"),
    ("report. . .", "report"),
    ('what?<is>this:"*|.txt', "what__is_this____.txt"),
    ("x" * 10_000, "x" * 255),
    ("y" * 10_000 + ".pdf", "y" * 251 + ".pdf"),
    ("", "unnamed"),
    ("../", "unnamed"),
    (None, "unnamed"),
    ("ünïcödé 文件.txt", "ünïcödé 文件.txt"),
]


@pytest.mark.parametrize(("given", "kept"), HOSTILE_NAMES, ids=[repr(name)[:24] for name, _ in HOSTILE_NAMES])
def test_hostile_filenames_are_stored_under_a_safe_name(
    files_db: Database, storage: LocalStorage, acme: Account, people: dict[str, User], given: Any, kept: str
) -> None:
    stored = store(files_db, acme, people["ada"], b"content", filename=given)
    with files_db.unit_of_work() as uow:
        again = uow.files.get_by_id(stored.id)
        assert again is not None and again.filename == kept
    assert on_disk(storage) == [sha(b"content")]  # the bytes live under their hash, whatever the name
    assert all(path.is_relative_to(storage.root) for path in storage.root.rglob("*"))


def test_a_stream_of_text_rather_than_bytes_is_refused(
    files_db: Database, storage: LocalStorage, acme: Account, people: dict[str, User]
) -> None:
    with pytest.raises(ValidationError):
        store(files_db, acme, people["ada"], io.StringIO("text"))
    assert nothing_left(files_db, storage)


# --- a full disk -----------------------------------------------------------------------------------------------


@pytest.fixture
def small_disk_db(files_db: Database, tmp_path: Path) -> Iterator[Database]:
    """The isolated database (its own file or server elsewhere), its blobs on a 1 MiB tmpfs of the test's own."""
    with small_disk(tmp_path / "disk", "1m") as disk:
        files_db.settings = replace(files_db.settings, storage_root=disk / "files", storage_chunk_size=64 * 1024)
        yield files_db


def used_bytes(database: Database, account: Account) -> int:
    with database.unit_of_work() as uow:
        return sum(stored.size for stored in uow.files.list(filters={"account_id": account.id}))


def test_a_full_disk_during_an_upload_is_disk_full_and_leaves_no_row_no_bytes_and_the_quota_as_it_was(
    small_disk_db: Database, acme: Account, people: dict[str, User]
) -> None:
    storage = LocalStorage(small_disk_db.settings.storage_root)
    kept = store(small_disk_db, acme, people["ada"], b"stored before the disk filled up")
    with small_disk_db.unit_of_work() as uow:
        uow.accounts.update(acme.id, storage_quota_bytes=kept.size + 3 * 2**20)
    with pytest.raises(DiskFull) as refused:
        store(small_disk_db, acme, people["ada"], GeneratedStream(2 * 2**20), filename="too big for the disk.bin")
    assert "full" in str(refused.value) and storage.location in str(refused.value)
    assert file_rows(small_disk_db) == 1 and blob_rows(small_disk_db) == [kept.sha256]
    assert on_disk(storage) == [kept.sha256] and temporaries(storage) == []
    assert used_bytes(small_disk_db, acme) == kept.size
    assert store(small_disk_db, acme, people["ada"], GeneratedStream(300 * 1024)).size == 300 * 1024  # room again


def test_an_upload_onto_a_disk_that_is_already_full_is_disk_full_and_the_unit_of_work_goes_on(
    small_disk_db: Database, acme: Account, people: dict[str, User]
) -> None:
    storage = LocalStorage(small_disk_db.settings.storage_root)
    store(small_disk_db, acme, people["ada"], b"binds the root")
    ballast = storage.root.parent / "ballast"
    with pytest.raises(OSError), ballast.open("wb") as out:
        while True:
            out.write(bytes(64 * 1024))
            out.flush()
    with small_disk_db.unit_of_work() as uow:
        with pytest.raises(DiskFull):
            uow.files.store(account=acme, owner=people["ada"], filename="n", stream=GeneratedStream(100 * 1024))
        uow.users.create(email="still@example.com", password=PASSWORD)  # the unit of work is still usable
    ballast.unlink()
    assert temporaries(storage) == [] and file_rows(small_disk_db) == 1
    assert store(small_disk_db, acme, people["ada"], b"fits once space is freed").size == 24


# --- names in bytes --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("given_name", "kept"), [
    ("\U0001f600" * 255 + ".txt", "\U0001f600" * 62 + ".txt"),
    ("\u00e9" * 127 + "x", "\u00e9" * 127 + "x"),                  # 255 bytes exactly
    ("a" + "q\u0307" * 85, "a" + "q\u0307" * 84),                  # 256 bytes: the mark stays with its letter
])
def test_a_multibyte_name_is_kept_within_255_bytes_on_every_engine(
    files_db: Database, acme: Account, people: dict[str, User], given_name: str, kept: str
) -> None:
    stored = store(files_db, acme, people["ada"], b"named", filename=given_name)
    with files_db.unit_of_work() as uow:
        assert uow.files.get_by_id(stored.id).filename == kept  # type: ignore[union-attr]
        renamed = uow.files.rename(stored.id, given_name + given_name)
    assert len(renamed.filename.encode()) <= 255


# --- access ----------------------------------------------------------------------------------------------------


def test_a_non_member_cannot_open_a_file_nor_tell_that_it_exists(
    files_db: Database, acme: Account, people: dict[str, User]
) -> None:
    stored = store(files_db, acme, people["ada"], b"secret plans")
    with files_db.unit_of_work() as uow:
        with pytest.raises(NotFound) as outsider:
            uow.files.open(stored.id, user=people["eve"])
        missing_id = uuid.uuid4()
        with pytest.raises(NotFound) as missing:
            uow.files.open(missing_id, user=people["eve"])
    assert str(outsider.value) == str(missing.value).replace(str(missing_id), str(stored.id))
    assert read(files_db, stored.id, people["vic"]) == b"secret plans"  # a viewer may read


def test_a_deleted_file_or_one_of_a_deleted_account_cannot_be_opened(
    files_db: Database, acme: Account, people: dict[str, User]
) -> None:
    first, second = store(files_db, acme, people["ada"], b"one"), store(files_db, acme, people["ada"], b"two")
    with files_db.unit_of_work() as uow:
        uow.files.delete(first)
        with pytest.raises(NotFound):
            uow.files.open(first.id, user=people["ada"])
        uow.accounts.delete(acme)
        with pytest.raises(NotFound):
            uow.files.open(second.id, user=people["ada"])


def test_only_members_who_may_write_can_upload(
    files_db: Database, storage: LocalStorage, acme: Account, people: dict[str, User]
) -> None:
    for name in ("vic", "eve"):  # a viewer, an outsider
        with pytest.raises(PermissionDenied):
            store(files_db, acme, people[name], b"x")
    with pytest.raises(NotFound):
        store(files_db, uuid.uuid4(), people["ada"], b"x")  # type: ignore[arg-type]
    assert nothing_left(files_db, storage)
    assert store(files_db, acme, None, b"system upload").owner_id is None


# --- activity --------------------------------------------------------------------------------------------------


def test_uploads_downloads_and_deletes_are_recorded_without_content(
    files_db: Database, acme: Account, people: dict[str, User]
) -> None:
    stored = store(files_db, acme, people["ada"], b"logged bytes", filename="log.txt")
    read(files_db, stored.id, people["bob"])
    with files_db.unit_of_work(actor=people["ada"]) as uow:
        uow.files.delete(stored)
    with files_db.unit_of_work() as uow:
        events = {entry.action: entry for entry in uow.audit.for_entity("file", stored.id).items
                  if entry.kind == "event"}
    assert sorted(events) == ["file.deleted", "file.downloaded", "file.uploaded"]
    common = {"file_id": str(stored.id), "account_id": str(acme.id), "size": 12, "content_type": "text/plain"}
    assert json.loads(events["file.uploaded"].data or "") == {**common, "user_id": str(people["ada"].id)}
    assert json.loads(events["file.downloaded"].data or "") == {**common, "user_id": str(people["bob"].id)}
    assert json.loads(events["file.deleted"].data or "") == {**common, "hard": False}
    assert events["file.deleted"].actor == str(people["ada"].id)
    assert not any("logged bytes" in (entry.data or "") + (entry.changes or "") for entry in events.values())


# --- listing and changes ---------------------------------------------------------------------------------------


def test_files_are_listed_and_paged_by_account_owner_and_type(
    files_db: Database, acme: Account, globex: Account, people: dict[str, User]
) -> None:
    store(files_db, acme, people["ada"], PNG, filename="a.png")
    store(files_db, acme, people["bob"], b"text", filename="b.txt")
    store(files_db, acme, people["bob"], b"more text", filename="c.txt")
    store(files_db, globex, people["eve"], b"theirs", filename="d.txt")
    with files_db.unit_of_work() as uow:
        ours = {"account_id": acme.id}
        assert [f.filename for f in uow.files.list(filters=ours, order_by=["filename"])] == ["a.png", "b.txt", "c.txt"]
        assert [f.filename for f in uow.files.list(filters={**ours, "owner_id": people["bob"].id},
                                                   order_by=["-size"])] == ["c.txt", "b.txt"]
        assert [f.filename for f in uow.files.list(filters={"content_type": "image/png"})] == ["a.png"]
        first = uow.files.page(filters=ours, order_by=["created_at"], size=2)
        rest = uow.files.page(filters=ours, order_by=["created_at"], size=2, after=first.next_cursor)
        assert [f.filename for f in first.items + rest.items] == ["a.png", "b.txt", "c.txt"]
        with pytest.raises(InvalidFilter):
            uow.files.list(filters={"deleted_at__isnull": False})
        with pytest.raises(InvalidFilter):
            uow.files.list(order_by=["sha256"])


def test_rename_sanitises_and_the_content_columns_never_change(
    files_db: Database, acme: Account, people: dict[str, User]
) -> None:
    stored = store(files_db, acme, people["ada"], b"x", filename="draft.txt")
    with files_db.unit_of_work() as uow:
        assert uow.files.rename(stored, "../final.txt").filename == "final.txt"
        with pytest.raises(ValidationError):
            uow.files.update(stored, filename="../sneaky.txt")
        for field, value in (("sha256", sha(b"y")), ("size", 99), ("content_type", "text/html"),
                             ("account_id", uuid.uuid4()), ("deleted_at", None)):
            with pytest.raises(ValidationError):
                uow.files.update(stored, **{field: value})
            with pytest.raises(ValidationError):
                uow.files.update_many({"id": stored.id}, **{field: value})
        assert uow.files.update(stored, owner_id=people["bob"].id).owner_id == people["bob"].id


def test_a_file_row_is_made_by_store_only(files_db: Database, acme: Account, people: dict[str, User]) -> None:
    stored = store(files_db, acme, people["ada"], b"x", filename="draft.txt")
    with files_db.unit_of_work() as uow:
        for name in ("create", "create_many", "upsert", "get_or_create"):
            assert not hasattr(uow.files, name), name
        with pytest.raises(ValidationError):  # nor can an update make a row name other bytes, or undelete it
            uow.files.update(stored, sha256=sha(b"y"))
        uow.files.delete(stored)
        with pytest.raises(ValidationError):
            uow.files.update_many({"id": stored.id}, deleted_at=None)
    assert file_rows(files_db) == 1


# --- real concurrency: committed data, threads ---------------------------------------------------------------

THREADS = 6


@pytest.fixture(scope="module")
def committed(engine_name: str, test_databases: TestDatabases, tmp_path_factory: pytest.TempPathFactory
              ) -> Iterator[Database]:
    """A database of its own, committed to for real (see ``TestDatabases.own``)."""
    root = tmp_path_factory.mktemp(f"files-{engine_name}")
    with test_databases.own(engine_name, "dblayer_files", Settings.for_tests(storage_root=root)) as database:
        yield database


def new_account(database: Database, quota: int) -> tuple[Account, User]:
    tag = uuid.uuid4().hex[:10]
    with database.unit_of_work() as uow:
        owner = uow.users.create(email=f"race-{tag}@example.com", password=PASSWORD)
        return uow.accounts.create(name="Race", slug=f"race-{tag}", owner=owner, storage_quota_bytes=quota), owner


def together(count: int, work: Callable[[int], str]) -> list[str]:
    start = threading.Barrier(count)

    def run(index: int) -> str:
        start.wait(timeout=30)
        return work(index)

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(run, range(count)))


@pytest.mark.slow
def test_concurrent_uploads_cannot_take_an_account_past_its_quota(committed: Database) -> None:
    account, owner = new_account(committed, quota=3 * 1000)

    def upload(index: int) -> str:
        try:
            committed.run_in_transaction(lambda uow: uow.files.store(
                account=account, owner=owner, filename=f"{index}.bin", stream=bytes([index]) * 1000))
        except QuotaExceeded:
            return "refused"
        return "stored"

    outcomes = together(THREADS, upload)
    assert sorted(outcomes) == ["refused"] * (THREADS - 3) + ["stored"] * 3
    with committed.unit_of_work() as uow:
        files = uow.files.list(filters={"account_id": account.id})
        assert sum(f.size for f in files) == 3000
        assert all(uow.files.verify(f.id).ok for f in files)
    refused_keys = {sha(bytes([i]) * 1000) for i in range(THREADS)} - {f.sha256 for f in files}
    storage = LocalStorage(committed.settings.storage_root)
    assert not any(storage.exists(key) for key in refused_keys)


@pytest.mark.slow
def test_bytes_a_committed_file_names_survive_racing_rollbacks_and_purges(committed: Database) -> None:
    account, owner = new_account(committed, quota=10**9)
    storage = LocalStorage(committed.settings.storage_root)
    for round_ in range(4):
        data = f"contested bytes {uuid.uuid4()}".encode()
        doomed = store(committed, account, owner, data, filename="to-purge")
        with committed.unit_of_work() as uow:
            uow.files.delete(doomed)

        def contend(index: int, data: bytes = data) -> str:
            if index == 0:  # purges the deleted file, whose bytes the others upload again
                with committed.unit_of_work() as uow:
                    uow.files.purge(account=account)
                return "purged"
            try:
                with committed.unit_of_work() as uow:
                    uow.files.store(account=account, owner=owner, filename=f"copy-{index}", stream=data)
                    if index % 2:
                        raise RuntimeError("this upload's request fails")
            except RuntimeError:
                return "rolled back"
            return "stored"

        outcomes = together(4, contend)
        assert outcomes.count("stored") == 1, (round_, outcomes)
        with committed.unit_of_work() as uow:
            named = uow.files.list(filters={"account_id": account.id, "sha256": sha(data)})
            assert len(named) == 1
            assert uow.files.verify(named[0].id).ok, f"round {round_}: a committed file lost its bytes"
    assert storage.exists(sha(data))


# --- kill -9 in the middle of an upload, in a real process -----------------------------------------------------


def killed_upload(database: Database, account: Account, tmp_path: Path, mode: str) -> None:
    """Run ``tests.integration.storage_workers`` until it reaches ``mode``'s point, then SIGKILL it."""
    signal_file = tmp_path / f"{mode}.signal"
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.integration.storage_workers", database.url.render_as_string(hide_password=False),
         str(database.settings.storage_root), str(account.id), str(signal_file), mode],
        cwd=Path(__file__).resolve().parents[2], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    for _ in range(1200):
        if signal_file.exists() or child.poll() is not None:
            break
        time.sleep(0.1)
    child.kill()  # SIGKILL: no cleanup of any kind runs
    _, errors = child.communicate(timeout=60)
    assert signal_file.exists(), f"the upload never got there: {errors.decode()}"


@pytest.mark.slow
def test_an_upload_killed_while_its_bytes_are_read_leaves_no_row_and_its_temporary_file_is_reclaimed(
    committed: Database, tmp_path: Path
) -> None:
    account, _ = new_account(committed, quota=10**9)
    storage = LocalStorage(committed.settings.storage_root)
    before = set(temporaries(storage))
    killed_upload(committed, account, tmp_path, "reading")
    left = set(temporaries(storage)) - before
    assert len(left) == 1 and next(iter(left)).stat().st_size == 2**20  # what was read when it died
    with committed.unit_of_work() as uow:
        assert uow.files.count({"account_id": account.id}) == 0
        assert uow.files.reclaim_orphans(temporaries_older_than=dt.timedelta(0)).temporaries >= 1
    assert not any(path.exists() for path in left)


@pytest.mark.slow
def test_an_upload_killed_after_its_bytes_were_placed_leaves_no_row_and_the_bytes_are_reclaimed(
    committed: Database, tmp_path: Path
) -> None:
    account, _ = new_account(committed, quota=10**9)
    storage = LocalStorage(committed.settings.storage_root)
    before = set(on_disk(storage))
    killed_upload(committed, account, tmp_path, "placed")
    [placed] = set(on_disk(storage)) - before  # the bytes are there; nothing names them
    with committed.unit_of_work() as uow:
        assert uow.files.count({"account_id": account.id}) == 0
        assert uow.session.get(FileBlob, placed) is None
    report = check(committed)
    assert report.ok and any(placed in warning for warning in report.result("blobs").warnings)
    with committed.unit_of_work() as uow:
        assert uow.files.reclaim_orphans().loose_blobs >= 1
    assert not storage.exists(placed)


# --- no lock is held while an upload's bytes are still coming ---------------------------------------------------


class StalledStream(io.RawIOBase):
    """A first chunk, then nothing until ``resume`` is set: a slow client."""

    def __init__(self, started: threading.Event, resume: threading.Event) -> None:
        self.started, self.resume, self.sent = started, resume, False

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if not self.sent:
            self.sent = True
            self.started.set()
            return b"first chunk of a slow upload"
        self.resume.wait(120)
        return b""


def test_writers_to_the_same_account_do_not_wait_for_an_upload_whose_bytes_are_still_coming(
    committed: Database,
) -> None:
    account, owner = new_account(committed, quota=10**9)
    started, resume = threading.Event(), threading.Event()
    results: dict[str, object] = {}

    def upload() -> None:
        results["upload"] = store(committed, account, owner, StalledStream(started, resume), filename="slow.bin")

    def write_meanwhile() -> None:
        try:
            with committed.unit_of_work() as uow:
                uow.accounts.update(account.id, name="renamed during the upload")  # the row the quota check locks
                uow.users.create(email=f"meanwhile-{uuid.uuid4().hex[:8]}@example.com", password=PASSWORD)
            results["writer"] = "committed"
        except Exception as error:  # a busy SQLite file, a lock timeout: the writer waited for the upload
            results["writer"] = repr(error)

    uploader = threading.Thread(target=upload)
    uploader.start()
    try:
        assert started.wait(60)
        writer = threading.Thread(target=write_meanwhile)
        writer.start()
        writer.join(60)  # a guard against a hang, not a measurement
        done_before_the_upload = "writer" in results
    finally:
        resume.set()
        uploader.join(120)
    writer.join(120)
    assert done_before_the_upload and results["writer"] == "committed", results
    assert isinstance(results["upload"], StoredFile)
