"""Tar headers that would make a reader hold memory in proportion to the archive: extended headers (PAX, GNU long
names) are refused before they are read when larger than a few KiB, members are never accumulated, and parts the
manifest does not list are refused. Memory is measured with tracemalloc (Python's own allocations: what ``tarfile``
reads is a bytes object); ``tests/integration/test_restore_limits.py`` measures a real command's peak RSS."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import tarfile
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pytest

from db.backup.manifest import Manifest, Part
from db.backup.reader import verify_archive
from db.backup.tarwalk import MAX_EXTENDED_CHAIN, MAX_EXTENDED_HEADER, members, open_tar
from db.errors import BackupError
from tests.bombs import MiB, header_block, huge_extended_header, member_flood, write_archive

BLOB = b"a blob"
BLOB_NAME = "blobs/" + hashlib.sha256(BLOB).hexdigest()


def peak_python_memory(action: Callable[[], object]) -> int:
    """The most memory Python allocated while ``action`` ran (it is expected to raise ``BackupError``)."""
    tracemalloc.start()
    try:
        with pytest.raises(BackupError):
            action()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def valid_archive(path: Path) -> Path:
    return write_archive(path, {BLOB_NAME: (BLOB, len(BLOB))}, ())


@pytest.mark.parametrize("kind", [tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.GNUTYPE_LONGNAME,
                                  tarfile.GNUTYPE_LONGLINK], ids=["pax", "pax global", "long name", "long link"])
def test_an_extended_header_larger_than_the_limit_is_refused_unread(kind: bytes, tmp_path: Path) -> None:
    bomb = huge_extended_header(tmp_path / "bomb.tar", 64 * MiB, kind)

    with pytest.raises(BackupError, match=r"extended tar header .* of 67,108,864 bytes, more than the 4,096"):
        verify_archive(bomb)
    assert peak_python_memory(lambda: verify_archive(bomb)) < MiB


def test_an_extended_header_at_the_limit_is_read(tmp_path: Path) -> None:
    bomb = huge_extended_header(tmp_path / "bomb.tar", MAX_EXTENDED_HEADER)  # zeros: not a valid PAX record

    with pytest.raises(BackupError, match="corrupt or truncated archive"):
        verify_archive(bomb)


def test_extended_headers_chained_without_end_are_refused(tmp_path: Path) -> None:
    record = b"20 comment=chained\n"
    block = header_block("././@PaxHeader", len(record), tarfile.XHDTYPE) + record.ljust(tarfile.BLOCKSIZE, b"\0")
    bomb = tmp_path / "chain.tar"
    bomb.write_bytes(block * (MAX_EXTENDED_CHAIN + 1) + header_block(BLOB_NAME, 0) + bytes(2 * tarfile.BLOCKSIZE))

    with pytest.raises(BackupError, match=f"more than {MAX_EXTENDED_CHAIN} extended tar headers in a row"):
        verify_archive(bomb)


@pytest.mark.parametrize(("kind", "size", "refusal"), [
    (tarfile.GNUTYPE_SPARSE, 0, "is a sparse file"),
    (tarfile.REGTYPE, -1, "gives a negative size"),
])
def test_sparse_members_and_negative_sizes_are_refused(kind: bytes, size: int, refusal: str, tmp_path: Path) -> None:
    bomb = tmp_path / "odd.tar"
    bomb.write_bytes(header_block(BLOB_NAME, size, kind) + bytes(2 * tarfile.BLOCKSIZE))

    with pytest.raises(BackupError, match=refusal):
        verify_archive(bomb)


@pytest.mark.slow
def test_a_flood_of_members_without_a_manifest_is_walked_keeping_none(tmp_path: Path) -> None:
    flood = member_flood(tmp_path / "flood.tar", 20_000)

    with pytest.raises(BackupError, match="the manifest is missing"):
        verify_archive(flood)
    assert peak_python_memory(lambda: verify_archive(flood)) < MiB  # tarfile alone keeps ~20 MB of TarInfo


def test_the_walk_leaves_no_member_in_the_tarfile(tmp_path: Path) -> None:
    with (tmp_path / "flood.tar").open("wb+") as raw:
        raw.write(member_flood(tmp_path / "flood.tar", 10).read_bytes())
        with open_tar(raw, "flood.tar") as tar:
            names = [member.name for member in members(tar, "flood.tar")]
            assert len(names) == 10 and tar.members == []


def test_more_parts_than_the_manifest_lists_are_refused_before_any_is_hashed(tmp_path: Path) -> None:
    archive = tmp_path / "extra.tar"
    manifest = Manifest(engine="postgresql", revision="0004_files_reports", created_at=_now(), database="x",
                        tables=(), parts=(Part(BLOB_NAME, len(BLOB), hashlib.sha256(BLOB).hexdigest(), len(BLOB)),))
    with tarfile.open(archive, "w") as tar:
        for name, data in ((BLOB_NAME, BLOB), (BLOB_NAME, BLOB), ("manifest.json", manifest.to_json())):
            _add(tar, name, data)

    with pytest.raises(BackupError, match="holds 2 parts, its manifest lists 1"):
        verify_archive(archive)


def test_a_part_the_manifest_does_not_list_is_refused_by_name(tmp_path: Path) -> None:
    archive = tmp_path / "swapped.tar"
    other = b"another blob"
    manifest = Manifest(engine="postgresql", revision="0004_files_reports", created_at=_now(), database="x",
                        tables=(), parts=(Part(BLOB_NAME, len(BLOB), hashlib.sha256(BLOB).hexdigest(), len(BLOB)),))
    with tarfile.open(archive, "w") as tar:
        for name, data in (("blobs/" + hashlib.sha256(other).hexdigest(), other), ("manifest.json",
                                                                                  manifest.to_json())):
            _add(tar, name, data)

    with pytest.raises(BackupError, match=r"part blobs/\w+ is not in the manifest"):
        verify_archive(archive)


def test_an_archive_with_small_pax_headers_still_verifies(tmp_path: Path) -> None:
    plain = valid_archive(tmp_path / "plain.tar")
    repacked = tmp_path / "pax.tar"
    with tarfile.open(plain) as source, tarfile.open(repacked, "w", format=tarfile.PAX_FORMAT,
                                                     pax_headers={"comment": "global"}) as tar:
        for member in source:
            member.pax_headers = {"comment": "é" * 100}  # non-ASCII: a PAX header per member
            tar.addfile(member, source.extractfile(member))

    assert [part.name for part in verify_archive(repacked).parts] == [BLOB_NAME]


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
