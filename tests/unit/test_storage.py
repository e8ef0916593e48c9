"""Filename sanitising, content sniffing and ``LocalStorage``, without a database."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import multiprocessing
import os
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from db.errors import DiskFull, NotFound, StorageMismatch, ValidationError
from db.models.file_object import FILENAME_MAX_BYTES, FILENAME_MAX_LENGTH, sanitise_filename
from db.storage import MARKER, LocalStorage, StorageOwner, hash_stream, normalise_content_type, sniff_content_type
from tests.tmpfs import small_disk

# --- filenames -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("given_name", "kept"), [
    ("report.pdf", "report.pdf"),
    ("../../etc/passwd", "passwd"),
    ("..\\..\\boot.ini", "boot.ini"),
    ("/etc/passwd", "passwd"),
    ("C:\\Windows\\system32\\cmd.exe", "cmd.exe"),
    ("C:x.txt", "x.txt"),
    ("dir/sub/", "sub"),
    ("a\uff0fb.txt", "b.txt"),                      # a full-width solidus is a separator too
    ("a\x00b\x01c\x7f\x9f.txt", "abc.txt"),
    ("evil\u202etxt.exe", "eviltxt.exe"),            # no right-to-left override to disguise the extension
    ("line\u2028break.txt", "linebreak.txt"),
    ("\ud800lone surrogate.txt", "lone surrogate.txt"),
    ("A\x1f\u0300.txt", "\u00c0.txt"),            # composed once the control between them is gone
    ("CON", "_CON"),
    ("con.txt", "_con.txt"),
    ("Aux.tar.gz", "_Aux.tar.gz"),
    ("NUL .txt", "_NUL .txt"),
    ("COM1", "_COM1"),
    ("lpt9.log", "_lpt9.log"),
    ("COM\u00b9.txt", "_COM\u00b9.txt"),
    ("CONSOLE.txt", "CONSOLE.txt"),                 # only the device names themselves
    ("name. . .", "name"),
    ("  padded  ", "padded"),
    ('a<b>c:d"e|f?g*h', "a_b_c_d_e_f_g_h"),
    (".bashrc", ".bashrc"),
    ("", "unnamed"),
    ("   ", "unnamed"),
    ("..", "unnamed"),
    ("/", "unnamed"),
    (None, "unnamed"),
    ("x" * 10_000, "x" * 255),
    ("x" * 10_000 + ".tar.gz", "x" * 252 + ".gz"),
    ("x" * 300 + "." + "y" * 100, ("x" * 300 + "." + "y" * 100)[:255]),  # a 100-character "extension" is cut
    ("a" + " " * 300 + ".txt", "a.txt"),
    ("CON" + " " * 300 + "a", "_CON"),             # a device name left by the cut gets its prefix too
    ("CON" + " " * 248 + ".txt", "_CON.txt"),        # 255 bytes: the prefix makes 256, cut again
])
def test_filenames_are_sanitised(given_name: Any, kept: str) -> None:
    assert sanitise_filename(given_name) == kept


def utf8(text: str) -> int:
    return len(text.encode("utf-8"))


EMOJI, FLAG = "\U0001f600", "\U0001f1e9\U0001f1ea"  # a grinning face; the flag of Germany (two symbols)
FAMILY = "\U0001f468\u200d\U0001f469\u200d\U0001f467"  # three emoji joined by ZWJs, shown as one
THUMB = "\U0001f44d\U0001f3fd"  # an emoji and its skin tone
Q_DOT = "q\u0307"  # a letter and a combining mark that no precomposed character replaces (3 bytes)


@pytest.mark.parametrize(("given_name", "kept"), [
    (EMOJI * 255, EMOJI * 63),                              # 1,020 bytes: 63 emoji (252 bytes) fit, not 64
    (EMOJI * 255 + ".txt", EMOJI * 62 + ".txt"),            # the extension is kept, the stem gives way
    ("\u00e9" * 127 + "x", "\u00e9" * 127 + "x"),            # exactly 255 bytes: kept whole
    ("\u00e9" * 128, "\u00e9" * 127),                        # 256 bytes: one character goes, never half of one
    ("\u6f22" * 85, "\u6f22" * 85),                          # 255 bytes of CJK
    ("\u6f22" * 86, "\u6f22" * 85),
    (Q_DOT * 85, Q_DOT * 85),                               # 255 bytes with combining marks: kept
    ("a" + Q_DOT * 85, "a" + Q_DOT * 84),                   # 256: the mark is not cut from its letter
    ("e\u0301" * 200, "\u00e9" * 127),                       # composed (NFC) before it is measured
    ("x" + FLAG * 40, "x" + FLAG * 31),                     # a flag is two symbols, never split
    (FAMILY * 20, FAMILY * 14),                             # an emoji sequence joined by ZWJs stays whole
    ("ab" + THUMB * 40, "ab" + THUMB * 31),                 # a skin tone stays with its emoji
])
def test_names_are_cut_to_255_bytes_of_utf8_between_whole_characters(given_name: str, kept: str) -> None:
    safe = sanitise_filename(given_name)
    assert safe == kept
    assert utf8(safe) <= 255 and sanitise_filename(safe) == safe


def test_a_name_of_255_multibyte_characters_can_be_saved_on_this_file_system(tmp_path: Path) -> None:
    for name in (EMOJI * 255, "\u00e9" * 255 + ".pdf", Q_DOT * 200, FAMILY * 50):
        (tmp_path / sanitise_filename(name)).write_bytes(b"saved")  # OSError "File name too long" before
    assert len(list(tmp_path.iterdir())) == 4


@pytest.mark.parametrize("value", [b"bytes.txt", 42, ["a"]])
def test_a_filename_that_is_not_text_is_refused(value: Any) -> None:
    with pytest.raises(ValidationError):
        sanitise_filename(value)


_UNSAFE = re.compile(r'[/\\<>:"|?*\x00-\x1f\x7f]')


@given(st.text(max_size=400) | st.text(alphabet="./\\:C ON\x00\x1fx.e\u0301\u0958", max_size=300)
       | st.text(alphabet=["\U0001f600", "\U0001f1e9", "\u200d", "\u0301", "\ufe0f", "\U0001f3fd", "\u6f22", ".", " ",
                           "C", "O", "N"], max_size=300))
def test_any_sanitised_name_is_safe_and_sanitising_it_again_changes_nothing(name: str) -> None:
    safe = sanitise_filename(name)
    assert 1 <= len(safe) <= FILENAME_MAX_LENGTH
    assert utf8(safe) <= FILENAME_MAX_BYTES
    assert not _UNSAFE.search(safe)
    assert safe == safe.strip() and not safe.endswith(".")
    assert safe not in ("", ".", "..")
    assert not re.fullmatch(r"(CON|PRN|AUX|NUL|COM\d|LPT\d)(\..*)?", safe, re.IGNORECASE)
    safe.encode("utf-8")  # no lone surrogates: every engine can store it
    assert sanitise_filename(safe) == safe


# --- content types ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("head", "complete", "declared", "sniffed"), [
    (b"\x89PNG\r\n\x1a\n" + bytes(32), True, "text/plain", "image/png"),
    (b"%PDF-1.4\n", True, None, "application/pdf"),
    (b"PK\x03\x04" + bytes(40), True, None, "application/zip"),
    (b"MZ" + bytes(100), True, "image/png", "application/x-msdownload"),  # a program is not a picture
    (b"plain text\n", True, None, "text/plain"),
    (b"{\"a\": 1}", True, "application/json", "application/json"),
    (b"<svg/>", True, "image/svg+xml", "image/svg+xml"),
    (b"a,b\n", True, "application/pdf", "text/plain"),
    ("café".encode()[:-1], False, None, "text/plain"),      # a character cut where the head ends
    ("café".encode()[:-1], True, None, "application/octet-stream"),  # ...but not where the file ends
    (b"\xff\xfe\x00\x01binary", True, None, "application/octet-stream"),
    (b"\x00\x01\x02", True, "application/x-custom", "application/x-custom"),
    (b"", True, None, "application/octet-stream"),
    (b"", True, "text/plain", "text/plain"),
])
def test_content_types_are_sniffed_from_the_bytes(
    head: bytes, complete: bool, declared: str | None, sniffed: str
) -> None:
    assert sniff_content_type(head, complete=complete, declared=declared) == sniffed


@pytest.mark.parametrize(("declared", "kept"), [
    ("Text/HTML; charset=utf-8", "text/html"), ("  image/png ", "image/png"), ("", None), (None, None),
    ("application/vnd.openxmlformats-officedocument.wordprocessingml.document",
     "application/vnd.openxmlformats-officedocument.wordprocessingml.document"),
])
def test_declared_content_types_are_normalised(declared: str | None, kept: str | None) -> None:
    assert normalise_content_type(declared) == kept


@pytest.mark.parametrize("declared", ["text", "text/", "/plain", "text/pl ain", "a/" + "b" * 200, 5, b"text/plain"])
def test_malformed_declared_content_types_are_refused(declared: Any) -> None:
    with pytest.raises(ValidationError) as refused:
        normalise_content_type(declared)
    assert refused.value.field == "content_type"


# --- LocalStorage ----------------------------------------------------------------------------------------------


@pytest.fixture
def storage(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "blobs", chunk_size=7)


def leftovers(storage: LocalStorage) -> list[Path]:
    directory = storage.root / ".tmp"
    return list(directory.iterdir()) if directory.is_dir() else []


def test_a_blob_is_kept_under_its_sha256_in_sharded_directories(storage: LocalStorage) -> None:
    data = b"some bytes to keep"
    key, size = storage.put(io.BytesIO(data))
    assert (key, size) == (hashlib.sha256(data).hexdigest(), len(data))
    assert storage.path_of(key) == storage.root / key[:2] / key[2:4] / key
    assert storage.path_of(key).read_bytes() == data
    with storage.open(key) as stream:
        assert stream.read() == data
    assert storage.exists(key) and list(storage.keys()) == [key]
    assert leftovers(storage) == []


def test_the_same_bytes_twice_are_one_blob(storage: LocalStorage) -> None:
    with storage.stage(b"twice") as first:
        assert first.commit() is True
    with storage.stage(io.BytesIO(b"twice")) as second:
        assert second.commit() is False  # already there: this copy is dropped
    assert list(storage.keys()) == [hashlib.sha256(b"twice").hexdigest()]
    assert leftovers(storage) == []


def test_a_damaged_copy_of_another_size_is_replaced_by_a_new_upload(storage: LocalStorage) -> None:
    key, _ = storage.put(b"the right bytes")
    storage.path_of(key).write_bytes(b"trunc")
    storage.put(b"the right bytes")
    assert storage.path_of(key).read_bytes() == b"the right bytes"


def test_a_staged_blob_not_committed_is_discarded(storage: LocalStorage) -> None:
    with storage.stage(b"never kept") as staged:
        assert staged.sha256 == hashlib.sha256(b"never kept").hexdigest() and staged.size == 10
        assert len(leftovers(storage)) == 1  # written to a temporary file, not under its key
        assert not storage.exists(staged.sha256)
    assert leftovers(storage) == [] and list(storage.keys()) == []


def test_the_head_holds_the_first_bytes_only(tmp_path: Path) -> None:
    big = LocalStorage(tmp_path, chunk_size=1000)
    with big.stage(bytes(range(256)) * 100) as staged:
        assert staged.head == (bytes(range(256)) * 100)[:8192]


class Failing(io.RawIOBase):
    """Yields some bytes, then fails as a dropped connection would."""

    def __init__(self) -> None:
        self.calls = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        self.calls += 1
        if self.calls > 3:
            raise ConnectionResetError("the client went away")
        return b"x" * size


def test_a_stream_that_fails_half_way_leaves_no_blob_and_no_temporary_file(storage: LocalStorage) -> None:
    with pytest.raises(ConnectionResetError):
        storage.put(Failing())
    assert list(storage.keys()) == [] and leftovers(storage) == []


def test_a_stream_over_the_maximum_size_is_refused_part_way(storage: LocalStorage) -> None:
    with pytest.raises(ValidationError) as refused:
        storage.put(io.BytesIO(b"y" * 101), max_size=100)
    assert refused.value.rule == "max_size"
    assert list(storage.keys()) == [] and leftovers(storage) == []
    assert storage.put(b"y" * 100, max_size=100)[1] == 100


def test_a_text_stream_is_refused(storage: LocalStorage) -> None:
    with pytest.raises(ValidationError):
        storage.put(io.StringIO("text"))  # type: ignore[arg-type]
    assert leftovers(storage) == []


@pytest.mark.parametrize("key", [
    "../../etc/passwd", "/etc/passwd", "a" * 63, "a" * 65, "A" * 64, "g" * 64, "a" * 63 + "/", "a" * 64 + "\n",
    "..", "", None, 12,
])
def test_a_key_that_is_not_a_sha256_is_refused_before_any_path_is_built(storage: LocalStorage, key: Any) -> None:
    for operation in (storage.open, storage.exists, storage.delete, storage.path_of):
        with pytest.raises(ValidationError):
            operation(key)


def test_deleting_and_opening_a_missing_blob(storage: LocalStorage) -> None:
    key, _ = storage.put(b"short-lived")
    assert storage.delete(key) is True
    assert storage.delete(key) is False
    assert not storage.exists(key)
    with pytest.raises(NotFound):
        storage.open(key)


def test_keys_ignore_temporary_and_foreign_files(storage: LocalStorage) -> None:
    key, _ = storage.put(b"real")
    (storage.root / ".tmp" / "upload-x.part").write_bytes(b"half")
    (storage.root / "README").write_text("not a blob")
    misplaced = storage.root / "00" / "00"
    misplaced.mkdir(parents=True)
    (misplaced / key).write_bytes(b"real")  # a key under the wrong shard
    assert list(storage.keys()) == [key]


def test_only_temporary_files_untouched_for_long_enough_are_removed(storage: LocalStorage) -> None:
    assert storage.remove_temporaries(dt.timedelta(hours=1)) == 0  # no directory yet
    storage.put(b"kept")
    directory = storage.root / ".tmp"
    old, fresh = directory / "upload-old.part", directory / "upload-fresh.part"
    old.write_bytes(b"abandoned")
    fresh.write_bytes(b"in progress")
    an_hour_ago = time.time() - 3_601
    os.utime(old, (an_hour_ago, an_hour_ago))
    assert storage.remove_temporaries(dt.timedelta(hours=1)) == 1
    assert sorted(directory.iterdir()) == [fresh]
    assert len(list(storage.keys())) == 1


def test_hash_stream_reads_in_chunks() -> None:
    assert hash_stream(io.BytesIO(b"abc" * 1000), chunk_size=7) == (hashlib.sha256(b"abc" * 1000).hexdigest(), 3000)


def test_a_chunk_size_below_one_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValidationError):
        LocalStorage(tmp_path, chunk_size=0)


# --- the database a root serves: its marker ----------------------------------------------------------------------


def owner(name: str) -> StorageOwner:
    return StorageOwner.of(uuid.uuid5(uuid.NAMESPACE_DNS, name), f"sqlite:///{name}.db", f"sqlite:/{name}.db")


def test_a_new_root_has_no_owner_until_it_is_bound_and_then_keeps_the_first(storage: LocalStorage) -> None:
    first, second = owner("first"), owner("second")  # each stamped once: a second boundary must not split them
    assert storage.owner() is None
    assert storage.bind(first) == first == storage.owner()
    assert storage.bind(second) == first  # bound already: the first stays
    assert storage.bind(second, replace=True) == storage.owner() == second
    assert list(storage.keys()) == [] and leftovers(storage) == []  # the marker is no blob, no temporary file left


@pytest.mark.parametrize("content", [b"", b"{not json", b'{"format": 99, "database_id": "x"}', b"[1, 2]",
                                     b'{"format": 1}', b"\xff\xfe"])
def test_a_damaged_marker_is_refused_rather_than_guessed(storage: LocalStorage, content: bytes) -> None:
    storage.root.mkdir(parents=True)
    (storage.root / MARKER).write_bytes(content)
    with pytest.raises(StorageMismatch, match="damaged marker"):
        storage.owner()


def _bind_as(root: str, name: str, start: Any) -> str:
    start.wait()
    return LocalStorage(root).bind(owner(name)).database_id


@pytest.mark.slow
def test_processes_binding_one_new_root_at_once_all_see_one_winner(tmp_path: Path) -> None:
    root = str(tmp_path / "contested")
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager, context.Pool(6) as pool:
        start = manager.Barrier(6)
        seen = pool.starmap(_bind_as, [(root, f"db{index}", start) for index in range(6)])
    winner = LocalStorage(root).owner()
    assert winner is not None and set(seen) == {winner.database_id}


# --- a full disk ---------------------------------------------------------------------------------------------------


@pytest.fixture
def full_disk_storage(tmp_path: Path) -> Iterator[LocalStorage]:
    with small_disk(tmp_path / "disk", "1m") as disk:
        yield LocalStorage(disk / "blobs", chunk_size=64 * 1024)


def test_a_full_disk_is_reported_as_disk_full_and_leaves_nothing_behind(full_disk_storage: LocalStorage) -> None:
    kept, _ = full_disk_storage.put(b"already here")
    with pytest.raises(DiskFull, match="full") as refused:
        full_disk_storage.put(io.BytesIO(os.urandom(2 * 2**20)))
    assert full_disk_storage.location in str(refused.value)
    assert list(full_disk_storage.keys()) == [kept] and leftovers(full_disk_storage) == []
    assert full_disk_storage.put(b"small enough")[1] == 12  # the space came back
