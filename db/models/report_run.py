"""A saved run of a report: what was asked (name, canonical parameters), when, by whom, how long it took, and its
result, so that history can be listed and a past result shown again without recomputing it.

The result is the report's JSON export, stored as text (LONGTEXT on MariaDB, whose TEXT stops at 64 KB). It is
loaded only when asked for (``deferred``): listing the history reads the small columns alone.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from db.base import LONG_TEXT, TABLE_OPTIONS, Base
from db.models.base import UUIDPrimaryKey

NAME_MAX_LENGTH = 64


class ReportRun(UUIDPrimaryKey, Base):
    __tablename__ = "report_run"
    __table_args__ = (
        Index("ix_report_run_name_started_at", "name", "started_at"),  # history(name), newest first
        TABLE_OPTIONS,
    )

    name: Mapped[str] = mapped_column(String(NAME_MAX_LENGTH))
    parameters: Mapped[str] = mapped_column(Text)  # canonical JSON: sorted keys, datetimes in UTC
    started_at: Mapped[dt.datetime]
    duration_ms: Mapped[float]
    row_count: Mapped[int]
    result: Mapped[str] = mapped_column(LONG_TEXT, deferred=True)  # the JSON export of the rows
    actor: Mapped[str | None] = mapped_column(String(64))


__all__ = ["NAME_MAX_LENGTH", "ReportRun"]
