"""``BaseRepository``: create, read, update, delete, filter, sort, page and upsert for any model.

A subclass is configuration plus the queries only its entity needs::

    class AccountRepository(BaseRepository[Account]):
        model = Account
        sortable = frozenset({"created_at", "name"})

Repositories take a session and never commit: the unit of work does. Every method raises ``db.errors``
errors only; bad filters, sort keys, cursors and values are refused before any SQL is built.
"""

from __future__ import annotations

import contextlib
import functools
import threading
import uuid
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from typing import Any, Literal, TypeVar, cast, overload

from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    bindparam,
    delete,
    false,
    func,
    literal_column,
    null,
    or_,
    select,
    true,
    tuple_,
    update,
)
from sqlalchemy import exists as sql_exists
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from db import audit, dialects
from db.errors import Conflict, DatabaseError, StaleVersion, ValidationError
from db.models.base import STATEMENT_DEFAULT, utcnow
from db.repositories import query_spec as qs
from db.repositories import values as value_rules
from db.repositories.bulk import BulkInserter, batched, collector_paused
from db.repositories.rules import Listing, Page, RepositoryRules, build_policy, check_upsert_key, get_or_create
from db.settings import Settings

ModelT = TypeVar("ModelT")
F = TypeVar("F", bound=Callable[..., Any])


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


class OnSession:
    """Built from one unit of work's session alone, as repositories and services are; never commits."""

    def __init__(self, session: Session) -> None:
        self.session = session

    @property
    def settings(self) -> Settings:
        """The unit of work's settings (defaults on a bare session)."""
        return self.session.info.get("settings") or Settings()


class ReadRepository(OnSession, RepositoryRules[ModelT]):
    """Reads of ``model``: get, filter, sort, count and page. The base of a repository whose entity is written
    only through the operations it defines itself (the audit log, stored files)."""
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
        for chunk in batched(keys):
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

    def _listed(self, listing: Listing, limit: int | None, offset: int) -> list[ModelT]:
        criteria = self._where(listing.filters, listing.include_deleted)
        statement = self._ordered(select(self.model).where(*criteria), listing.keys)
        if limit is not None:
            statement = statement.limit(limit)
        if offset:
            statement = statement.offset(offset)
        return list(self.session.scalars(statement))

    def _paged(self, listing: Listing, after: str | None, limit: int) -> list[ModelT]:
        keys = listing.keys
        criteria = self._where(listing.filters, listing.include_deleted)
        if after is not None:
            criteria.append(self._after(keys, qs.decode_cursor(self.policy(), keys, after)))
        statement = self._ordered(select(self.model).where(*criteria), keys).limit(limit)
        # The cursor is built from the loaded objects: they must hold the database's values, not stale ones.
        statement = statement.execution_options(populate_existing=True)
        return list(self.session.scalars(statement))

    def _find(self, match: Mapping[str, Any], *, locking: bool) -> ModelT | None:
        nulls = tuple(key for key, value in match.items() if value is None)
        statement = _find_shape(cast(Hashable, self.model), tuple(match), nulls, locking)  # a class hashes by identity
        parameters = {_PARAMETER + key: value for key, value in match.items() if value is not None}
        return self.session.scalars(statement, parameters).first()

    # --- helpers ---------------------------------------------------------------------------------------------

    def _column(self, key: str) -> Any:
        return self.model.__table__.c[key]

    def _where(self, filters: Mapping[str, Any] | None, include_deleted: bool) -> list[ColumnElement[bool]]:
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
        if op in ("contains", "startswith"):  # case-insensitive for A-Z only, on every engine (query_spec)
            return self._dialect.ascii_insensitive_match(column, op, qs.ascii_fold(value))
        return _COMPARISONS[op](column, value)

    @property
    def _dialect(self) -> dialects.Dialect:
        return dialects.dialect_of(self.session)

    def _ordered(self, statement: Select[Any], keys: Sequence[qs.SortKey]) -> Select[Any]:
        return statement.order_by(
            *(self._dialect.nulls_smallest(self._column(k.field), descending=k.descending)
              for k in keys)
        )

    def _after(self, keys: Sequence[qs.SortKey], values: Sequence[Any]) -> ColumnElement[bool]:
        """Rows strictly after ``values`` in the order ``keys``, with NULL as the smallest value."""
        alternatives = []
        for position, key in enumerate(keys):
            equal = [_same(self._column(k.field), v) for k, v in zip(keys[:position], values, strict=False)]
            alternatives.append(and_(*equal, _beyond(self._column(key.field), values[position], key.descending)))
        return and_(_at_or_beyond(self._column(keys[0].field), values[0], keys[0].descending), or_(*alternatives))

    # Last in the class: below these lines ``list`` names the method, not the builtin.
    list = translated(RepositoryRules.list)  # written once in RepositoryRules, translated here like the rest
    page = translated(RepositoryRules.page)


class WriteRepository(ReadRepository[ModelT]):
    """Reads plus create, update and delete, one row or many, with the entity's rules checked."""

    # --- create ----------------------------------------------------------------------------------------------

    @translated
    def create(self, **fields: Any) -> ModelT:
        self._check_writable(fields, allow_pk=True)
        self._check_required(fields)
        instance = self.model(**self._converted(fields))
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
        rows = self._prepared_rows(rows)
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

    def _prepared(self, row: Mapping[str, Any]) -> Mapping[str, Any]:
        """A row of ``create_many`` as the entity stores it: where a repository checks or derives its fields."""
        return row

    def _prepared_rows(self, rows: Iterable[Mapping[str, Any]]) -> Iterable[Mapping[str, Any]]:
        """``rows`` through ``_prepared`` where a repository has one: the plain path pays no call per row."""
        if type(self)._prepared is WriteRepository._prepared:
            return rows
        return map(self._prepared, rows)

    def _load_generated(self, hex_ids: list[str]) -> list[ModelT]:
        """Rows whose UUIDv7 ids this call generated (as 32 hex digits), loaded in key ranges, in input order.

        The ids are time-ordered, so a chunk of them spans a narrow range of the primary key index: a range scan
        is cheaper than binding thousands of ids, and the hex form needs no conversion to look rows up.
        """
        by_hex: dict[str, ModelT] = {}
        with collector_paused():
            for chunk in batched(sorted(hex_ids)):
                low, high = uuid.UUID(hex=chunk[0]), uuid.UUID(hex=chunk[-1])
                statement = select(self.model).where(self._pk >= low, self._pk <= high)
                by_hex.update((self._pk_of(item).hex, item) for item in self.session.scalars(statement))
        return [by_hex[key] for key in hex_ids if key in by_hex]

    def _id_text(self, raw: Any) -> str:
        """An id as the audit log writes it: a UUID in its usual form, whichever form the driver took."""
        if isinstance(raw, str) and len(raw) == 32 and self._pk.type.python_type is uuid.UUID:
            return str(uuid.UUID(hex=raw))
        return str(raw)

    # --- update ----------------------------------------------------------------------------------------------

    @translated
    def update(self, instance_or_id: Any, **fields: Any) -> ModelT:
        """Change the given fields. A ``version`` among them is the version the caller last saw."""
        instance = self._resolve(instance_or_id)
        self._check_update(instance, fields)
        try:
            with self.session.begin_nested():
                self.session.add(instance)
                for key, value in self._converted(fields).items():
                    setattr(instance, key, value)
        except StaleDataError:
            raise StaleVersion(self.entity, self._pk_of(instance)) from None
        return instance  # type: ignore[no-any-return]

    @translated
    def update_many(self, filters: Mapping[str, Any], **fields: Any) -> int:
        """Update every visible row that matches; returns how many matched."""
        criteria = self._where(self._required(filters), include_deleted=False)
        self._check_bulk_update(fields)
        return self._bulk_update(criteria, self._converted(fields))

    def _bulk_update(
        self, criteria: list[ColumnElement[bool]], values: dict[str, Any], action: str = "update_many"
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
        self, criteria: list[ColumnElement[bool]], action: str, fields: Mapping[str, Any],
        statement_for: Callable[[ColumnElement[bool]], Any],
    ) -> int:
        """Lock and list the matching ids, change exactly those, and record one entry per chunk of ids."""
        ids = list(self.session.scalars(select(self._pk).where(*criteria).with_for_update()))
        count = 0
        for chunk in batched(ids):
            count += _rowcount(self.session.execute(statement_for(self._pk.in_(chunk))))
            audit.record_bulk(self.session, self.entity, action, chunk, fields)
        return count

    def _expire_loaded(self, attributes: Sequence[str] | None = None) -> None:
        for instance in list(self.session.identity_map.values()):
            if isinstance(instance, self.model):
                self.session.expire(instance, attributes)

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


class BaseRepository(WriteRepository[ModelT]):
    """The whole generic repository: ``WriteRepository`` plus ``upsert`` and ``get_or_create``."""

    # --- upsert ----------------------------------------------------------------------------------------------

    @translated
    def upsert(self, values: Mapping[str, Any], *, match: Sequence[str]) -> ModelT:
        """Insert, or update the row whose ``match`` fields are equal: one atomic statement.

        ``match`` must name a unique key. An update keeps ``id`` and ``created_at``, bumps ``version`` and
        ``updated_at``, and brings back a soft-deleted row.
        """
        match, fields = self._upsert_input(values, match)
        row = self._with_defaults(fields)
        dialect = self._dialect
        statement = self._upsert_shape(dialect, match, tuple(row))
        parameters = {_PARAMETER + key: value for key, value in row.items()}
        self.session.flush()
        with self._undone_on_failure(dialect):
            if dialect.upsert_returns_rows:
                written = self.session.scalars(statement, parameters, execution_options=_REFRESHING)
                instance = written.one_or_none()
            else:
                self.session.execute(statement, parameters)
                # A locking read sees the row this statement wrote even under MariaDB's REPEATABLE READ snapshot.
                found = select(self.model).where(*(self._column(k) == row[k] for k in match))
                instance = self.session.scalars(found.with_for_update(read=True), execution_options=_REFRESHING).first()
            if instance is None or not self._written_by(instance, row):
                # MariaDB: the insert clashed on a unique key other than ``match``, and the guarded update
                # changed nothing. SQLite and PostgreSQL raise a unique violation (Conflict) themselves.
                message = f"{self.entity}: upsert clashed on a unique key other than {list(match)}"
                raise Conflict(message, entity=self.entity)
            if audit.is_audited(self.model):
                audit.record_upsert(self.session, instance, audit.redact(self.model, fields))
        return instance  # type: ignore[no-any-return]

    @overload
    def upsert_many(self, rows: Iterable[Mapping[str, Any]], *, match: Sequence[str],
                    returning: Literal[False] = False) -> int: ...
    @overload
    def upsert_many(self, rows: Iterable[Mapping[str, Any]], *, match: Sequence[str],
                    returning: Literal[True]) -> list[ModelT]: ...

    @translated
    def upsert_many(
        self, rows: Iterable[Mapping[str, Any]], *, match: Sequence[str], returning: bool = False
    ) -> int | list[ModelT]:
        """``upsert`` for any iterable of mappings (a generator too), in batches of one statement each; all or
        nothing.

        Each row is inserted, or updates the row whose ``match`` fields are equal, exactly as ``upsert`` would;
        values are checked and converted as ``create_many`` does. Returns the number of rows given, or with
        ``returning=True`` the rows written, in input order.
        """
        key = self._unique_key(match)
        table = self.model.__table__
        audited = audit.is_audited(self.model)
        read_back = returning or audited or self._dialect.upsert_skips_other_key_clashes
        self.session.flush()
        count, ids = 0, []
        with self.session.begin_nested():
            # The connection is taken inside the savepoint: that is what makes SQLAlchemy emit SAVEPOINT.
            inserter = BulkInserter(
                table, self.session.connection(), self.entity, protected=self._protected(),
                statement_for=lambda keys: self._dialect.upsert_statement(table, key, self._upsert_updates(keys, key)),
            )
            for batch in batched(self._upsert_rows(rows, key), self.batch_size):
                count += inserter.insert(batch)
                if not read_back:
                    continue
                batch_ids = self._written_ids(batch, key, inserter)
                if audited:  # one entry per batch, listing its ids
                    audit.record_bulk(self.session, self.entity, "upsert_many", [str(i) for i in batch_ids], {})
                if returning:
                    ids += batch_ids
        # Instances loaded before hold the old values of what an upsert changes (never the key or created_at).
        self._expire_loaded([c.key for c in table.columns if c.key not in {*key, self._pk.key, "created_at"}])
        return self._load_in_order(ids) if returning else count

    def _upsert_rows(self, rows: Iterable[Mapping[str, Any]], key: Sequence[str]) -> Iterable[Mapping[str, Any]]:
        """The rows as ``create_many`` takes them (the ``_prepared`` hook applied), each giving every ``key`` field."""
        entity = self.entity
        for row in self._prepared_rows(rows):
            # A plain dict is told apart first: the abstract Mapping check costs more than the rest of this loop.
            if (type(row) is dict or isinstance(row, Mapping)) and None in [row.get(name) for name in key]:
                check_upsert_key(entity, row, key)
            yield row

    def _written_ids(self, batch: Sequence[Mapping[str, Any]], key: Sequence[str], inserter: BulkInserter) -> list[Any]:
        """The ids of the rows a batch wrote, in its order; ``Conflict`` if one was not written (MariaDB: it clashed
        on a unique key other than ``key``, and the guarded update left the row as it was)."""
        columns = [self._column(name) for name in key]
        stored = value_rules.stored
        wanted = [tuple(stored(self.entity, column, row[column.key]) for column in columns) for row in batch]
        distinct = list(dict.fromkeys(wanted))
        found = select(self._pk, *columns).where(
            columns[0].in_([k[0] for k in distinct]) if len(columns) == 1 else tuple_(*columns).in_(distinct)
        )
        if "updated_at" in self.model.__table__.c and not any("updated_at" in row for row in batch):
            found = found.where(self._column("updated_at") == inserter.instant())  # written by this call
        by_key = {tuple(row[1:]): row[0] for row in self.session.execute(self._dialect.latest_committed(found))}
        if len(by_key) < len(distinct):
            message = f"{self.entity}: upsert clashed on a unique key other than {list(key)}"
            raise Conflict(message, entity=self.entity)
        return [by_key[k] for k in wanted]

    def _undone_on_failure(self, dialect: dialects.Dialect) -> contextlib.AbstractContextManager[Any]:
        """A savepoint where a failed statement would spoil the transaction or a write follows the statement (the
        audit entry); elsewhere the engine itself undoes just the failed statement, and a savepoint costs two."""
        if dialect.failed_statement_aborts_transaction or audit.is_audited(self.model):
            return self.session.begin_nested()
        return contextlib.nullcontext()

    def _upsert_shape(
        self, dialect: dialects.Dialect, match: tuple[str, ...], keys: tuple[str, ...], *, update: bool = True
    ) -> Any:
        """The upsert of one row with these keys, built once per (model, engine, match, keys, update): its values
        are bound parameters (``_PARAMETER`` + key), and it returns the row where the engine can. Without
        ``update``, a row already holding ``match`` is left alone (and none is returned)."""
        shape = (self.model, dialect, match, keys, update)
        with _UPSERT_SHAPES_LOCK:
            statement = _UPSERT_SHAPES.pop(shape, None)
        if statement is None:
            table = self.model.__table__
            statement = dialect.upsert_statement(table, match, self._upsert_updates(keys, match) if update else {})
            statement = statement.values({key: bindparam(_PARAMETER + key) for key in keys})
            if dialect.upsert_returns_rows:
                statement = select(self.model).from_statement(statement.returning(*table.c))
        with _UPSERT_SHAPES_LOCK:
            while len(_UPSERT_SHAPES) >= _UPSERT_SHAPES_KEPT:
                _UPSERT_SHAPES.pop(next(iter(_UPSERT_SHAPES)))  # the least recently used
            _UPSERT_SHAPES[shape] = statement
        return statement

    def _written_by(self, instance: Any, row: Mapping[str, Any]) -> bool:
        """Whether the upsert just wrote ``instance``: its ``updated_at`` is this statement's instant."""
        if "updated_at" not in self.model.__table__.c:
            return True  # nothing to tell by; such models rely on the database's own unique checks
        return bool(instance.updated_at == row["updated_at"])

    def _upsert_updates(self, fields: Iterable[str], match: Sequence[str]) -> dict[str, Any]:
        table = self.model.__table__
        keep = {*match, self._pk.key, "created_at", "version", "deleted_at"}
        updates: dict[str, Any] = {key: dialects.EXCLUDED for key in fields if key not in keep}
        if "updated_at" in table.c:
            updates["updated_at"] = dialects.EXCLUDED
        # Bound-free expressions: the row's values are a statement's only parameters (``upsert_statement``).
        if self._versioned:
            updates["version"] = table.c.version + literal_column("1")
        if self._soft:
            updates["deleted_at"] = null()
        return updates

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
        return get_or_create(self, defaults, match)

    def _made_unless_held(self, match: Mapping[str, Any], defaults: Mapping[str, Any]) -> ModelT | None:
        """The new row of ``get_or_create``, or None when another holds ``match``'s unique key.

        Where it can, one ``INSERT … ON CONFLICT DO NOTHING RETURNING`` (no ORM flush, and a savepoint only where a
        failed statement spoils the transaction); else ``create``, whose unique violation says the key is held.
        """
        dialect = self._dialect
        key = tuple(match)
        plain = type(self).create is WriteRepository.create and not audit.is_audited(self.model)
        if not (plain and dialect.upsert_returns_rows and frozenset(key) in self._unique_keys()):
            return self.create(**match, **defaults)
        fields = {**match, **defaults}
        self._check_writable(fields, allow_pk=True)
        self._check_required(fields)
        row = self._with_defaults(self._converted(fields))
        statement = self._upsert_shape(dialect, key, tuple(row), update=False)
        self.session.flush()
        with self._undone_on_failure(dialect):
            made = self.session.scalars(statement, {_PARAMETER + k: v for k, v in row.items()})
            return made.one_or_none()


_PARAMETER = "upsert_"  # a bound parameter may not take a column's own name in VALUES
_REFRESHING = {"populate_existing": True}  # an instance already loaded takes the values just written
_UPSERT_SHAPES: dict[tuple[Any, ...], Any] = {}  # least recently used first
_UPSERT_SHAPES_KEPT = 512
_UPSERT_SHAPES_LOCK = threading.Lock()


@functools.lru_cache(maxsize=512)
def _find_shape(model: Any, keys: tuple[str, ...], nulls: tuple[str, ...], locking: bool) -> Select[Any]:
    """The visible row whose ``keys`` equal bound parameters (``_PARAMETER`` + key) and ``nulls`` are NULL; built
    once per shape, so that a lookup only binds its values."""
    table = model.__table__
    statement = select(model).where(
        *(table.c[key].is_(None) if key in nulls else table.c[key] == bindparam(_PARAMETER + key) for key in keys)
    )
    if "deleted_at" in table.c:
        statement = statement.where(table.c.deleted_at.is_(None))
    if locking:
        statement = statement.with_for_update(read=True).execution_options(populate_existing=True)
    return statement.limit(1)


def _rowcount(result: Any) -> int:
    """Rows matched by an UPDATE or DELETE (MariaDB too: SQLAlchemy connects with CLIENT.FOUND_ROWS)."""
    return int(result.rowcount)


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


__all__ = ["BaseRepository", "Page", "ReadRepository", "WriteRepository", "build_policy", "translated"]
