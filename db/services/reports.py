"""``ReportService`` (``uow.reports``): analytics computed by the database, exported as CSV or JSON, and saved runs.

    with database.unit_of_work(actor=admin) as uow:
        rows = uow.reports.signups(start=jan_1, end=feb_1, bucket="week")   # [PeriodCount('2024-01-01', 12), ...]
        result = uow.reports.run("logins", start=jan_1, end=feb_1, bucket="day", save=True)
        result.to_csv(), result.to_json()
        page = uow.reports.history("logins")                                 # newest first, keyset-paged
        again = uow.reports.saved(page.items[0].id)                          # the stored result, not recomputed

**Reports** (``REPORTS`` in ``db.services.report_catalogue``, with the row types and the exports; each is a method
of the same name and a name for ``run``):

========================== ============================================= =======================================
name                       parameters                                    rows
========================== ============================================= =======================================
signups                    start, end, bucket                            PeriodCount: users created
active_users               start, end, bucket                            PeriodCount: distinct users who logged in
logins                     start, end, bucket                            LoginActivity: successes, failures,
                                                                         lockouts
audit_by_period            start, end, bucket, kind=None                 PeriodCount: audit entries
audit_by_action            start, end, kind=None                         ActionCount
audit_by_actor             start, end, kind=None                         ActorCount (actor None: no actor)
accounts_by_plan           (none)                                        PlanStatusCount
storage_by_account         (none)                                        AccountStorage
storage_by_content_type    account_id=None                               ContentTypeStorage
top_uploaders              limit=10, by="bytes", account_id=None,        Uploader
                           start=None, end=None
========================== ============================================= =======================================

**Rules**, the same on every engine:

- Everything is aggregated by the database in one statement; Python only builds the (few) result rows.
- A time range is ``start <= created_at < end``, both timezone-aware (``ValidationError`` otherwise), in UTC.
- Buckets are calendar days, ISO weeks (Monday to Sunday) and months in UTC, labelled by the ISO date of their
  first day ('2024-01-01'), computed by the engine (``db.dialects.time_bucket``). The first and last buckets may
  be partial: a range starting on a Wednesday has its first week labelled with the Monday before. A bucket
  without rows is omitted (a period with no sign-ups is no row, not a zero row): the rows say what happened.
- Sign-ups count every user created in the range, soft-deleted ones too (they did sign up). Logins come from the
  audit log's events: ``login.success`` (active users are distinct users with one), ``login.failure`` (unknown
  emails included), ``user.locked``.
- Storage and top uploaders count files that are not soft-deleted: the bytes still held. Top uploaders count
  files with an owner only; ``start``/``end`` narrow them to files created in that range.
- Accounts per plan and status count accounts that are not soft-deleted.
- Ties are broken by the text or id, compared by code point on every engine; rows come in a fixed order.

**Exports.** ``to_csv(rows)`` (RFC 4180: a header, CRLF line ends; a text value starting with ``=``, ``+``,
``-``, ``@``, tab or carriage return is prefixed with ``'`` so a spreadsheet does not run it as a formula) and
``to_json(rows)`` (an array of objects, fields in declaration order, ids as text). ``ReportResult`` has both.

**Saved runs.** ``run(name, save=True, **parameters)`` stores the name, the canonical JSON of the checked
parameters (defaults filled in, datetimes in UTC), when it started, how long it took, the row count, the JSON
export and the unit of work's actor in ``report_run`` (``ReportRunRepository``). ``history(name)`` lists them
newest first, keyset-paged (the results are not loaded); ``saved(run_id)`` gives a past run's ``ReportResult``
back from the stored JSON.

Reads only: for reports without ``save`` a plain ``database.session()`` with ``ReportService(session)`` does not
take SQLite's write lock as a unit of work does.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import json
import time
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Select

from db import audit, dialects
from db.errors import NotFound, ValidationError
from db.models.base import utcnow
from db.models.report_run import ReportRun
from db.repositories.base_repository import translated
from db.repositories.report_run_repository import ReportRunRepository
from db.repositories.rules import Page
from db.services import report_catalogue as catalogue
from db.services.base import Service
from db.services.report_catalogue import REPORTS, Params, Report, ReportResult, rows_from_json

# Built statements by (report, engine, shape of the parameters), least recently used first. Bounded: a shape holds
# structural values (a bucket, a kind) that come from callers.
_STATEMENTS: OrderedDict[tuple[Any, ...], Select[Any]] = OrderedDict()
_MAX_STATEMENTS = 512


class ReportService(Service):
    entity = "report_run"  # what a driver error escaping a report is reported against (``translated``)

    @property
    def dialect(self) -> dialects.Dialect:
        return dialects.dialect_of(self.session)

    # --- running, saving, history --------------------------------------------------------------------------------

    @translated
    def run(self, name: str, *, save: bool = False, **parameters: Any) -> ReportResult[Any]:
        """Compute report ``name``; with ``save`` record the run (see the module docstring)."""
        report = self.report(name)
        params = report.check(parameters)
        started, clock = utcnow(), time.perf_counter()
        rows = tuple(self._rows(report, params))
        duration_ms = (time.perf_counter() - clock) * 1000
        saved_parameters = audit.canonical(params)
        result = ReportResult(report.name, json.loads(saved_parameters), rows, report.row_type, started,
                              duration_ms, actor=audit.actor_of(self.session))
        if not save:
            return result
        run = self._runs.create(name=report.name, parameters=saved_parameters, started_at=started,
                                duration_ms=duration_ms, row_count=len(rows), result=result.to_json(),
                                actor=result.actor)
        return dataclasses.replace(result, run_id=run.id)

    def history(self, name: str, *, size: int = 50, after: str | None = None) -> Page[ReportRun]:
        """Saved runs of report ``name``, newest first, keyset-paged; their results are not loaded."""
        self.report(name)
        return self._runs.page(filters={"name": name}, order_by=["-started_at"], size=size, after=after)

    @translated
    def saved(self, run_id: Any) -> ReportResult[Any]:
        """A saved run's result as it was stored: nothing is recomputed."""
        run = self._runs.get_by_id(run_id)
        if run is None:
            raise NotFound(self._runs.entity, run_id)
        report = self.report(run.name)
        rows = tuple(rows_from_json(run.result, report.row_type))
        return ReportResult(run.name, json.loads(run.parameters), rows, report.row_type, run.started_at,
                            run.duration_ms, run.id, run.actor)

    @classmethod
    def report(cls, name: Any) -> Report:
        """The report called ``name``; ``ValidationError`` for a name no report has."""
        if not isinstance(name, str) or name not in REPORTS:
            raise ValidationError(f"no report is called {str(name)[:64]!r}; the reports are "
                                  f"{', '.join(sorted(REPORTS))}", field="name", rule="unknown_report")
        return REPORTS[name]

    @functools.cached_property
    def _runs(self) -> ReportRunRepository:
        return ReportRunRepository(self.session)

    @translated
    def _rows(self, report: Report, params: Params) -> list[Any]:
        make = report.row_type
        statement = self._statement(report, params)
        return [make(*row) for row in self.session.execute(statement, report.bound(params)).all()]

    def _statement(self, report: Report, params: Params) -> Select[Any]:
        """The report's statement for this engine and these parameters' shape, built once and then reused.

        Values are bound at execution (``bindparam``), so one statement serves every range, limit and id: a
        report's cost is its query, not the building of SQLAlchemy constructs.
        """
        key = (report.name, self.dialect, report.shape(params))
        statement = _STATEMENTS.get(key)
        if statement is None:
            statement = report.statement(self.dialect, params)
            _STATEMENTS[key] = statement
            if len(_STATEMENTS) > _MAX_STATEMENTS:
                _STATEMENTS.popitem(last=False)
        else:
            _STATEMENTS.move_to_end(key)
        return statement

    def _compute(self, name: str, parameters: Mapping[str, Any]) -> list[Any]:
        report = self.report(name)
        return self._rows(report, report.check(parameters))

    # --- the reports, one method each --------------------------------------------------------------------------

    def signups(self, *, start: dt.datetime, end: dt.datetime, bucket: str = "day") -> list[catalogue.PeriodCount]:
        return self._compute("signups", {"start": start, "end": end, "bucket": bucket})

    def active_users(
        self, *, start: dt.datetime, end: dt.datetime, bucket: str = "day"
    ) -> list[catalogue.PeriodCount]:
        return self._compute("active_users", {"start": start, "end": end, "bucket": bucket})

    def logins(self, *, start: dt.datetime, end: dt.datetime, bucket: str = "day") -> list[catalogue.LoginActivity]:
        return self._compute("logins", {"start": start, "end": end, "bucket": bucket})

    def audit_by_period(
        self, *, start: dt.datetime, end: dt.datetime, bucket: str = "day", kind: str | None = None
    ) -> list[catalogue.PeriodCount]:
        return self._compute("audit_by_period", {"start": start, "end": end, "bucket": bucket, "kind": kind})

    def audit_by_action(
        self, *, start: dt.datetime, end: dt.datetime, kind: str | None = None
    ) -> list[catalogue.ActionCount]:
        return self._compute("audit_by_action", {"start": start, "end": end, "kind": kind})

    def audit_by_actor(
        self, *, start: dt.datetime, end: dt.datetime, kind: str | None = None
    ) -> list[catalogue.ActorCount]:
        return self._compute("audit_by_actor", {"start": start, "end": end, "kind": kind})

    def accounts_by_plan(self) -> list[catalogue.PlanStatusCount]:
        return self._compute("accounts_by_plan", {})

    def storage_by_account(self) -> list[catalogue.AccountStorage]:
        return self._compute("storage_by_account", {})

    def storage_by_content_type(self, *, account_id: Any = None) -> list[catalogue.ContentTypeStorage]:
        return self._compute("storage_by_content_type", {"account_id": account_id})

    def top_uploaders(
        self, *, limit: int = 10, by: str = "bytes", account_id: Any = None, start: dt.datetime | None = None,
        end: dt.datetime | None = None,
    ) -> list[catalogue.Uploader]:
        params = {"limit": limit, "by": by, "account_id": account_id, "start": start, "end": end}
        return self._compute("top_uploaders", params)


__all__ = ["ReportService"]
