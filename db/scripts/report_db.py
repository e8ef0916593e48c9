"""Run a report by name: ``python -m db report signups --start 2026-01-01 --bucket week``.

The reports are ``db.services.report_catalogue``'s (``python -m db report --list``). Without ``save`` a
report is read in a plain session (no write lock on SQLite); with ``save`` the run is stored in ``report_run``.
"""

from __future__ import annotations

from typing import Any

from db.admin_catalog import SYSTEM
from db.layer import Database
from db.services.report_catalogue import REPORTS, Report, ReportResult
from db.services.reports import ReportService

PERIODIC = frozenset(name for name, report in REPORTS.items() if "bucket" in report.parameters)


def available() -> list[Report]:
    """Every report, by name."""
    return [REPORTS[name] for name in sorted(REPORTS)]


def run_report(database: Database, name: str, *, save: bool = False, **parameters: Any) -> ReportResult[Any]:
    """Compute report ``name`` with ``parameters`` (``ValidationError`` for an unknown name or a bad parameter)."""
    ReportService.report(name)  # an unknown name fails before connecting
    if save:
        with database.unit_of_work(actor=SYSTEM) as uow:
            return uow.reports.run(name, save=True, **parameters)
    with database.session() as session:
        return ReportService(session).run(name, **parameters)


if __name__ == "__main__":
    from db.cli import run_script

    run_script("report")
