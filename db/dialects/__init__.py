"""Everything that differs between SQLite, PostgreSQL and MariaDB lives in this package, and only here.

One class per engine (``sqlite.SQLite``, ``postgresql.PostgreSQL``, ``mariadb.MariaDB``) implements the interface
of ``base.Dialect``; ``dialect_of(engine_or_connection_or_session)`` finds it, importing that engine's module on
first use only. SQL that differs is a construct
compiled per engine (``sql.time_bucket``); driver errors become ``db.errors`` in ``translation``; the audit log's
guards are in ``audit_sql``. Code outside this package never asks which engine it runs on.
"""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import exc
from sqlalchemy.engine import URL, make_url

from db import errors
from db.dialects.audit_sql import APPEND_ONLY_TABLES, HEAD_KEPT_TRIGGER, SEQ_GUARD_TRIGGERS
from db.dialects.base import EXCLUDED, RESTORE_TOKEN, Dialect, all_dialects, dialect_named, dialect_of
from db.dialects.sql import BUCKETS, time_bucket
from db.dialects.translation import domain_error, is_audit_seq_clash, is_disk_full, is_transient

DEFAULT_SQLITE_PATH = Path(__file__).resolve().parent.parent / "data" / "app.db"

__all__ = [
    "APPEND_ONLY_TABLES",
    "BUCKETS",
    "DEFAULT_SQLITE_PATH",
    "EXCLUDED",
    "HEAD_KEPT_TRIGGER",
    "RESTORE_TOKEN",
    "SEQ_GUARD_TRIGGERS",
    "Dialect",
    "all_dialects",
    "backend_name",
    "dialect_named",
    "dialect_of",
    "domain_error",
    "is_audit_seq_clash",
    "is_disk_full",
    "is_transient",
    "resolve_url",
    "time_bucket",
]


def backend_name(url: URL) -> str:
    """The engine's name as the URL spells it (``sqlite``, ``postgresql``, ``mariadb`` or ``mysql``), for display."""
    return url.get_backend_name()


def resolve_url(url: str | URL | None) -> URL:
    """The URL from the argument, else ``DATABASE_URL``, else the SQLite file ``db/data/app.db``; with this layer's
    driver and connection defaults for its engine."""
    raw = url if url is not None else os.environ.get("DATABASE_URL") or None
    if raw is None:
        return make_url(f"sqlite:///{DEFAULT_SQLITE_PATH}")
    try:
        parsed = make_url(raw)
    except (exc.ArgumentError, ValueError):  # ValueError: a port that is not a number
        # The text is not echoed: a malformed URL may still hold a password.
        raise errors.DatabaseUnavailable(
            "not a database URL (expected e.g. postgresql://user:password@host/name or sqlite:///path.db)"
        ) from None
    try:
        return dialect_of(parsed).normalized_url(parsed)
    except errors.DatabaseUnavailable:  # an engine this layer does not support: create_engine will say so
        return parsed
