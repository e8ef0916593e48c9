"""``BaseRepository``: create, read, update, delete, filter, sort, page and upsert for any model.

A subclass is configuration plus the queries only its entity needs::

    class AccountRepository(BaseRepository[Account]):
        model = Account
        sortable = frozenset({"created_at", "name"})

Repositories take a session and never commit: the unit of work does. Every method raises ``db.errors``
errors only; bad filters, sort keys, cursors and values are refused before any SQL is built.
"""

from __future__ import annotations

import builtins
import contextlib
import functools
import gc
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, Literal, TypeVar, cast, overload

from sqlalchemy import ColumnElement, Select, and_, delete, false, func, or_, select, true, update
from sqlalchemy import exists as sql_exists
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from db import audit, dialects
from db.base import secret_columns
from db.errors import Conflict, DatabaseError, InvalidFilter, NotFound, StaleVersion, ValidationError
from db.models.base import STATEMENT_DEFAULT, utcnow
from db.repositories import query_spec as qs
from db.repositories.bulk import BulkInserter, batched
from db.settings import Settings

ModelT = TypeVar("ModelT")
F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True, slots=True)
class Page(Generic[ModelT]):
    """One page of a keyset-paged listing; ``next_cursor`` is None on the last page."""

    items: list[ModelT]
    next_cursor: str | None


def translated(method: F) -> F:
    """Driver errors leave a repository method as ``db.errors`` errors, never raw."""

    @functools.wraps(method)
    def wrapper(self: BaseRepository[Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except DatabaseError:
            raise
        except Exception as error:
            translated_error = dialects.domain_error(error, entity=self.entity)
            if translated_error is None:
                raise
            raise translated_error from None

    return cast(F, wrapper)


class BaseRepository(Generic[ModelT]):
    """Generic repository over ``model``; see the module docstring."""

    model: ClassVar[type[Any]]
    filterable: ClassVar[frozenset[str] | None] = None
    sortable: ClassVar[frozenset[str] | None] = None
    batch_size: ClassVar[int] = 5_000
    _policies: ClassVar[dict[type[Any], qs.FieldPolicy]] = {}

    def __init__(self, session: Session) -> None:
        self.session = session

    # --- configuration -------------------------------------------------------------------------------------

    @property
    def settings(self) -> Settings:
        """The unit of work's settings (defaults when the repository is used on a bare session)."""
        return self.session.info.get("settings") or Settings()

    @property
    def entity(self) -> str:
        return str(self.model.__tablename__)

    @classmethod
    def policy(cls) -> qs.FieldPolicy:
        """Which fields may be filtered and sorted on (computed once per repository class)."""
        if cls not in BaseRepository._policies:
            BaseRepository._policies[cls] = build_policy(cls.model, cls.filterable, cls.sortable)
        return BaseRepository._policies[cls]

    @functools.cached_property
    def _pk(self) -> Any:
        return sa_inspect(self.model).primary_key[0]

    @property
    def _soft(self) -> bool:
        return "deleted_at" in self.model.__table__.c

    @property
    def _versioned(self) -> bool:
        return sa_inspect(self.model).version_id_col is not None

    # --- create ----------------------------------------------------------------------------------------------

    @translated
    def create(self, **fields: Any) -> ModelT:
        self._check_writable(fields, allow_pk=True)
        self._check_required(fields)
        instance = self.model(**fields)
        with self.session.begin_nested():
            self.session.add(instance)
        return instance  # type: ignore[no-any-return]

    @overload
    def create_many(self, rows: Iterable[Mapping[str, Any]], *, returning: Literal[False] = False) -> int: ...
    @overload
    def create_many(self, rows: Iterable[Mapping[str, Any]], *, returning: Literal[True]) -> list[ModelT]: ...

    @translated
    def create_many(self, rows: Iterable[Mapping[str, Any]], *, returning: bool = False) -> int | list[ModelT]:
        """Insert any iterable of mappings (a generator too) in batches; all or nothing.

        Ids, timestamps and other Python-side defaults are filled here. Returns the number of rows, or with
        ``returning=True`` the instances in input order.
        """
        if (returning or audit.is_audited(self.model)) and self.model.__table__.autoincrement_column is not None:
            message = "returning=True and auditing need primary keys made in Python (UUIDPrimaryKey)"
            raise ValidationError(f"{self.entity}: {message}")
        self.session.flush()
        count = 0
        audited = audit.is_audited(self.model)
        with self.session.begin_nested():
            # The connection is taken inside the savepoint: that is what makes SQLAlchemy emit SAVEPOINT.
            inserter = BulkInserter(
                self.model.__table__, self.session.connection(), self.entity, protected=self._protected()
            )
            for batch in batched(rows, self.batch_size):
                count += inserter.insert(batch, collect_ids=returning or audited)
                if audited:  # one entry per batch, listing its ids
                    batch_ids = [self._id_text(raw) for raw in inserter.inserted_ids[-len(batch) :]]
                    audit.record_bulk(self.session, self.entity, "create_many", batch_ids, {})
                    if not returning:  # keep memory flat: the ids were only needed for this batch's entry
                        inserter.inserted_ids.clear()
        if not returning:
            return count
        ids = inserter.inserted_ids
        if ids and all(isinstance(raw, str) for raw in ids):
            return self._load_generated(ids)
        return self._load_in_order(ids)

    def _load_generated(self, hex_ids: builtins.list[str]) -> builtins.list[ModelT]:
        """Rows whose UUIDv7 ids this call generated (as 32 hex digits), loaded in key ranges, in input order.

        The ids are time-ordered, so a chunk of them spans a narrow range of the primary key index: a range scan
        is cheaper than binding thousands of ids, and the hex form needs no conversion to look rows up.
        """
        by_hex: dict[str, ModelT] = {}
        with _collector_paused():
            for chunk in batched(sorted(hex_ids), 5_000):
                low, high = uuid.UUID(hex=chunk[0]), uuid.UUID(hex=chunk[-1])
                statement = select(self.model).where(self._pk >= low, self._pk <= high)
                by_hex.update((self._pk_of(item).hex, item) for item in self.session.scalars(statement))
        return [by_hex[key] for key in hex_ids if key in by_hex]

    def _id_text(self, raw: Any) -> str:
        """An id as the audit log writes it: a UUID in its usual form, whichever form the driver took."""
        if isinstance(raw, str) and len(raw) == 32 and self._pk.type.python_type is uuid.UUID:
            return str(uuid.UUID(hex=raw))
        return str(raw)

    def _protected(self) -> frozenset[str]:
        """Fields the layer maintains and callers may not set: the version counter."""
        return frozenset({"version"}) if self._versioned else frozenset()

    # --- read ------------------------------------------------------------------------------------------------

    @translated
    def get_by_id(self, ident: Any, *, include_deleted: bool = False, for_update: bool = False) -> ModelT | None:
        """The row with this primary key, or None. ``for_update`` locks it until the transaction ends."""
        key = self._coerce_id(ident)
        instance = self.session.get(self.model, key, with_for_update=True if for_update else None)
        if instance is None or (not include_deleted and self._is_deleted(instance)):
            return None
        return instance  # type: ignore[no-any-return]

    @translated
    def get_many(self, ids: Iterable[Any], *, include_deleted: bool = False) -> list[ModelT]:
        """The rows with these primary keys, in the order asked, skipping the missing ones."""
        keys = list(dict.fromkeys(self._coerce_id(ident) for ident in ids))
        found = self._load_in_order(keys)
        return [item for item in found if include_deleted or not self._is_deleted(item)]

    def _load_in_order(self, keys: Sequence[Any]) -> list[ModelT]:
        by_key: dict[Any, ModelT] = {}
        for chunk in batched(keys, 5_000):
            statement = select(self.model).where(self._pk.in_(chunk))
            by_key.update((self._pk_of(item), item) for item in self.session.scalars(statement))
        return [by_key[key] for key in keys if key in by_key]

    @translated
    def exists(self, **filters: Any) -> bool:
        statement = select(self._pk).where(*self._where(filters, include_deleted=False))
        return bool(self.session.scalar(select(sql_exists(statement))))

    @translated
    def count(self, filters: Mapping[str, Any] | None = None, *, include_deleted: bool = False) -> int:
        statement = select(func.count()).select_from(self.model).where(*self._where(filters, include_deleted))
        return int(self.session.scalar(statement) or 0)

    @translated
    def list(
        self,
        *,
        filters: Mapping[str, Any] | None = None,
        order_by: Sequence[str] = (),
        limit: int | None = None,
        offset: int = 0,
        include_deleted: bool = False,
    ) -> builtins.list[ModelT]:
        policy = self.policy()
        qs.check_window(policy, limit=limit, offset=offset)
        keys = qs.parse_order(policy, order_by)
        statement = self._ordered(select(self.model).where(*self._where(filters, include_deleted)), keys)
        if limit is not None:
            statement = statement.limit(limit)
        if offset:
            statement = statement.offset(offset)
        return list(self.session.scalars(statement))

    @translated
    def page(
        self,
        *,
        filters: Mapping[str, Any] | None = None,
        order_by: Sequence[str] = (),
        size: int = 50,
        after: str | None = None,
        include_deleted: bool = False,
    ) -> Page[ModelT]:
        """Keyset pagination: each page continues strictly after the last row of the previous one.

        Pages stay fast however deep (no OFFSET), and rows inserted meanwhile never cause repeats or skips.
        NULL sorts as the smallest value. ``after`` is the previous page's ``next_cursor``.
        """
        policy = self.policy()
        qs.check_window(policy, size=size)
        keys = qs.parse_order(policy, order_by)
        criteria = self._where(filters, include_deleted)
        if after is not None:
            criteria.append(self._after(keys, qs.decode_cursor(policy, keys, after)))
        statement = self._ordered(select(self.model).where(*criteria), keys).limit(size + 1)
        # The cursor is built from the loaded objects: they must hold the database's values, not stale ones.
        statement = statement.execution_options(populate_existing=True)
        rows = list(self.session.scalars(statement))
        if len(rows) <= size:
            return Page(rows, None)
        last = rows[size - 1]
        return Page(rows[:size], qs.encode_cursor(policy, keys, [getattr(last, k.field) for k in keys]))

    # --- update ----------------------------------------------------------------------------------------------

    @translated
    def update(self, instance_or_id: Any, **fields: Any) -> ModelT:
        """Change the given fields. A ``version`` among them is the version the caller last saw."""
        instance = self._resolve(instance_or_id)
        expected = fields.pop("version", None) if self._versioned else None
        self._check_writable(fields, allow_pk=False)
        if expected is not None and expected != instance.version:
            raise StaleVersion(self.entity, self._pk_of(instance))
        try:
            with self.session.begin_nested():
                self.session.add(instance)
                for key, value in fields.items():
                    setattr(instance, key, value)
        except StaleDataError:
            raise StaleVersion(self.entity, self._pk_of(instance)) from None
        return instance  # type: ignore[no-any-return]

    @translated
    def update_many(self, filters: Mapping[str, Any], **fields: Any) -> int:
        """Update every visible row that matches; returns how many matched."""
        criteria = self._where(self._required(filters), include_deleted=False)
        self._check_writable(fields, allow_pk=False)
        if not fields:
            raise ValidationError(f"{self.entity}: update_many needs at least one field to set")
        return self._bulk_update(criteria, dict(fields))

    def _bulk_update(
        self, criteria: builtins.list[ColumnElement[bool]], values: dict[str, Any], action: str = "update_many"
    ) -> int:
        table = self.model.__table__
        recorded = audit.redact(self.model, values)
        if "updated_at" in table.c and "updated_at" not in values:
            values["updated_at"] = utcnow()
        if self._versioned:
            values["version"] = table.c.version + 1
        self.session.flush()
        with self.session.begin_nested():
            if audit.is_audited(self.model):
                statement_for = lambda where: update(table).where(where).values(values)  # noqa: E731
                count = self._audited_bulk(criteria, action, recorded, statement_for)
            else:
                count = _rowcount(self.session.execute(update(table).where(*criteria).values(values)))
        self._expire_loaded()
        return count

    def _audited_bulk(
        self, criteria: builtins.list[ColumnElement[bool]], action: str, fields: Mapping[str, Any],
        statement_for: Callable[[ColumnElement[bool]], Any],
    ) -> int:
        """Lock and list the matching ids, change exactly those, and record one entry per chunk of ids."""
        ids = builtins.list(self.session.scalars(select(self._pk).where(*criteria).with_for_update()))
        count = 0
        for chunk in batched(ids, 5_000):
            count += _rowcount(self.session.execute(statement_for(self._pk.in_(chunk))))
            audit.record_bulk(self.session, self.entity, action, chunk, fields)
        return count

    def _expire_loaded(self) -> None:
        for instance in list(self.session.identity_map.values()):
            if isinstance(instance, self.model):
                self.session.expire(instance)

    # --- delete ----------------------------------------------------------------------------------------------

    @translated
    def delete(self, instance_or_id: Any, *, hard: bool = False) -> None:
        """Soft-delete (set ``deleted_at``) where the model supports it, unless ``hard``."""
        instance = self._resolve(instance_or_id, include_deleted=hard)
        with self.session.begin_nested():
            if self._soft and not hard:
                self.session.add(instance)
                instance.deleted_at = utcnow()
            else:
                self.session.delete(instance)

    @translated
    def delete_many(self, filters: Mapping[str, Any], *, hard: bool = False, include_deleted: bool = False) -> int:
        """Delete every matching row (soft where supported, unless ``hard``); returns how many."""
        criteria = self._where(self._required(filters), include_deleted)
        if self._soft and not hard:
            return self._bulk_update(criteria, {"deleted_at": utcnow()}, action="delete_many")
        self.session.flush()

        def statement_for(where: ColumnElement[bool]) -> Any:
            return delete(self.model).where(where).execution_options(synchronize_session="fetch")

        with self.session.begin_nested():
            if audit.is_audited(self.model):
                return self._audited_bulk(criteria, "delete_many", {"hard": True}, statement_for)
            return _rowcount(self.session.execute(statement_for(and_(*criteria))))

    # --- upsert ----------------------------------------------------------------------------------------------

    @translated
    def upsert(self, values: Mapping[str, Any], *, match: Sequence[str]) -> ModelT:
        """Insert, or update the row whose ``match`` fields are equal: one atomic statement.

        ``match`` must name a unique key. An update keeps ``id`` and ``created_at``, bumps ``version`` and
        ``updated_at``, and brings back a soft-deleted row.
        """
        match = self._unique_key(match)
        fields = dict(values)
        self._check_writable(fields, allow_pk=True)
        self._check_required(fields)
        missing = [key for key in match if key not in fields]
        if missing:
            raise ValidationError(f"{self.entity}.{missing[0]} is required to upsert", field=missing[0])
        row = self._with_defaults(fields)
        updates = self._upsert_updates(fields, match)
        statement = dialects.upsert_for(self.session.get_bind().dialect.name, self.model.__table__, row, match,
                                        updates)
        self.session.flush()
        with self.session.begin_nested():
            self.session.execute(statement)
            # A locking read sees the row this statement wrote even under MariaDB's REPEATABLE READ snapshot.
            found = select(self.model).where(*(self._column(k) == row[k] for k in match)).with_for_update(read=True)
            instance = self.session.scalars(found.execution_options(populate_existing=True)).one_or_none()
            if instance is None or not self._written_by(instance, row):
                # MariaDB: the insert clashed on a unique key other than ``match``, and the guarded update
                # changed nothing. SQLite and PostgreSQL raise a unique violation (Conflict) themselves.
                message = f"{self.entity}: upsert clashed on a unique key other than {list(match)}"
                raise Conflict(message, entity=self.entity)
            if audit.is_audited(self.model):
                audit.record_upsert(self.session, instance, audit.redact(self.model, fields))
        return instance  # type: ignore[no-any-return]

    def _written_by(self, instance: Any, row: Mapping[str, Any]) -> bool:
        """Whether the upsert just wrote ``instance``: its ``updated_at`` is this statement's instant."""
        if "updated_at" not in self.model.__table__.c:
            return True  # nothing to tell by; such models rely on the database's own unique checks
        return bool(instance.updated_at == row["updated_at"])

    def _upsert_updates(self, fields: Mapping[str, Any], match: Sequence[str]) -> dict[str, Any]:
        table = self.model.__table__
        keep = {*match, self._pk.key, "created_at", "version", "deleted_at"}
        updates: dict[str, Any] = {key: dialects.EXCLUDED for key in fields if key not in keep}
        if "updated_at" in table.c:
            updates["updated_at"] = dialects.EXCLUDED
        if self._versioned:
            updates["version"] = table.c.version + 1
        if self._soft:
            updates["deleted_at"] = None
        return updates

    def _unique_key(self, match: Sequence[str]) -> tuple[str, ...]:
        if isinstance(match, str):
            match = (match,)
        wanted = frozenset(match)
        if not wanted or wanted not in self._unique_keys():
            raise InvalidFilter(f"{self.entity}: upsert must match on a unique key, not {sorted(wanted)!r}")
        return tuple(match)

    def _unique_keys(self) -> set[frozenset[str]]:
        table = self.model.__table__
        keys = {frozenset(column.key for column in table.primary_key.columns)}
        keys |= {frozenset(c.key for c in constraint.columns) for constraint in table.constraints
                 if constraint.__class__.__name__ == "UniqueConstraint"}
        keys |= {frozenset(c.key for c in index.columns) for index in table.indexes if index.unique}
        keys |= {frozenset({column.key}) for column in table.columns if column.unique}
        return keys

    def _with_defaults(self, fields: dict[str, Any]) -> dict[str, Any]:
        row = dict(fields)
        now = utcnow()
        for column in self.model.__table__.columns:
            default = column.default
            if column.key in row or default is None:
                continue
            if column.info.get(STATEMENT_DEFAULT):
                row[column.key] = now
            else:
                row[column.key] = default.arg(None) if default.is_callable else default.arg
        return row

    @translated
    def get_or_create(self, defaults: Mapping[str, Any] | None = None, **match: Any) -> tuple[ModelT, bool]:
        """The row matching ``match``, or a new one made from ``match`` and ``defaults``; race-safe.

        Two callers racing on the same unique key both get the one row: the loser's insert fails inside a
        savepoint, and it then reads the winner's row with a locking read (which sees the latest committed
        version even under MariaDB's REPEATABLE READ).
        """
        if not match:
            raise InvalidFilter(f"{self.entity}: get_or_create needs at least one field to match")
        self._check_writable(match, allow_pk=True)
        match = self._coerced(match)
        found = self._find(match, locking=False)
        if found is not None:
            return found, False
        try:
            return self.create(**match, **(defaults or {})), True
        except Conflict as error:
            if isinstance(error, StaleVersion):
                raise
            found = self._find(match, locking=True)
            if found is None:
                raise
            return found, False

    def _coerced(self, match: Mapping[str, Any]) -> dict[str, Any]:
        """Match values checked like filter values, so a bad one is refused the same way on every engine."""
        policy = self.policy()
        return {
            key: qs.coerce_value(policy, key, policy.types[key], value) if key in policy.types and value is not None
            else value
            for key, value in match.items()
        }

    def _find(self, match: Mapping[str, Any], *, locking: bool) -> ModelT | None:
        statement = select(self.model).where(*(self._column(k) == v for k, v in match.items()))
        if self._soft:
            statement = statement.where(self.model.__table__.c.deleted_at.is_(None))
        if locking:
            statement = statement.with_for_update(read=True).execution_options(populate_existing=True)
        return self.session.scalars(statement.limit(1)).first()

    # --- helpers ---------------------------------------------------------------------------------------------

    def _column(self, key: str) -> Any:
        return self.model.__table__.c[key]

    def _pk_of(self, instance: Any) -> Any:
        return getattr(instance, self._pk.key)

    def _is_deleted(self, instance: Any) -> bool:
        return self._soft and instance.deleted_at is not None

    def _coerce_id(self, ident: Any) -> Any:
        policy = self.policy()
        return qs.coerce_value(policy, policy.primary_key, policy.types[policy.primary_key], ident)

    def _resolve(self, instance_or_id: Any, *, include_deleted: bool = False) -> Any:
        if isinstance(instance_or_id, self.model):
            if not include_deleted and self._is_deleted(instance_or_id):
                raise NotFound(self.entity, self._pk_of(instance_or_id))
            return instance_or_id
        instance = self.get_by_id(instance_or_id, include_deleted=include_deleted)
        if instance is None:
            raise NotFound(self.entity, instance_or_id)
        return instance

    def _check_writable(self, fields: Mapping[str, Any], *, allow_pk: bool) -> None:
        columns = self.model.__table__.c
        for key in fields:
            if key not in columns or (self._versioned and key == "version"):
                raise ValidationError(f"{self.entity}: unknown field {str(key)[:64]!r}", field=str(key)[:64])
            if not allow_pk and columns[key].primary_key:
                raise ValidationError(f"{self.entity}.{key} cannot be changed", field=key)

    def _check_required(self, fields: Mapping[str, Any]) -> None:
        table = self.model.__table__
        for column in table.columns:
            if column.key in fields or column.nullable or column.default is not None:
                continue
            if column.server_default is None and table.autoincrement_column is not column:
                raise ValidationError(f"{self.entity}.{column.key} is required", field=column.key, rule="required")

    def _required(self, filters: Mapping[str, Any]) -> Mapping[str, Any]:
        if not filters:
            raise InvalidFilter(f"{self.entity}: refusing a bulk change without filters")
        return filters

    def _where(self, filters: Mapping[str, Any] | None, include_deleted: bool) -> builtins.list[ColumnElement[bool]]:
        criteria = [self._sql(condition) for condition in qs.parse_filters(self.policy(), filters)]
        if self._soft and not include_deleted:
            criteria.append(self.model.__table__.c.deleted_at.is_(None))
        return criteria

    def _sql(self, condition: qs.Condition) -> ColumnElement[bool]:
        column = self._column(condition.field)
        op, value = condition.op, condition.value
        if op == "isnull":
            return column.is_(None) if value else column.is_not(None)  # type: ignore[no-any-return]
        if op in ("in", "not_in"):
            if not value:
                return false() if op == "in" else true()
            return column.in_(value) if op == "in" else column.not_in(value)  # type: ignore[no-any-return]
        if op == "between":
            return column.between(*value)  # type: ignore[no-any-return]
        if op == "contains":
            return column.icontains(value, autoescape=True)  # type: ignore[no-any-return]
        if op == "startswith":
            return column.istartswith(value, autoescape=True)  # type: ignore[no-any-return]
        return _COMPARISONS[op](column, value)

    def _ordered(self, statement: Select[Any], keys: Sequence[qs.SortKey]) -> Select[Any]:
        backend = self.session.get_bind().dialect.name
        return statement.order_by(
            *(dialects.nulls_smallest(self._column(k.field), descending=k.descending, backend=backend)
              for k in keys)
        )

    def _after(self, keys: Sequence[qs.SortKey], values: Sequence[Any]) -> ColumnElement[bool]:
        """Rows strictly after ``values`` in the order ``keys``, with NULL as the smallest value."""
        alternatives = []
        for position, key in enumerate(keys):
            equal = [_same(self._column(k.field), v) for k, v in zip(keys[:position], values, strict=False)]
            alternatives.append(and_(*equal, _beyond(self._column(key.field), values[position], key.descending)))
        return and_(_at_or_beyond(self._column(keys[0].field), values[0], keys[0].descending), or_(*alternatives))


def _rowcount(result: Any) -> int:
    """Rows matched by an UPDATE or DELETE (MariaDB too: SQLAlchemy connects with CLIENT.FOUND_ROWS)."""
    return int(result.rowcount)


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while a large batch of ORM objects is built.

    Each object (instance, state, dict) is a tracked allocation, so building 100,000 of them runs the collector
    hundreds of times over an ever larger heap: a quarter of the time. Nothing here makes cycles that need it;
    reference counting still frees everything else at once, and the collector resumes when the block ends.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _same(column: Any, value: Any) -> ColumnElement[bool]:
    return column.is_(None) if value is None else column == value  # type: ignore[no-any-return]


def _at_or_beyond(column: Any, value: Any, descending: bool) -> ColumnElement[bool]:
    """A redundant bound on the first sort key: it turns the OR of ``_after`` into an index range seek."""
    if value is None or isinstance(value, bool):
        return true()
    if descending:
        return or_(column <= value, column.is_(None)) if column.nullable else column <= value
    return column >= value  # type: ignore[no-any-return]


def _beyond(column: Any, value: Any, descending: bool) -> ColumnElement[bool]:
    if value is None:
        return false() if descending else column.is_not(None)
    if isinstance(value, bool):  # SQL has no portable ordering comparison on booleans: False < True
        if descending:
            return or_(column.is_(None), column == false()) if value else column.is_(None)
        return false() if value else column == true()
    if descending:
        return or_(column < value, column.is_(None))
    return column > value  # type: ignore[no-any-return]


_COMPARISONS: dict[str, Callable[[Any, Any], ColumnElement[bool]]] = {
    "eq": lambda column, value: column == value,
    "ne": lambda column, value: column != value,
    "lt": lambda column, value: column < value,
    "lte": lambda column, value: column <= value,
    "gt": lambda column, value: column > value,
    "gte": lambda column, value: column >= value,
}


def build_policy(
    model: type[Any], filterable: frozenset[str] | None, sortable: frozenset[str] | None
) -> qs.FieldPolicy:
    """Every plain, comparable, non-secret column by default; a narrower allowlist where the class sets one."""
    entity = str(model.__tablename__)
    secret = secret_columns(model)
    types: dict[str, type] = {}
    for column in model.__table__.columns:
        try:
            kind = column.type.python_type
        except NotImplementedError:
            continue
        if kind in qs._COERCERS and column.key not in secret:
            types[column.key] = kind
    pk = sa_inspect(model).primary_key[0].key
    for name, allowed in (("filterable", filterable), ("sortable", sortable)):
        bad = sorted((allowed or frozenset()) - types.keys())
        if bad:
            raise TypeError(f"{entity}: {name} names unknown, secret or incomparable fields {bad}")
    everything = frozenset(types)
    return qs.FieldPolicy(
        entity=entity,
        types=types,
        filterable=filterable if filterable is not None else everything,
        sortable=sortable if sortable is not None else everything,
        primary_key=pk,
    )


__all__ = ["BaseRepository", "Page", "build_policy", "translated"]
