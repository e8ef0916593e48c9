"""``uow.reports``: analytics computed by the database, exported as CSV or JSON, and saved runs.

    with database.unit_of_work(actor=admin) as uow:
        rows = uow.reports.signups(start=jan_1, end=feb_1, bucket="week")   # [PeriodCount('2024-01-01', 12), ...]
        result = uow.reports.run("logins", start=jan_1, end=feb_1, bucket="day", save=True)
        result.to_csv(), result.to_json()
        page = uow.reports.history("logins")                                 # newest first, keyset-paged
        again = uow.reports.saved(page.items[0].id)                          # the stored result, not recomputed

**Reports** (``REPORTS``; each is a method of the same name and a name for ``run``):

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
export and the unit of work's actor in ``report_run``. ``history(name)`` lists them newest first, keyset-paged
(the results are not loaded); ``saved(run_id)`` gives a past run's ``ReportResult`` back from the stored JSON.

Reads only: for reports without ``save`` a plain ``database.session()`` with ``ReportRepository(session)`` does
not take SQLite's write lock as a unit of work does.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import io
import json
import time
import typing
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar, cast

from sqlalchemy import BigInteger, ColumnElement, Integer, Select, Table, bindparam, case, func, select
from sqlalchemy import cast as sql_cast

from db import audit, dialects
from db.errors import NotFound, ValidationError
from db.models.account import Account
from db.models.base import utcnow
from db.models.file_object import StoredFile
from db.models.log_audit import AuditEntry
from db.models.report_run import ReportRun
from db.models.user import User
from db.repositories.base_repository import BaseRepository, Page, translated

RowT = TypeVar("RowT")

MAX_LIMIT = 1_000
LOGIN_SUCCESS, LOGIN_FAILURE, USER_LOCKED = "login.success", "login.failure", "user.locked"
AUDIT_KINDS = ("event", "change")
UPLOADER_ORDER = ("bytes", "files")
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


# --- rows ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PeriodCount:
    period: str  # the ISO date of the bucket's first day
    count: int


@dataclass(frozen=True, slots=True)
class LoginActivity:
    period: str
    successes: int
    failures: int
    lockouts: int


@dataclass(frozen=True, slots=True)
class ActionCount:
    action: str
    count: int


@dataclass(frozen=True, slots=True)
class ActorCount:
    actor: str | None  # a user's id, a label such as "system", or None
    count: int


@dataclass(frozen=True, slots=True)
class PlanStatusCount:
    plan: str
    status: str
    count: int


@dataclass(frozen=True, slots=True)
class AccountStorage:
    account_id: uuid.UUID
    slug: str
    file_count: int
    total_bytes: int
    quota_bytes: int


@dataclass(frozen=True, slots=True)
class ContentTypeStorage:
    content_type: str
    file_count: int
    total_bytes: int


@dataclass(frozen=True, slots=True)
class Uploader:
    owner_id: uuid.UUID
    file_count: int
    total_bytes: int


# --- exports ---------------------------------------------------------------------------------------------------


def to_csv(rows: Sequence[Any], row_type: type[Any] | None = None) -> str:
    """RFC 4180 CSV with a header row (``row_type`` gives the header when ``rows`` is empty)."""
    kind = row_type or (type(rows[0]) if rows else None)
    if kind is None:
        return ""
    names = [field.name for field in dataclasses.fields(kind)]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(names)
    writer.writerows([_csv_cell(getattr(row, name)) for name in names] for row in rows)
    return out.getvalue()


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, str):
        return "'" + value if value.startswith(_FORMULA_STARTS) else value
    return str(value) if isinstance(value, uuid.UUID) else value


def to_json(rows: Sequence[Any]) -> str:
    """A JSON array of objects, one per row, fields in declaration order, ids as text."""
    items = [{field.name: audit.jsonable(getattr(row, field.name)) for field in dataclasses.fields(row)}
             for row in rows]
    return json.dumps(items, ensure_ascii=False, separators=(",", ":"))


def rows_from_json(text: str, row_type: type[RowT]) -> list[RowT]:
    """The rows ``to_json`` wrote, as ``row_type`` again."""
    hints = typing.get_type_hints(row_type)
    convert = {name: _uuid_or_none if uuid.UUID in typing.get_args(hint) or hint is uuid.UUID else _same
               for name, hint in hints.items()}
    return [row_type(**{name: convert[name](value) for name, value in item.items()}) for item in json.loads(text)]


def _uuid_or_none(value: Any) -> uuid.UUID | None:
    return None if value is None else uuid.UUID(value)


def _same(value: Any) -> Any:
    return value


@dataclass(frozen=True, slots=True)
class ReportResult(Generic[RowT]):
    """A report's rows with what produced them; ``run_id`` is set once the run is saved."""

    name: str
    parameters: Mapping[str, Any]  # as saved: JSON values, datetimes as ISO text in UTC
    rows: tuple[RowT, ...]
    row_type: type[RowT]
    started_at: dt.datetime
    duration_ms: float
    run_id: uuid.UUID | None = None
    actor: str | None = None

    @property
    def row_count(self) -> int:
        return len(self.rows)

    def to_csv(self) -> str:
        return to_csv(self.rows, self.row_type)

    def to_json(self) -> str:
        return to_json(self.rows)


# --- parameters ------------------------------------------------------------------------------------------------

REQUIRED: Any = object()


def _aware(name: str, value: Any) -> dt.datetime:
    if not isinstance(value, dt.datetime):
        raise ValidationError(f"report parameter {name} must be a datetime", field=name, rule="type")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValidationError(f"report parameter {name} must be timezone-aware", field=name, rule="timezone")
    return value.astimezone(dt.UTC)


def _optional_aware(name: str, value: Any) -> dt.datetime | None:
    return None if value is None else _aware(name, value)


def _one_of(choices: Sequence[str], *, optional: bool = False) -> Callable[[str, Any], str | None]:
    def check(name: str, value: Any) -> str | None:
        if optional and value is None:
            return None
        if not isinstance(value, str) or value not in choices:
            raise ValidationError(f"report parameter {name} must be one of {', '.join(choices)}", field=name,
                                  rule="choice")
        return value

    return check


def _limit(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_LIMIT:
        raise ValidationError(f"report parameter {name} must be an integer from 1 to {MAX_LIMIT}", field=name,
                              rule="range")
    return value


def _optional_id(name: str, value: Any) -> uuid.UUID | None:
    value = getattr(value, "id", value)
    if value is None or isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(value) if isinstance(value, str) else _bad_id(name)
    except ValueError:
        return _bad_id(name)


def _bad_id(name: str) -> typing.NoReturn:
    raise ValidationError(f"report parameter {name} must be an id (a UUID)", field=name, rule="type")


_CHECKS: dict[str, Callable[[str, Any], Any]] = {
    "start": _aware, "end": _aware, "bucket": _one_of(dialects.BUCKETS), "kind": _one_of(AUDIT_KINDS, optional=True),
    "limit": _limit, "by": _one_of(UPLOADER_ORDER), "account_id": _optional_id,
}
_OPTIONAL_RANGE = {"start": _optional_aware, "end": _optional_aware}

Params = dict[str, Any]
_STRUCTURAL = frozenset({"bucket", "by"})  # shape the statement; the other parameters are bound values


@dataclass(frozen=True, slots=True)
class Report:
    """A report's name, its row type, its parameters (name → default, ``REQUIRED``) and its statement."""

    name: str
    row_type: type[Any]
    parameters: Mapping[str, Any]
    statement: Callable[[ReportRepository, Params], Select[Any]]
    description: str

    def check(self, given: Mapping[str, Any]) -> Params:
        """The parameters checked and completed with defaults; refused with ``ValidationError`` before any SQL."""
        for key in given:
            if key not in self.parameters:
                name = str(key)[:64]
                raise ValidationError(f"report {self.name} takes no parameter {name!r}", field=name,
                                      rule="unknown_parameter")
        params: Params = {}
        for key, default in self.parameters.items():
            if key not in given and default is REQUIRED:
                raise ValidationError(f"report {self.name} needs parameter {key}", field=key, rule="required")
            value = given.get(key, default)
            check = _OPTIONAL_RANGE[key] if default is None and key in _OPTIONAL_RANGE else _CHECKS[key]
            params[key] = check(key, value)
        start, end = params.get("start"), params.get("end")
        if start is not None and end is not None and not start < end:
            raise ValidationError(f"report {self.name}: start must be before end", field="end", rule="range")
        return params


# --- the repository --------------------------------------------------------------------------------------------


# Built statements by (report, engine, shape of the parameters), least recently used first. Bounded: a shape holds
# structural values (a bucket, a kind) that come from callers.
_STATEMENTS: OrderedDict[tuple[Any, ...], Select[Any]] = OrderedDict()
_MAX_STATEMENTS = 512


class ReportRepository(BaseRepository[ReportRun]):
    model = ReportRun
    filterable = frozenset({"id", "name", "started_at", "duration_ms", "row_count", "actor"})
    sortable = frozenset({"id", "name", "started_at", "duration_ms", "row_count"})
    reports: ClassVar[dict[str, Report]] = {}

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
        run = self.create(name=report.name, parameters=saved_parameters, started_at=started,
                          duration_ms=duration_ms, row_count=len(rows), result=result.to_json(), actor=result.actor)
        return dataclasses.replace(result, run_id=run.id)

    def history(self, name: str, *, size: int = 50, after: str | None = None) -> Page[ReportRun]:
        """Saved runs of report ``name``, newest first, keyset-paged; their results are not loaded."""
        self.report(name)
        return self.page(filters={"name": name}, order_by=["-started_at"], size=size, after=after)

    @translated
    def saved(self, run_id: Any) -> ReportResult[Any]:
        """A saved run's result as it was stored: nothing is recomputed."""
        run = self.get_by_id(run_id)
        if run is None:
            raise NotFound(self.entity, run_id)
        report = self.report(run.name)
        rows = tuple(rows_from_json(run.result, report.row_type))
        return ReportResult(run.name, json.loads(run.parameters), rows, report.row_type, run.started_at,
                            run.duration_ms, run.id, run.actor)

    @classmethod
    def report(cls, name: Any) -> Report:
        """The report called ``name``; ``ValidationError`` for a name no report has."""
        if not isinstance(name, str) or name not in cls.reports:
            raise ValidationError(f"no report is called {str(name)[:64]!r}; the reports are "
                                  f"{', '.join(sorted(cls.reports))}", field="name", rule="unknown_report")
        return cls.reports[name]

    @translated
    def _rows(self, report: Report, params: Params) -> list[Any]:
        make = report.row_type
        statement = self._statement(report, params)
        values = {key: value for key, value in params.items() if value is not None and key not in _STRUCTURAL}
        return [make(*row) for row in self.session.execute(statement, values).all()]

    def _statement(self, report: Report, params: Params) -> Select[Any]:
        """The report's statement for this engine and these parameters' shape, built once and then reused.

        Values are bound at execution (``bindparam``), so one statement serves every range, limit and id: a
        report's cost is its query, not the building of SQLAlchemy constructs.
        """
        shape = tuple((key, value if key in _STRUCTURAL else value is None) for key, value in params.items())
        key = (report.name, self.dialect, shape)
        statement = _STATEMENTS.get(key)
        if statement is None:
            statement = report.statement(self, params)
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

    def signups(self, *, start: dt.datetime, end: dt.datetime, bucket: str = "day") -> list[PeriodCount]:
        return self._compute("signups", {"start": start, "end": end, "bucket": bucket})

    def active_users(self, *, start: dt.datetime, end: dt.datetime, bucket: str = "day") -> list[PeriodCount]:
        return self._compute("active_users", {"start": start, "end": end, "bucket": bucket})

    def logins(self, *, start: dt.datetime, end: dt.datetime, bucket: str = "day") -> list[LoginActivity]:
        return self._compute("logins", {"start": start, "end": end, "bucket": bucket})

    def audit_by_period(
        self, *, start: dt.datetime, end: dt.datetime, bucket: str = "day", kind: str | None = None
    ) -> list[PeriodCount]:
        return self._compute("audit_by_period", {"start": start, "end": end, "bucket": bucket, "kind": kind})

    def audit_by_action(self, *, start: dt.datetime, end: dt.datetime, kind: str | None = None) -> list[ActionCount]:
        return self._compute("audit_by_action", {"start": start, "end": end, "kind": kind})

    def audit_by_actor(self, *, start: dt.datetime, end: dt.datetime, kind: str | None = None) -> list[ActorCount]:
        return self._compute("audit_by_actor", {"start": start, "end": end, "kind": kind})

    def accounts_by_plan(self) -> list[PlanStatusCount]:
        return self._compute("accounts_by_plan", {})

    def storage_by_account(self) -> list[AccountStorage]:
        return self._compute("storage_by_account", {})

    def storage_by_content_type(self, *, account_id: Any = None) -> list[ContentTypeStorage]:
        return self._compute("storage_by_content_type", {"account_id": account_id})

    def top_uploaders(
        self, *, limit: int = 10, by: str = "bytes", account_id: Any = None, start: dt.datetime | None = None,
        end: dt.datetime | None = None,
    ) -> list[Uploader]:
        params = {"limit": limit, "by": by, "account_id": account_id, "start": start, "end": end}
        return self._compute("top_uploaders", params)

    # --- statements ------------------------------------------------------------------------------------------------

    def _bucket(self, column: ColumnElement[Any], unit: str) -> ColumnElement[str]:
        return dialects.time_bucket(column, unit).label("period")

    def _per_period(self, table: Table, params: Params, *measures: ColumnElement[Any],
                    where: Iterable[ColumnElement[bool]] = ()) -> Select[Any]:
        period = self._bucket(table.c.created_at, params["bucket"])
        in_range = (table.c.created_at >= bindparam("start"), table.c.created_at < bindparam("end"))
        return select(period, *measures).where(*where, *in_range).group_by(period).order_by(period)

    def _signups(self, params: Params) -> Select[Any]:
        return self._per_period(_table(User), params, func.count())

    def _active_users(self, params: Params) -> Select[Any]:
        log = _table(AuditEntry)
        return self._per_period(log, params, func.count(log.c.entity_id.distinct()),
                                where=[log.c.action == LOGIN_SUCCESS])

    def _logins(self, params: Params) -> Select[Any]:
        log = _table(AuditEntry)
        counts = [func.count(case((log.c.action == action, 1))) for action in (LOGIN_SUCCESS, LOGIN_FAILURE,
                                                                                USER_LOCKED)]
        return self._per_period(log, params, *counts,
                                where=[log.c.action.in_([LOGIN_SUCCESS, LOGIN_FAILURE, USER_LOCKED])])

    def _audit_where(self, params: Params) -> list[ColumnElement[bool]]:
        log = _table(AuditEntry)
        where = [log.c.created_at >= bindparam("start"), log.c.created_at < bindparam("end")]
        return where + self._kind(params)

    def _kind(self, params: Params) -> list[ColumnElement[bool]]:
        return [] if params["kind"] is None else [_table(AuditEntry).c.kind == bindparam("kind")]

    def _audit_by_period(self, params: Params) -> Select[Any]:
        log = _table(AuditEntry)
        return self._per_period(log, params, func.count(),
                                where=self._kind(params))

    def _audit_by(self, column: ColumnElement[Any], params: Params) -> Select[Any]:
        count = func.count().label("count")
        return (select(column, count).where(*self._audit_where(params)).group_by(column)
                .order_by(count.desc(), self.dialect.text_order(column)))

    def _audit_by_action(self, params: Params) -> Select[Any]:
        return self._audit_by(_table(AuditEntry).c.action, params)

    def _audit_by_actor(self, params: Params) -> Select[Any]:
        return self._audit_by(_table(AuditEntry).c.actor, params)

    def _accounts_by_plan(self, _params: Params) -> Select[Any]:
        accounts = _table(Account)
        plan, status = accounts.c.plan, accounts.c.status
        return (select(plan, status, func.count()).where(accounts.c.deleted_at.is_(None)).group_by(plan, status)
                .order_by(self.dialect.text_order(plan), self.dialect.text_order(status)))

    def _storage_by_account(self, _params: Params) -> Select[Any]:
        files, accounts = _table(StoredFile), _table(Account)
        used = (select(files.c.account_id, func.count().label("file_count"), _total(files).label("total_bytes"))
                .where(files.c.deleted_at.is_(None)).group_by(files.c.account_id).subquery("used"))
        return (select(accounts.c.id, accounts.c.slug, used.c.file_count, used.c.total_bytes,
                       accounts.c.storage_quota_bytes)
                .join_from(used, accounts, accounts.c.id == used.c.account_id)
                .order_by(used.c.total_bytes.desc(), accounts.c.id))

    def _storage_by_content_type(self, params: Params) -> Select[Any]:
        files = _table(StoredFile)
        where: list[ColumnElement[bool]] = [files.c.deleted_at.is_(None)]
        if params["account_id"] is not None:
            where.append(files.c.account_id == bindparam("account_id"))
        total = _total(files).label("total_bytes")
        return (select(files.c.content_type, func.count(), total).where(*where).group_by(files.c.content_type)
                .order_by(total.desc(), self.dialect.text_order(files.c.content_type)))

    def _top_uploaders(self, params: Params) -> Select[Any]:
        files = _table(StoredFile)
        where: list[ColumnElement[bool]] = [files.c.deleted_at.is_(None), files.c.owner_id.is_not(None)]
        for key, bound in (("account_id", files.c.account_id == bindparam("account_id")),
                           ("start", files.c.created_at >= bindparam("start")),
                           ("end", files.c.created_at < bindparam("end"))):
            if params[key] is not None:
                where.append(bound)
        count, total = func.count().label("file_count"), _total(files).label("total_bytes")
        order = [total.desc(), count.desc()] if params["by"] == "bytes" else [count.desc(), total.desc()]
        return (select(files.c.owner_id, count, total).where(*where).group_by(files.c.owner_id)
                .order_by(*order, files.c.owner_id).limit(bindparam("limit", type_=Integer)))


def _table(model: type[Any]) -> Table:
    return cast(Table, model.__table__)


def _total(files: Table) -> ColumnElement[int]:
    """The sum of the sizes as an integer on every engine (PostgreSQL and MariaDB sum BIGINT into DECIMAL)."""
    return sql_cast(func.sum(files.c.size), BigInteger)


def _register(name: str, row_type: type[Any], description: str, **parameters: Any) -> None:
    method = getattr(ReportRepository, f"_{name}")
    ReportRepository.reports[name] = Report(name, row_type, parameters, method, description)


_RANGE: dict[str, Any] = {"start": REQUIRED, "end": REQUIRED}
_register("signups", PeriodCount, "users created per period", **_RANGE, bucket="day")
_register("active_users", PeriodCount, "distinct users with a successful login per period", **_RANGE, bucket="day")
_register("logins", LoginActivity, "successful and failed logins and lockouts per period", **_RANGE, bucket="day")
_register("audit_by_period", PeriodCount, "audit entries per period", **_RANGE, bucket="day", kind=None)
_register("audit_by_action", ActionCount, "audit entries per action", **_RANGE, kind=None)
_register("audit_by_actor", ActorCount, "audit entries per actor", **_RANGE, kind=None)
_register("accounts_by_plan", PlanStatusCount, "accounts per plan and status")
_register("storage_by_account", AccountStorage, "files and bytes stored per account")
_register("storage_by_content_type", ContentTypeStorage, "files and bytes stored per content type", account_id=None)
_register("top_uploaders", Uploader, "users holding the most files or bytes", limit=10, by="bytes",
          account_id=None, start=None, end=None)

REPORTS: Mapping[str, Report] = ReportRepository.reports

__all__ = [
    "REPORTS", "AccountStorage", "ActionCount", "ActorCount", "ContentTypeStorage", "LoginActivity", "PeriodCount",
    "PlanStatusCount", "Report", "ReportRepository", "ReportResult", "Uploader", "rows_from_json", "to_csv",
    "to_json",
]
