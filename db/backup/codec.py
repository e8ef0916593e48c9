"""Rows in the archive, engine-neutral: each column has a tag (``TAGS``) taken from the model's column type.

In JSON lines, datetimes are ISO-8601 UTC strings, UUIDs their canonical text, Decimals text, bytes base64; other
values are plain JSON. The same tags give the Core types that read a SQLite snapshot and write into any engine, so
a backup restores into SQLite, PostgreSQL or MariaDB alike.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import sqlite3
import urllib.parse
import uuid
from collections.abc import Callable, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Double,
    Float,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    Uuid,
    create_engine,
)
from sqlalchemy.engine import Engine
from sqlalchemy.pool import NullPool
from sqlalchemy.types import TypeEngine

from db.backup.sizes import MAX_ROW_BYTES
from db.base import UTCDateTime
from db.errors import BackupError

TAGS: dict[str, Callable[[], TypeEngine[Any]]] = {
    "datetime": UTCDateTime,
    "uuid": Uuid,
    "bool": Boolean,
    "int": BigInteger,
    "float": Double,
    "decimal": lambda: Numeric(asdecimal=True),
    "json": JSON,
    "bytes": LargeBinary,
    "str": Text,
}


def type_tag(column_type: TypeEngine[Any]) -> str:
    """The tag of a column type; ``BackupError`` for a type this format cannot carry faithfully."""
    # Order matters: Double is a Float is a Numeric; UTCDateTime decorates DateTime.
    kinds: tuple[tuple[type[Any], str], ...] = (
        (UTCDateTime, "datetime"), (DateTime, "datetime"), (Uuid, "uuid"), (Boolean, "bool"), (Integer, "int"),
        (Float, "float"), (Numeric, "decimal"), (JSON, "json"), (LargeBinary, "bytes"), (String, "str"),
    )
    for kind, tag in kinds:
        if isinstance(column_type, kind):
            return tag
    raise BackupError(f"a column of type {type(column_type).__name__} cannot be backed up by this format")


def typed_table(name: str, columns: Sequence[tuple[str, str]], metadata: MetaData | None = None) -> Table:
    """A Core table with the manifest's columns and their tags' types: reads a snapshot, writes any engine."""
    return Table(name, metadata or MetaData(), *(Column(column, TAGS[tag]()) for column, tag in columns))


def _encode_datetime(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat()


def _encode_bytes(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")


_ENCODERS: dict[str, Callable[[Any], Any]] = {
    "datetime": _encode_datetime, "uuid": str, "decimal": str, "bytes": _encode_bytes,
}
_DECODERS: dict[str, Callable[[Any], Any]] = {
    "datetime": dt.datetime.fromisoformat, "uuid": uuid.UUID, "decimal": Decimal, "bytes": base64.b64decode,
}


def row_encoder(tags: Sequence[str]) -> Callable[[Sequence[Any]], str]:
    """A function turning a row (values in column order) into one JSON line (without the newline)."""
    converters = [(index, _ENCODERS[tag]) for index, tag in enumerate(tags) if tag in _ENCODERS]
    dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode

    def encode(row: Sequence[Any]) -> str:
        values = list(row)
        for index, convert in converters:
            if values[index] is not None:
                values[index] = convert(values[index])
        return dumps(values)

    return encode


def row_decoder(columns: Sequence[tuple[str, str]]) -> Callable[[str | bytes], dict[str, Any]]:
    """The inverse of ``row_encoder``: one JSON line into a mapping of column name to typed value."""
    names = [name for name, _ in columns]
    converters = [(index, _DECODERS[tag]) for index, (_, tag) in enumerate(columns) if tag in _DECODERS]

    def decode(line: str | bytes) -> dict[str, Any]:
        try:
            values = json.loads(line)
        except (ValueError, RecursionError):  # ValueError includes bad JSON and bad UTF-8
            raise BackupError("a row in the archive is not valid JSON") from None
        if not isinstance(values, list) or len(values) != len(names):
            raise BackupError("a row in the archive does not match its table's columns")
        try:
            for index, convert in converters:
                if values[index] is not None:
                    values[index] = convert(values[index])
        except (ValueError, TypeError, AttributeError, ArithmeticError):  # a malformed date, UUID, decimal, base64
            raise BackupError("a row in the archive holds a value its column's type cannot take") from None
        return dict(zip(names, values, strict=True))

    return decode


def snapshot_engine(path: Path, *, max_value_bytes: int = MAX_ROW_BYTES) -> Engine:
    """A read-only engine on a SQLite snapshot file that never changes it (``immutable``: no locks, no journal).

    A value longer than ``max_value_bytes`` is refused when read (SQLite's ``SQLITE_LIMIT_LENGTH``: "string or
    blob too big"), so a crafted snapshot cannot make a reader hold a huge value in memory."""
    uri = f"file:{urllib.parse.quote(str(path.absolute()))}?mode=ro&immutable=1"

    def connect() -> sqlite3.Connection:
        connection = sqlite3.connect(uri, uri=True, check_same_thread=False)
        connection.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, max_value_bytes)
        return connection

    return create_engine("sqlite://", creator=connect, poolclass=NullPool)


__all__ = ["TAGS", "row_decoder", "row_encoder", "snapshot_engine", "type_tag", "typed_table"]
