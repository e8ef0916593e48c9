"""Column types and table options that differ per engine, declared once for every model (``db.base`` uses them).

A type's per-engine form is SQLAlchemy's own variant mechanism (``with_variant``); a table's per-engine options are
its dialect-prefixed keyword arguments.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, Integer, Text
from sqlalchemy.dialects import mysql

BIG_INTEGER = BigInteger().with_variant(Integer(), "sqlite")  # SQLite autoincrements INTEGER keys only

# MariaDB's TEXT holds 64 KiB; LONG_TEXT is LONGTEXT there (4 GiB), plain text elsewhere.
LONG_TEXT = Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")

# MariaDB's default collation compares case- and trailing-space-insensitively, so 'Ada' = 'ada' there and
# nowhere else. A binary NO PAD collation ('a' != 'a ') makes equality, uniqueness and ordering the same on
# all three engines.
TABLE_OPTIONS: dict[str, Any] = {
    "mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin",
    "mariadb_charset": "utf8mb4", "mariadb_collate": "utf8mb4_nopad_bin",
}


def text_byte_limit(type_: Any) -> int | None:
    """The bytes MariaDB's TEXT type behind a length-less text column holds (None: a VARCHAR, counted in characters).

    Plain ``Text`` is MariaDB's TEXT (64 KiB); a model that needs more uses a MEDIUMTEXT or LONGTEXT variant
    (``LONG_TEXT``). The layer refuses a longer value on every engine, so that every engine stores the same.
    """
    variants = getattr(type_, "_variant_mapping", {})
    own = variants.get("mariadb") or variants.get("mysql") or type_
    if isinstance(own, mysql.LONGTEXT):
        return 2**32 - 1
    if isinstance(own, mysql.MEDIUMTEXT):
        return 2**24 - 1
    if isinstance(own, mysql.TINYTEXT):
        return 2**8 - 1
    if isinstance(own, Text) and getattr(own, "length", None) is None:
        return 2**16 - 1
    return None
