"""The reports ``uow.reports`` runs (``db.services.reports``): their row types, parameters and statements, and the
CSV and JSON exports of their rows.

Each report is a ``Report`` in ``REPORTS``: a name, a row type, its parameters (name → default, or ``REQUIRED``),
checked by ``Report.check`` before any SQL, and a function building its statement for an engine's dialect. A
statement takes the parameters that are values as bound parameters (``bindparam``), so one statement serves every
range, limit and id; only the structural ones (a bucket, an ordering) shape it.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import io
import json
import typing
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast

from sqlalchemy import BigInteger, ColumnElement, Integer, Select, Table, bindparam, case, func, select
from sqlalchemy import cast as sql_cast

from db import audit, dialects
from db.errors import ValidationError
from db.models.account import Account
from db.models.file_object import StoredFile
from db.models.log_audit import AuditEntry
from db.models.user import User
from db.repositories.values import id_of

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
    return None if value is None else id_of(value, name)


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
    statement: Callable[[dialects.Dialect, Params], Select[Any]]
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

    @staticmethod
    def shape(params: Params) -> tuple[Any, ...]:
        """What the statement depends on: the structural values, and which of the others are None."""
        return tuple((key, value if key in _STRUCTURAL else value is None) for key, value in params.items())

    @staticmethod
    def bound(params: Params) -> Params:
        """The values the statement binds at execution: those given, the structural ones left out."""
        return {key: value for key, value in params.items() if value is not None and key not in _STRUCTURAL}


# --- statements: one per report, built for an engine's dialect -------------------------------------------------


def _bucket(column: ColumnElement[Any], unit: str) -> ColumnElement[str]:
    return dialects.time_bucket(column, unit).label("period")


def _per_period(table: Table, params: Params, *measures: ColumnElement[Any],
                where: Iterable[ColumnElement[bool]] = ()) -> Select[Any]:
    period = _bucket(table.c.created_at, params["bucket"])
    in_range = (table.c.created_at >= bindparam("start"), table.c.created_at < bindparam("end"))
    return select(period, *measures).where(*where, *in_range).group_by(period).order_by(period)


def _signups(_dialect: dialects.Dialect, params: Params) -> Select[Any]:
    return _per_period(_table(User), params, func.count())


def _active_users(_dialect: dialects.Dialect, params: Params) -> Select[Any]:
    log = _table(AuditEntry)
    return _per_period(log, params, func.count(log.c.entity_id.distinct()), where=[log.c.action == LOGIN_SUCCESS])


def _logins(_dialect: dialects.Dialect, params: Params) -> Select[Any]:
    log = _table(AuditEntry)
    counts = [func.count(case((log.c.action == action, 1))) for action in (LOGIN_SUCCESS, LOGIN_FAILURE,
                                                                            USER_LOCKED)]
    return _per_period(log, params, *counts, where=[log.c.action.in_([LOGIN_SUCCESS, LOGIN_FAILURE, USER_LOCKED])])


def _audit_where(params: Params) -> list[ColumnElement[bool]]:
    log = _table(AuditEntry)
    where = [log.c.created_at >= bindparam("start"), log.c.created_at < bindparam("end")]
    return where + _kind(params)


def _kind(params: Params) -> list[ColumnElement[bool]]:
    return [] if params["kind"] is None else [_table(AuditEntry).c.kind == bindparam("kind")]


def _audit_by_period(_dialect: dialects.Dialect, params: Params) -> Select[Any]:
    return _per_period(_table(AuditEntry), params, func.count(), where=_kind(params))


def _audit_by(dialect: dialects.Dialect, column: ColumnElement[Any], params: Params) -> Select[Any]:
    count = func.count().label("count")
    return (select(column, count).where(*_audit_where(params)).group_by(column)
            .order_by(count.desc(), dialect.text_order(column)))


def _audit_by_action(dialect: dialects.Dialect, params: Params) -> Select[Any]:
    return _audit_by(dialect, _table(AuditEntry).c.action, params)


def _audit_by_actor(dialect: dialects.Dialect, params: Params) -> Select[Any]:
    return _audit_by(dialect, _table(AuditEntry).c.actor, params)


def _accounts_by_plan(dialect: dialects.Dialect, _params: Params) -> Select[Any]:
    accounts = _table(Account)
    plan, status = accounts.c.plan, accounts.c.status
    return (select(plan, status, func.count()).where(accounts.c.deleted_at.is_(None)).group_by(plan, status)
            .order_by(dialect.text_order(plan), dialect.text_order(status)))


def _storage_by_account(_dialect: dialects.Dialect, _params: Params) -> Select[Any]:
    files, accounts = _table(StoredFile), _table(Account)
    used = (select(files.c.account_id, func.count().label("file_count"), _total(files).label("total_bytes"))
            .where(files.c.deleted_at.is_(None)).group_by(files.c.account_id).subquery("used"))
    return (select(accounts.c.id, accounts.c.slug, used.c.file_count, used.c.total_bytes,
                   accounts.c.storage_quota_bytes)
            .join_from(used, accounts, accounts.c.id == used.c.account_id)
            .order_by(used.c.total_bytes.desc(), accounts.c.id))


def _storage_by_content_type(dialect: dialects.Dialect, params: Params) -> Select[Any]:
    files = _table(StoredFile)
    where: list[ColumnElement[bool]] = [files.c.deleted_at.is_(None)]
    if params["account_id"] is not None:
        where.append(files.c.account_id == bindparam("account_id"))
    total = _total(files).label("total_bytes")
    return (select(files.c.content_type, func.count(), total).where(*where).group_by(files.c.content_type)
            .order_by(total.desc(), dialect.text_order(files.c.content_type)))


def _top_uploaders(_dialect: dialects.Dialect, params: Params) -> Select[Any]:
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


# --- the catalogue ---------------------------------------------------------------------------------------------

_CATALOGUE: dict[str, Report] = {}


def _register(statement: Callable[[dialects.Dialect, Params], Select[Any]], row_type: type[Any], description: str,
              **parameters: Any) -> None:
    name = statement.__name__.removeprefix("_")
    _CATALOGUE[name] = Report(name, row_type, parameters, statement, description)


_RANGE: dict[str, Any] = {"start": REQUIRED, "end": REQUIRED}
_register(_signups, PeriodCount, "users created per period", **_RANGE, bucket="day")
_register(_active_users, PeriodCount, "distinct users with a successful login per period", **_RANGE, bucket="day")
_register(_logins, LoginActivity, "successful and failed logins and lockouts per period", **_RANGE, bucket="day")
_register(_audit_by_period, PeriodCount, "audit entries per period", **_RANGE, bucket="day", kind=None)
_register(_audit_by_action, ActionCount, "audit entries per action", **_RANGE, kind=None)
_register(_audit_by_actor, ActorCount, "audit entries per actor", **_RANGE, kind=None)
_register(_accounts_by_plan, PlanStatusCount, "accounts per plan and status")
_register(_storage_by_account, AccountStorage, "files and bytes stored per account")
_register(_storage_by_content_type, ContentTypeStorage, "files and bytes stored per content type", account_id=None)
_register(_top_uploaders, Uploader, "users holding the most files or bytes", limit=10, by="bytes",
          account_id=None, start=None, end=None)

REPORTS: Mapping[str, Report] = _CATALOGUE


__all__ = [
    "REPORTS", "AccountStorage", "ActionCount", "ActorCount", "ContentTypeStorage", "LoginActivity", "PeriodCount",
    "PlanStatusCount", "Report", "ReportResult", "Uploader", "rows_from_json", "to_csv", "to_json",
]
