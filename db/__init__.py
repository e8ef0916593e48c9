"""A database layer for Python applications: SQLAlchemy 2, repositories, units of work, migrations.

    from db import Database
    database = Database()                      # DATABASE_URL, else the SQLite file db/data/app.db
    with database.unit_of_work() as uow:
        ...                                    # commit on success, rollback on an exception

Importing ``db`` loads the errors only; every other name is imported on first use (PEP 562), so ``import db`` does
not load SQLAlchemy's engines, argon2, the file-type sniffer or the storage backends. ``Database`` and
``UnitOfWork`` are the layer's (``db.layer``: the generic core of ``db.session`` with the layer's services).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from db.errors import (
    AuditKeyError,
    AuditTampered,
    AuthenticationError,
    Conflict,
    DatabaseError,
    DatabaseUnavailable,
    DiskFull,
    InvalidFilter,
    NotFound,
    PermissionDenied,
    QuotaExceeded,
    SchemaMissing,
    StaleVersion,
    StorageMismatch,
    TokenError,
    TransientError,
    ValidationError,
)

if TYPE_CHECKING:
    from db.layer import Database, UnitOfWork
    from db.repositories import BaseRepository, Page

_LAZY = {
    "BaseRepository": "db.repositories",
    "Page": "db.repositories",
    "Database": "db.layer",
    "UnitOfWork": "db.layer",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'db' has no attribute {name!r}")


__all__ = [
    "AuditKeyError",
    "AuditTampered",
    "AuthenticationError",
    "BaseRepository",
    "Conflict",
    "Database",
    "DatabaseError",
    "DatabaseUnavailable",
    "DiskFull",
    "InvalidFilter",
    "NotFound",
    "Page",
    "PermissionDenied",
    "QuotaExceeded",
    "SchemaMissing",
    "StaleVersion",
    "StorageMismatch",
    "TokenError",
    "TransientError",
    "UnitOfWork",
    "ValidationError",
]
