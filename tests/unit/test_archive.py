"""The archive format without a database: typed row encoding, type tags, manifest checks, member names."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import uuid
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import JSON, BigInteger, Boolean, Double, LargeBinary, Numeric, String, Text, Uuid
from sqlalchemy.types import ARRAY, Integer

from db.base import UTCDateTime
from db.errors import BackupError
from db.scripts.archive import (
    ArchiveWriter,
    Manifest,
    TableDump,
    row_decoder,
    row_encoder,
    type_tag,
    unpack,
    verify_archive,
)

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


def _write(path: Path, parts: dict[str, bytes], manifest: Manifest | None) -> Path:
    with path.open("wb") as out:
        writer = ArchiveWriter(out)
        for name, data in parts.items():
            writer.add(name, len(data), io.BytesIO(data))
        if manifest is not None:
            listed = Manifest(engine=manifest.engine, revision=manifest.revision, created_at=manifest.created_at,
                              database=manifest.database, tables=manifest.tables, parts=tuple(writer.parts))
            writer.close(listed)
    return path


def test_an_archive_round_trips_and_extracts_only_under_its_directory(tmp_path: Path) -> None:
    archive = _write(tmp_path / "a.tar.zst", {"tables/user.jsonl": b"", "blobs/" + "ab" * 32: b"x"},
                     _manifest(engine="postgresql"))
    with pytest.raises(BackupError, match="under another hash"):
        verify_archive(archive)
    key = hashlib.sha256(b"x").hexdigest()
    archive = _write(tmp_path / "b.tar.zst", {"tables/user.jsonl": b"", f"blobs/{key}": b"x"},
                     _manifest(engine="postgresql"))
    manifest = unpack(archive, tmp_path / "out")
    assert manifest.blob_count == 1 and manifest.blob_bytes == 1
    assert sorted(str(p.relative_to(tmp_path / "out")) for p in (tmp_path / "out").rglob("*") if p.is_file()) == [
        f"blobs/{key}", "tables/user.jsonl"]


def test_a_logical_dump_must_have_one_part_per_table(tmp_path: Path) -> None:
    archive = _write(tmp_path / "a.tar.zst", {}, _manifest(engine="mariadb"))
    with pytest.raises(BackupError, match="one data part per table"):
        verify_archive(archive)


@pytest.mark.parametrize("document", [
    b"not json", b"[]", json.dumps({"format": "other"}).encode(),
    json.dumps({"format": "dblayer-backup", "format_version": 99}).encode(),
    json.dumps({"format": "dblayer-backup", "format_version": 1, "engine": "sqlite"}).encode(),
])
def test_a_malformed_manifest_is_refused(document: bytes) -> None:
    with pytest.raises(BackupError):
        Manifest.from_json(document)


def test_a_manifest_with_a_hostile_table_name_is_refused() -> None:
    document = json.loads(_manifest().to_json())
    document["tables"][0]["name"] = "user; DROP TABLE x"
    with pytest.raises(BackupError, match="malformed"):
        Manifest.from_json(json.dumps(document).encode())


def test_a_file_that_is_not_an_archive_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "x.tar.zst"
    path.write_bytes(b"\x28\xb5\x2f\xfd" + bytes(100))
    with pytest.raises(BackupError, match="corrupt or truncated"):
        verify_archive(path)
