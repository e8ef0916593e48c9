"""The archive format without a database: typed row encoding, type tags, manifest checks, member names, the plain
tar of separately compressed parts, bounded parallel compression."""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import io
import json
import tarfile
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path

import pytest
import zstandard
from sqlalchemy import JSON, BigInteger, Boolean, Double, LargeBinary, Numeric, String, Text, Uuid
from sqlalchemy.types import ARRAY, Integer

from db.backup.codec import row_decoder, row_encoder, type_tag
from db.backup.disk import check_free_space
from db.backup.manifest import Manifest, Part, TableDump
from db.backup.reader import Limits, unpack, verify_archive
from db.backup.writer import ArchiveWriter, compressed_frames
from db.base import UTCDateTime
from db.errors import BackupError, DiskFull, ValidationError
from tests.bombs import FRAME_INPUT, MiB, one_line_bomb, table_bomb, write_archive

COLUMNS = (("id", "uuid"), ("at", "datetime"), ("price", "decimal"), ("raw", "bytes"), ("ok", "bool"),
           ("n", "int"), ("x", "float"), ("doc", "json"), ("name", "str"))


def test_rows_survive_the_json_encoding_with_their_types() -> None:
    row = [uuid.uuid4(), dt.datetime(2024, 2, 29, 23, 59, 59, 999999, tzinfo=dt.UTC), Decimal("12.3400"),
           b"\x00\xff\n", True, 2**62, 0.1, {"a": [1, "b"]}, "line\nbreak \u2028 ünï"]
    line = row_encoder([tag for _, tag in COLUMNS])(row)
    assert "\n" not in line
    assert row_decoder(COLUMNS)(line) == dict(zip([name for name, _ in COLUMNS], row, strict=True))


def test_nulls_stay_null_and_a_short_row_is_refused() -> None:
    line = row_encoder([tag for _, tag in COLUMNS])([None] * len(COLUMNS))
    assert set(row_decoder(COLUMNS)(line).values()) == {None}
    with pytest.raises(BackupError, match="does not match"):
        row_decoder(COLUMNS)(json.dumps([None]))


def test_datetimes_are_written_in_utc() -> None:
    plus_two = dt.datetime(2024, 1, 1, 12, 0, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    line = row_encoder(["datetime"])([plus_two])
    assert json.loads(line) == ["2024-01-01T10:00:00+00:00"]


@pytest.mark.parametrize(("column_type", "tag"), [
    (UTCDateTime(), "datetime"), (Uuid(), "uuid"), (Boolean(), "bool"), (BigInteger(), "int"),
    (Integer(), "int"), (Double(), "float"), (Numeric(18, 4), "decimal"), (JSON(), "json"),
    (LargeBinary(), "bytes"), (String(20), "str"), (Text(), "str"),
])
def test_column_types_get_their_tags(column_type: object, tag: str) -> None:
    assert type_tag(column_type) == tag  # type: ignore[arg-type]


def test_a_type_the_format_cannot_carry_is_refused() -> None:
    with pytest.raises(BackupError, match="cannot be backed up"):
        type_tag(ARRAY(Integer()))


def _manifest(**changes: object) -> Manifest:
    values: dict[str, object] = {
        "engine": "sqlite", "revision": "0004_files_reports", "created_at": dt.datetime.now(dt.UTC),
        "database": "sqlite:///x.db", "tables": (TableDump("user", 0, (("id", "uuid"),)),), "parts": (),
    }
    values.update(changes)
    return Manifest(**values)  # type: ignore[arg-type]


def _write(path: Path, parts: dict[str, list[bytes]], manifest: Manifest | None) -> Path:
    """An archive of ``parts`` (each given as its chunks: one zstd frame per chunk for a ``.zst`` part)."""
    with path.open("wb") as out:
        writer = ArchiveWriter(out)
        for name, chunks in parts.items():
            writer.add(name, chunks)
        if manifest is not None:
            listed = Manifest(engine=manifest.engine, revision=manifest.revision, created_at=manifest.created_at,
                              database=manifest.database, tables=_counted(manifest.tables, parts),
                              parts=tuple(writer.parts))
            writer.close(listed)
    return path


def _counted(tables: tuple[TableDump, ...], parts: dict[str, list[bytes]]) -> tuple[TableDump, ...]:
    """The tables with the row counts their parts hold (one row per line)."""
    counted = []
    for table in tables:
        data = b"".join(parts.get(f"tables/{table.name}.jsonl.zst", []))
        counted.append(TableDump(table.name, len(data.splitlines()), table.columns))
    return tuple(counted)


def test_an_archive_round_trips_and_extracts_only_under_its_directory(tmp_path: Path) -> None:
    archive = _write(tmp_path / "a.tar", {"tables/user.jsonl.zst": [], "blobs/" + "ab" * 32: [b"x"]},
                     _manifest(engine="postgresql"))
    with pytest.raises(BackupError, match="under another hash"):
        verify_archive(archive)
    key = hashlib.sha256(b"x").hexdigest()
    archive = _write(tmp_path / "b.tar", {"tables/user.jsonl.zst": [b"[1]\n", b"[2]\n"], f"blobs/{key}": [b"x"]},
                     _manifest(engine="postgresql"))
    manifest = unpack(archive, tmp_path / "out")
    assert manifest.blob_count == 1 and manifest.blob_bytes == 1
    assert sorted(str(p.relative_to(tmp_path / "out")) for p in (tmp_path / "out").rglob("*") if p.is_file()) == [
        f"blobs/{key}", "tables/user.jsonl"]
    assert (tmp_path / "out" / "tables" / "user.jsonl").read_bytes() == b"[1]\n[2]\n"


def test_the_archive_is_a_plain_tar_of_parts_the_manifest_describes(tmp_path: Path) -> None:
    chunks = [bytes(range(256)) * 400, b"second frame " * 1000, b"third"]
    archive = _write(tmp_path / "a.tar", {"tables/user.jsonl.zst": chunks}, _manifest(engine="mariadb"))
    with tarfile.open(archive) as tar:  # stdlib, no decompression of the tar itself
        assert tar.getnames() == ["tables/user.jsonl.zst", "manifest.json"]
        stored = tar.extractfile("tables/user.jsonl.zst").read()  # type: ignore[union-attr]
        manifest = Manifest.from_json(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
    [part] = manifest.parts
    assert (part.size, part.sha256, part.raw_size) == (len(stored), hashlib.sha256(stored).hexdigest(),
                                                       sum(map(len, chunks)))
    frames, rest = [], stored
    while rest:  # frame by frame: each one independent, with its content checksum
        assert zstandard.get_frame_parameters(rest).has_checksum
        frame = zstandard.ZstdDecompressor().decompressobj()
        frames.append(frame.decompress(rest))
        rest = frame.unused_data
    assert frames == chunks


def test_parallel_compression_keeps_order_and_only_two_chunks_per_worker_in_flight() -> None:
    pulled = 0

    def chunks() -> Iterator[bytes]:
        nonlocal pulled
        for number in range(40):
            pulled += 1
            yield f"chunk {number} ".encode() * 1000

    frames = compressed_frames(chunks(), workers=2)
    decompressed = []
    for frame in frames:
        decompressed.append(zstandard.ZstdDecompressor().decompress(frame))
        assert pulled - len(decompressed) <= 2 * 2
    assert decompressed == [f"chunk {number} ".encode() * 1000 for number in range(40)]


def test_a_part_whose_frames_do_not_match_the_manifest_is_refused(tmp_path: Path) -> None:
    good = _write(tmp_path / "good.tar", {"tables/user.jsonl.zst": [b"[1]\n" * 1000]}, _manifest(engine="mariadb"))
    manifest = verify_archive(good)
    [part] = manifest.parts
    with tarfile.open(good) as tar:
        stored = tar.extractfile(part.name).read()  # type: ignore[union-attr]
    lying = Manifest(engine="mariadb", revision=manifest.revision, created_at=manifest.created_at,
                     database=manifest.database, tables=manifest.tables,
                     parts=(Part(part.name, part.size, part.sha256, part.raw_size + 1),))
    _write_raw(tmp_path / "size.tar", part.name, stored, lying)
    with pytest.raises(BackupError, match="decompresses to 4000 bytes, the manifest says 4001"):
        verify_archive(tmp_path / "size.tar")

    damaged = bytearray(stored)
    damaged[-2] ^= 0xFF  # inside the frame's content checksum; the manifest is made to agree with the damage
    agreeing = Manifest(engine="mariadb", revision=manifest.revision, created_at=manifest.created_at,
                        database=manifest.database, tables=manifest.tables,
                        parts=(Part(part.name, part.size, hashlib.sha256(damaged).hexdigest(), part.raw_size),))
    _write_raw(tmp_path / "frame.tar", part.name, bytes(damaged), agreeing)
    with pytest.raises(BackupError, match="corrupt"):
        unpack(tmp_path / "frame.tar", tmp_path / "out")


def _write_raw(path: Path, name: str, stored: bytes, manifest: Manifest) -> None:
    """A tar holding ``stored`` as it is under ``name``, and ``manifest``."""
    with tarfile.open(path, "w") as tar:
        for member, data in ((name, stored), ("manifest.json", manifest.to_json())):
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_a_logical_dump_must_have_one_part_per_table(tmp_path: Path) -> None:
    archive = _write(tmp_path / "a.tar", {}, _manifest(engine="mariadb"))
    with pytest.raises(BackupError, match="one data part per table"):
        verify_archive(archive)


@pytest.mark.parametrize("document", [
    b"not json", b"[]", json.dumps({"format": "other"}).encode(),
    json.dumps({"format": "dblayer-backup", "format_version": 99}).encode(),
    json.dumps({"format": "dblayer-backup", "format_version": 1, "engine": "sqlite"}).encode(),
    json.dumps({"format": "dblayer-backup", "format_version": 2, "engine": "sqlite"}).encode(),
])
def test_a_malformed_manifest_is_refused(document: bytes) -> None:
    with pytest.raises(BackupError):
        Manifest.from_json(document)


def test_a_manifest_with_a_hostile_table_name_is_refused() -> None:
    document = json.loads(_manifest().to_json())
    document["tables"][0]["name"] = "user; DROP TABLE x"
    with pytest.raises(BackupError, match="malformed"):
        Manifest.from_json(json.dumps(document).encode())


def test_a_manifest_whose_blob_is_not_stored_as_it_is_is_refused() -> None:
    key = hashlib.sha256(b"x").hexdigest()
    document = json.loads(_manifest(engine="mariadb", tables=()).to_json())
    document["parts"] = [{"name": f"blobs/{key}", "size": 1, "sha256": key, "raw_size": 2}]
    with pytest.raises(BackupError, match="under another hash or size"):
        Manifest.from_json(json.dumps(document).encode())


def test_a_file_that_is_not_an_archive_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "x.tar"
    path.write_bytes(b"not a tar" + bytes(1000))
    with pytest.raises(BackupError, match="corrupt or truncated"):
        verify_archive(path)


def test_an_archive_of_the_first_format_is_refused_by_name(tmp_path: Path) -> None:
    path = tmp_path / "old.tar.zst"
    path.write_bytes(zstandard.ZstdCompressor().compress(b"a whole tar, compressed"))
    with pytest.raises(BackupError, match="backup format 1"):
        verify_archive(path)


# --- decompression bombs and lying manifests ---------------------------------------------------------------------

TRUSTING = Limits(max_ratio=1e12)  # the expansion limit raised, as --max-expansion-ratio does: the other bounds hold


def test_a_part_that_would_expand_thousands_of_times_is_refused_before_anything_is_decompressed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bomb = one_line_bomb(tmp_path / "bomb.tar")  # 140 KiB, 4 GiB once decompressed, the manifest honest
    assert bomb.stat().st_size < 200 * 1024
    decompressed: list[int] = []
    monkeypatch.setattr(zstandard.ZstdDecompressor, "stream_reader",
                        lambda *args, **kwargs: decompressed.append(1) or pytest.fail("decompressed"))

    with pytest.raises(BackupError, match=r"would decompress from 1\d\d,\d{3} to 4,294,967,296 bytes .*"
                                          r"--max-expansion-ratio"):
        verify_archive(bomb)
    assert decompressed == []


def test_with_the_ratio_raised_a_single_endless_line_is_refused_at_the_row_limit(tmp_path: Path) -> None:
    bomb = one_line_bomb(tmp_path / "bomb.tar")
    with pytest.raises(BackupError, match="a row longer than 67,108,864 bytes"):
        verify_archive(bomb, limits=TRUSTING)
    with pytest.raises(BackupError, match="a row longer than"):
        unpack(bomb, tmp_path / "out", limits=TRUSTING)


def test_many_small_frames_are_counted_as_one_part(tmp_path: Path) -> None:
    bomb = table_bomb(tmp_path / "frames.tar", b"[1]\n", 4_000)  # 4,000 frames of 16 MiB of short rows
    with pytest.raises(BackupError, match="decompression bomb"):
        verify_archive(bomb)


def test_a_part_larger_than_its_manifest_says_stops_at_the_size_the_manifest_gives(tmp_path: Path) -> None:
    lying = table_bomb(tmp_path / "lying.tar", b"[1]\n", 8, raw_size=MiB, rows=MiB // 4)  # 128 MiB in truth
    read: list[int] = []
    with pytest.raises(BackupError, match=f"decompresses to more than {MiB} bytes"):
        verify_archive(lying, progress=_Recording(read))
    assert sum(read) <= MiB


def test_a_part_smaller_than_its_manifest_says_is_refused(tmp_path: Path) -> None:
    short = table_bomb(tmp_path / "short.tar", b"[1]\n", 1, raw_size=FRAME_INPUT * 3)
    with pytest.raises(BackupError, match=f"decompresses to {FRAME_INPUT} bytes, the manifest says"):
        verify_archive(short, limits=TRUSTING)


def test_a_manifest_that_lies_about_a_tables_rows_is_refused(tmp_path: Path) -> None:
    honest_rows = FRAME_INPUT // 4
    lying = table_bomb(tmp_path / "rows.tar", b"[1]\n", 1, rows=honest_rows + 1)
    with pytest.raises(BackupError, match=f"holds {honest_rows:,} rows, the manifest says {honest_rows + 1:,}"):
        verify_archive(lying, limits=TRUSTING)


def test_a_frame_that_asks_for_a_huge_window_is_refused_without_allocating_it(tmp_path: Path) -> None:
    parameters = zstandard.ZstdCompressionParameters.from_level(19, window_log=30, write_content_size=0,
                                                                write_checksum=1)
    out = io.BytesIO()
    with zstandard.ZstdCompressor(compression_params=parameters).stream_writer(out, closefd=False) as writer:
        writer.write(b"[1]\n")
    assert zstandard.get_frame_parameters(out.getvalue()).window_size == 1 << 30
    greedy = write_archive(tmp_path / "window.tar", {"tables/user.jsonl.zst": (out.getvalue(), 4)},
                           (TableDump("user", 1, (("id", "uuid"),)),))
    with pytest.raises(BackupError, match=r"corrupt or truncated archive .*too much memory"):
        verify_archive(greedy)


def test_a_manifest_nested_beyond_reason_is_refused_as_malformed() -> None:
    with pytest.raises(BackupError, match="malformed"):
        Manifest.from_json(b'{"format": "dblayer-backup", "format_version": 2, "engine": ' + b"[" * 100_000)


@pytest.mark.parametrize("limits", [{"max_ratio": 0.5}, {"max_ratio": float("nan")}, {"max_ratio": True},
                                    {"max_row_bytes": 10}])
def test_limits_below_what_a_real_backup_needs_are_refused(limits: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        Limits(**limits)  # type: ignore[arg-type]


def test_unpacking_into_a_file_system_without_room_is_refused_before_writing(tmp_path: Path) -> None:
    with pytest.raises(DiskFull, match="nothing was changed"):
        check_free_space({tmp_path / "not" / "yet": 1 << 62})
    assert not (tmp_path / "not").exists()


class _Recording:
    """A progress that records the decompressed bytes reported."""

    def __init__(self, into: list[int]) -> None:
        self.into = into

    @contextlib.contextmanager
    def track(self, description: str, total: int | None = None) -> Iterator[Callable[[int], None]]:
        yield self.into.append if description == "decompress" else (lambda _: None)
