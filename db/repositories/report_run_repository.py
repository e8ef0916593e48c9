"""``ReportRunRepository``: saved runs of reports (``ReportRun``). Running and saving them is ``uow.reports``'s
(``db.services.reports``); listing them by report is its ``history``."""

from __future__ import annotations

from db.models.report_run import ReportRun
from db.repositories.base_repository import WriteRepository


class ReportRunRepository(WriteRepository[ReportRun]):
    model = ReportRun
    filterable = frozenset({"id", "name", "started_at", "duration_ms", "row_count", "actor"})
    sortable = frozenset({"id", "name", "started_at", "duration_ms", "row_count"})


__all__ = ["ReportRunRepository"]
