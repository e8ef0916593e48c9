"""``InMemoryRepository``: a fake ``BaseRepository`` for unit tests, with the same methods and the same rules.

A fake is configured like the real repository::

    class FakeAccountRepository(InMemoryRepository[Account]):
        model = Account
        sortable = frozenset({"created_at", "name"})

    store = InMemoryStore()
    mine, theirs = FakeAccountRepository(store), FakeAccountRepository(store)  # two sessions, one database

What is accepted and refused comes from the code the SQL repository uses (``rules``, ``query_spec``);
filters, NULL ordering, keyset pages, soft delete, versions, upsert and the unique and foreign-key
constraints follow the SQL repository's rules. Rows are stored as snapshots and every read hands out a fresh
detached instance, as a database does: an instance whose version is behind the stored row is stale.

Values are converted and refused by the rules every engine's writes follow (``values``), so the fake and the
engines store, return and refuse the same things; ``tests/contract/test_differential.py`` checks it.

Where it differs from the SQL repository, by design:

- No session: no identity map and no transaction. A write is stored at once (all or nothing per call), two
  reads of one row give two instances, ``for_update`` locks nothing, and there is nothing to roll back.
  Instances behave as detached ones: changes made on an instance are saved with its next ``update`` in one
  write (an instance still attached to a session gets them flushed first, as a separate version).
- Strings sort by code point, as on SQLite, MariaDB (binary collation) and a PostgreSQL database created with
  the C collation; a PostgreSQL database with a linguistic collation sorts otherwise.
- SQL-expression and server-side defaults are not evaluated: the column is left NULL (a Conflict where it
  is NOT NULL).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal, TypeVar, cast, overload

from sqlalchemy import inspect as sa_inspect
from sqlalchemy.orm import configure_mappers, make_transient_to_detached
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.sql.schema import CallableColumnDefault, Column, ScalarElementColumnDefault

from db.errors import DatabaseError, StaleVersion, ValidationError
from db.models.base import STATEMENT_DEFAULT, utcnow
from db.repositories import query_spec as qs
from db.repositories.bulk import batched
from db.repositories.rules import Listing, RepositoryRules, check_upsert_key, get_or_create
from db.testing.memory_store import (
    Changes,
    InMemoryStore,
    Key,
    Row,
    check_not_null,
    fresh,
    key_of,
    to_stored,
)

ModelT = TypeVar("ModelT")


class InMemoryRepository(RepositoryRules[ModelT]):
    """In-memory repository over ``model``; see the module docstring (the rules it shares live in ``rules``)."""

    def __init__(self, store: InMemoryStore | None = None) -> None:
        self.store = store if store is not None else InMemoryStore()

    # --- storage ---------------------------------------------------------------------------------------------

    def _rows(self) -> dict[Key, Row]:
        return self.store.rows(self._table.fullname)

    # --- create ----------------------------------------------------------------------------------------------

    def create(self, **fields: Any) -> ModelT:
        self._check_writable(fields, allow_pk=True)
        self._check_required(fields)
        return self._load(self._insert({key: value for key, value in fields.items() if value is not None}))

    def _insert(self, fields: Mapping[str, Any]) -> Row:
        """Store one row (None fields left out beforehand take their defaults, as the ORM does)."""
        with self.store.lock:
            row = self._new_row(fields)
            changes = Changes(self.store, self.entity)
            changes.insert(self._table, row)
            changes.apply()
        return row

    @overload
    def create_many(self, rows: Iterable[Mapping[str, Any]], *, returning: Literal[False] = False) -> int: ...
    @overload
    def create_many(
        self, rows: Iterable[Mapping[str, Any]], *, returning: Literal[True]
    ) -> list[ModelT]: ...

    def create_many(
        self, rows: Iterable[Mapping[str, Any]], *, returning: bool = False
    ) -> int | list[ModelT]:
        """Insert any iterable of mappings; all or nothing. The rules are ``bulk.BulkInserter``'s.

        As there, rows go in batches of ``batch_size``: every row of a batch is checked (values, required fields)
        before its constraints, so a failing call names the same kind of problem as on an engine.
        """
        statement: dict[str, Any] = {}
        stored: list[Row] = []
        with self.store.lock:
            changes = Changes(self.store, self.entity)
            for batch in batched(rows, self.batch_size):
                built = [self._bulk_row(raw, statement) for raw in batch]
                for row in built:
                    changes.insert(self._table, row)
                changes.check()
                stored += built
            changes.apply()
        return [self._load(row) for row in stored] if returning else len(stored)

    def _bulk_row(self, raw: Any, statement: dict[str, Any]) -> Row:
        if not isinstance(raw, Mapping):
            raise ValidationError(f"{self.entity}: each row must be a mapping of field to value")
        unknown = [str(key)[:64] for key in raw if key not in self._table.c or key in self._protected()]
        if unknown:
            raise ValidationError(f"{self.entity}: unknown field {unknown[0]!r}", field=unknown[0])
        self._check_required(raw)
        return self._new_row(raw, statement)

    def _new_row(self, fields: Mapping[str, Any], statement: dict[str, Any] | None = None) -> Row:
        """A complete row: the given values as stored, defaults for the rest; NULL in NOT NULL is refused.

        Without ``statement`` defaults are evaluated as the ORM does for one INSERT: in column order, each
        seeing the row's values before it (``updated_at`` takes ``created_at``). With it, the per-statement
        defaults (``STATEMENT_DEFAULT``) all take the one instant cached there, as the bulk insert and the
        upsert do: ``created_at == updated_at`` on a new row either way.
        """
        values: dict[str, Any] = dict(fields)
        for column in self._table.columns:
            if column.key not in values:
                values[column.key] = self._default(column, statement, values)
        row: Row = {column.key: to_stored(self.entity, column, values[column.key]) for column in self._table.columns}
        check_not_null(self.entity, self._table, row)
        return row

    def _default(self, column: Column[Any], statement: dict[str, Any] | None, values: Mapping[str, Any]) -> Any:
        default = column.default
        if isinstance(default, ScalarElementColumnDefault):
            return default.arg
        if isinstance(default, CallableColumnDefault):
            if statement is None:
                return _call(default, _InsertContext(values))
            if not column.info.get(STATEMENT_DEFAULT):
                return _call(default)
            if STATEMENT_DEFAULT not in statement:
                statement[STATEMENT_DEFAULT] = _call(default)
            return statement[STATEMENT_DEFAULT]
        if column is self._table.autoincrement_column:
            return self.store.next_value(self._table, column.key)
        return None  # no default, or a SQL expression the fake cannot evaluate

    # --- read ------------------------------------------------------------------------------------------------

    def get_by_id(self, ident: Any, *, include_deleted: bool = False, for_update: bool = False) -> ModelT | None:
        """The row with this primary key, or None. ``for_update`` is accepted and has nothing to lock."""
        row = self._rows().get((self._coerce_id(ident),))
        if row is None or (not include_deleted and self._row_deleted(row)):
            return None
        return self._load(row)

    def get_many(self, ids: Iterable[Any], *, include_deleted: bool = False) -> list[ModelT]:
        """The rows with these primary keys, in the order asked, skipping the missing ones."""
        keys = list(dict.fromkeys(self._coerce_id(ident) for ident in ids))
        rows = self._rows()
        found = [rows[(key,)] for key in keys if (key,) in rows]
        return [self._load(row) for row in found if include_deleted or not self._row_deleted(row)]

    def exists(self, **filters: Any) -> bool:
        return bool(self._select(filters, include_deleted=False))

    def count(self, filters: Mapping[str, Any] | None = None, *, include_deleted: bool = False) -> int:
        return len(self._select(filters, include_deleted))

    def _listed(self, listing: Listing, limit: int | None, offset: int) -> list[ModelT]:
        rows = _sorted(self._select(listing.filters, listing.include_deleted), listing.keys)
        end = None if limit is None else offset + limit
        return [self._load(row) for row in rows[offset:end]]

    def _paged(self, listing: Listing, after: str | None, limit: int) -> list[ModelT]:
        """``page`` with the SQL repository's semantics: strictly after the cursor's row."""
        keys = listing.keys
        rows = self._select(listing.filters, listing.include_deleted)
        if after is not None:
            values = qs.decode_cursor(self.policy(), keys, after)
            rows = [row for row in rows if _is_after(row, keys, values)]
        return [self._load(row) for row in _sorted(rows, keys)[:limit]]

    def _select(self, filters: Mapping[str, Any] | None, include_deleted: bool) -> list[Row]:
        conditions = qs.parse_filters(self.policy(), filters)
        with self.store.lock:
            rows = list(self._rows().values())
        return [row for row in rows if (include_deleted or not self._row_deleted(row))
                and all(matches(condition, row[condition.field]) for condition in conditions)]

    # --- update ----------------------------------------------------------------------------------------------

    def update(self, instance_or_id: Any, **fields: Any) -> ModelT:
        """Change the given fields. A ``version`` among them is the version the caller last saw.

        As with a session, changes made directly on the instance are saved too, an instance whose version is
        behind the stored row raises StaleVersion (and is reloaded), and a call that changes nothing writes
        nothing (no new version).
        """
        with self.store.lock:
            instance = self._resolve(instance_or_id)
            self._check_update(instance, fields)
            self._save(instance, fields)
        return cast(ModelT, instance)

    def _save(self, instance: Any, fields: Mapping[str, Any]) -> None:
        """Set ``fields`` on the instance and store what changed since it was read, as a flush would."""
        state = sa_inspect(instance)
        for key, value in fields.items():
            setattr(instance, key, value)
        if state.key is None:  # never stored: a session would INSERT it
            values = {key: value for key, value in state.dict.items() if key in self._table.c}
            self._refresh(instance, self._insert({k: v for k, v in values.items() if v is not None}))
            make_transient_to_detached(instance)
            return
        changed = {attr.key: attr.value for attr in state.attrs
                   if attr.key in self._table.c and attr.history.has_changes()}
        if not changed:
            return
        try:
            row = self._store_changes(state.identity, _loaded(state, "version"), changed)
        except DatabaseError:
            self._refresh(instance, self._rows().get(state.identity))
            raise
        self._refresh(instance, row)

    def _store_changes(self, key: Key, seen_version: Any, changed: Mapping[str, Any]) -> Row:
        values = {name: to_stored(self.entity, self._table.c[name], value) for name, value in changed.items()}
        stored = self._rows().get(key)
        if stored is None or (self._versioned and stored["version"] != seen_version):
            raise StaleVersion(self.entity, "row")
        row = {**stored, **values, **self._on_update(values)}
        if self._versioned and "version" not in values:
            row["version"] = seen_version + 1
        check_not_null(self.entity, self._table, row, values)
        changes = Changes(self.store, self.entity)
        changes.update(self._table, key, row)
        changes.apply()
        return row

    def _on_update(self, values: Mapping[str, Any]) -> Row:
        """``onupdate`` values (``updated_at``) of the columns an UPDATE does not set itself."""
        updates: Row = {}
        for column in self._table.columns:
            default = column.onupdate
            if column.key in values or default is None:
                continue
            if isinstance(default, CallableColumnDefault):
                updates[column.key] = to_stored(self.entity, column, _call(default))
            elif isinstance(default, ScalarElementColumnDefault):
                updates[column.key] = to_stored(self.entity, column, default.arg)
        return updates

    def update_many(self, filters: Mapping[str, Any], **fields: Any) -> int:
        """Update every visible row that matches; returns how many matched."""
        with self.store.lock:
            rows = self._select(self._required(filters), include_deleted=False)
            self._check_bulk_update(fields)
            return self._bulk_update(rows, fields)

    def _bulk_update(self, rows: Sequence[Row], fields: Mapping[str, Any]) -> int:
        values = {name: to_stored(self.entity, self._table.c[name], value) for name, value in fields.items()}
        values.update(self._on_update(values))
        if rows:
            check_not_null(self.entity, self._table, values)
        changes = Changes(self.store, self.entity)
        for row in rows:
            bumped = {"version": row["version"] + 1} if self._versioned else {}
            changes.update(self._table, key_of(self._table, row), {**row, **values, **bumped})
        changes.apply()
        return len(rows)

    # --- delete ----------------------------------------------------------------------------------------------

    def delete(self, instance_or_id: Any, *, hard: bool = False) -> None:
        """Soft-delete (set ``deleted_at``) where the model supports it, unless ``hard``."""
        with self.store.lock:
            instance = self._resolve(instance_or_id, include_deleted=hard)
            if self._soft and not hard:
                self._save(instance, {"deleted_at": utcnow()})
            else:
                self._remove(instance)

    def _remove(self, instance: Any) -> None:
        state = sa_inspect(instance)
        if state.key is None:
            raise DatabaseError(f"{self.entity}: cannot delete an instance that was never stored")
        stored = self._rows().get(state.identity)
        if stored is None or (self._versioned and stored["version"] != _loaded(state, "version")):
            if stored is not None or self._versioned:
                raise StaleVersion(self.entity, "row")
            return  # already gone: a session only warns
        changes = Changes(self.store, self.entity)
        changes.delete(self._table, [state.identity])
        changes.apply()

    def delete_many(self, filters: Mapping[str, Any], *, hard: bool = False, include_deleted: bool = False) -> int:
        """Delete every matching row (soft where supported, unless ``hard``); returns how many."""
        with self.store.lock:
            rows = self._select(self._required(filters), include_deleted)
            if self._soft and not hard:
                return self._bulk_update(rows, {"deleted_at": utcnow()})
            changes = Changes(self.store, self.entity)
            changes.delete(self._table, [key_of(self._table, row) for row in rows])
            changes.apply()
            return len(rows)

    # --- upsert ----------------------------------------------------------------------------------------------

    def upsert(self, values: Mapping[str, Any], *, match: Sequence[str]) -> ModelT:
        """Insert, or update the row whose ``match`` fields are equal (soft-deleted or not).

        ``match`` must name a unique key. An update keeps ``id`` and ``created_at``, bumps ``version`` and
        ``updated_at``, and brings back a soft-deleted row.
        """
        match, fields = self._upsert_input(values, match)
        with self.store.lock:
            row = self._new_row(fields, {STATEMENT_DEFAULT: utcnow()})  # BaseRepository._with_defaults
            existing = self._holder(match, row)
            changes = Changes(self.store, self.entity)
            if existing is None:
                changes.insert(self._table, row)
            else:
                row = {**existing, **self._upsert_updates(fields, match, row, existing)}
                changes.update(self._table, key_of(self._table, existing), row)
            changes.apply()
        return self._load(row)

    @overload
    def upsert_many(self, rows: Iterable[Mapping[str, Any]], *, match: Sequence[str],
                    returning: Literal[False] = False) -> int: ...
    @overload
    def upsert_many(self, rows: Iterable[Mapping[str, Any]], *, match: Sequence[str],
                    returning: Literal[True]) -> list[ModelT]: ...

    def upsert_many(
        self, rows: Iterable[Mapping[str, Any]], *, match: Sequence[str], returning: bool = False
    ) -> int | list[ModelT]:
        """``upsert`` for any iterable of mappings, in batches checked as ``create_many``'s are; all or nothing."""
        key = self._unique_key(match)
        statement: dict[str, Any] = {STATEMENT_DEFAULT: utcnow()}  # one instant per call, as in SQL
        written: list[Key] = []
        with self.store.lock:
            holders = {tuple(row[name] for name in key): row for row in self._rows().values()}
            pending: dict[Key, Row] = {}  # the rows this call writes, by primary key, last write of each
            fresh: list[Row] = []  # the rows it inserts (a primary key given twice is the insert's Conflict)
            for batch in batched(rows, self.batch_size):
                for raw in batch:
                    row, new = self._upserted_row(raw, key, statement, holders)
                    primary = key_of(self._table, row)
                    if new:
                        fresh.append(row)
                    holders[tuple(row[name] for name in key)] = pending[primary] = row
                    written.append(primary)
            changes = Changes(self.store, self.entity)
            inserted = {key_of(self._table, row) for row in fresh}
            for row in fresh:
                changes.insert(self._table, pending[key_of(self._table, row)])  # its last write
            for primary, row in pending.items():
                if primary not in inserted:
                    changes.update(self._table, primary, row)
            changes.check()
            changes.apply()
            stored = self._rows()
            return [self._load(stored[primary]) for primary in written] if returning else len(written)

    def _upserted_row(self, raw: Any, match: Sequence[str], statement: dict[str, Any],
                      holders: Mapping[tuple[Any, ...], Row]) -> tuple[Row, bool]:
        """The row ``raw`` leaves and whether it is new: the holder of its ``match`` values updated as ``upsert``
        would, or a new row."""
        if isinstance(raw, Mapping):
            check_upsert_key(self.entity, raw, match)
        row = self._bulk_row(raw, statement)
        existing = holders.get(tuple(row[name] for name in match))
        if existing is None:
            return row, True
        return {**existing, **self._upsert_updates(raw, match, row, existing)}, False

    def _holder(self, match: Sequence[str], row: Row) -> Row | None:
        """The stored row (deleted or not) that holds ``row``'s values of the unique key ``match``."""
        wanted = [row[key] for key in match]
        if any(value is None for value in wanted):
            return None
        with self.store.lock:
            return next((stored for stored in self._rows().values()
                         if [stored[key] for key in match] == wanted), None)

    def _upsert_updates(self, fields: Mapping[str, Any], match: Sequence[str], row: Row, existing: Row) -> Row:
        keep = {*match, self._pk.key, "created_at", "version", "deleted_at"}
        updates = {key: row[key] for key in fields if key not in keep}
        if "updated_at" in self._table.c:
            updates["updated_at"] = row["updated_at"]
        if self._versioned:
            updates["version"] = existing["version"] + 1
        if self._soft:
            updates["deleted_at"] = None
        return updates

    def get_or_create(self, defaults: Mapping[str, Any] | None = None, **match: Any) -> tuple[ModelT, bool]:
        """The visible row matching ``match`` (None matches NULL), or a new one from ``match`` and ``defaults``."""
        with self.store.lock:
            return get_or_create(self, defaults, match)

    def _made_unless_held(self, match: Mapping[str, Any], defaults: Mapping[str, Any]) -> ModelT | None:
        return self.create(**match, **defaults)

    def _find(self, match: Mapping[str, Any], *, locking: bool = False) -> ModelT | None:
        """``locking`` is accepted and has nothing to lock: the store's lock is held around get_or_create."""
        wanted = {key: to_stored(self.entity, self._table.c[key], value, compare=True)
                  for key, value in match.items()}
        for row in list(self._rows().values()):
            if not self._row_deleted(row) and all(row[key] == value for key, value in wanted.items()):
                return self._load(row)
        return None

    # --- helpers ---------------------------------------------------------------------------------------------

    def _load(self, row: Row) -> ModelT:
        """A fresh detached instance of the row, as if just loaded by a session that has since closed."""
        configure_mappers()  # attribute instrumentation is complete only once mappers are configured
        instance = self.model.__mapper__.class_manager.new_instance()
        self._refresh(instance, row)
        make_transient_to_detached(instance)
        return cast(ModelT, instance)

    @staticmethod
    def _refresh(instance: Any, row: Row | None) -> None:
        """Reset the instance to the stored row, with no pending changes (as an expire and reload would)."""
        for key, value in (row or {}).items():
            set_committed_value(instance, key, fresh(value))

    def _row_deleted(self, row: Row) -> bool:
        return self._soft and row["deleted_at"] is not None


# --- filters, order and keyset in Python, with SQL's semantics -----------------------------------------------

_MATCHERS: dict[str, Callable[[Any, Any], bool]] = {
    "eq": operator.eq,
    "ne": operator.ne,
    "lt": operator.lt,
    "lte": operator.le,
    "gt": operator.gt,
    "gte": operator.ge,
    "in": lambda value, operand: value in operand,
    "not_in": lambda value, operand: value not in operand,
    "between": lambda value, operand: operand[0] <= value <= operand[1],
    "contains": lambda value, operand: qs.ascii_fold(operand) in qs.ascii_fold(value),
    "startswith": lambda value, operand: qs.ascii_fold(value).startswith(qs.ascii_fold(operand)),
}


def matches(condition: qs.Condition, value: Any) -> bool:
    """Whether a stored value satisfies a parsed condition as SQL decides: NULL matches only ``isnull``
    (and an empty ``not_in``, which is TRUE); ``contains``/``startswith`` are literal and case-insensitive."""
    if condition.op == "isnull":
        return (value is None) is condition.value
    if condition.op == "not_in" and not condition.value:
        return True
    return value is not None and _MATCHERS[condition.op](value, condition.value)


def _sorted(rows: Iterable[Row], keys: Sequence[qs.SortKey]) -> list[Row]:
    """Rows in ``keys`` order with NULL as the smallest value (stable sorts, last key first)."""
    result = list(rows)
    for key in reversed(keys):
        result.sort(key=_nulls_first(key.field), reverse=key.descending)
    return result


def _nulls_first(field: str) -> Callable[[Row], tuple[bool, Any]]:
    def sort_key(row: Row) -> tuple[bool, Any]:
        value = row[field]
        return (False, 0) if value is None else (True, value)

    return sort_key


def _is_after(row: Row, keys: Sequence[qs.SortKey], values: Sequence[Any]) -> bool:
    """``BaseRepository._after`` in Python: strictly after ``values`` in the order ``keys``."""
    for key, value in zip(keys, values, strict=True):
        if _beyond(row[key.field], value, key.descending):
            return True
        if not _same(row[key.field], value):
            return False
    return False


def _same(stored: Any, value: Any) -> bool:
    return stored is None if value is None else stored is not None and stored == value


def _beyond(stored: Any, value: Any, descending: bool) -> bool:
    if value is None:
        return not descending and stored is not None
    if descending:
        return stored is None or stored < value
    return stored is not None and stored > value


class _InsertContext:
    """What a context-taking default sees of its INSERT: the row's values so far (given ones, then defaults)."""

    def __init__(self, values: Mapping[str, Any]) -> None:
        self.current_parameters = values

    def get_current_parameters(self, isolate_multiinsert_groups: bool = True) -> Mapping[str, Any]:
        return self.current_parameters


def _call(default: CallableColumnDefault, context: _InsertContext | None = None) -> Any:
    """A Python-side callable default, called as SQLAlchemy would: with the statement's context, or None
    where the SQL repository calls it outside a statement (the bulk insert, upsert and onupdate values)."""
    return cast(Callable[[Any], Any], default.arg)(context)


def _loaded(state: Any, key: str) -> Any:
    """The value of attribute ``key`` as last read from the store (before any change on the instance)."""
    if key not in state.attrs:
        return None
    history = state.attrs[key].history
    seen = history.deleted or history.unchanged
    return seen[0] if seen else None


__all__ = ["InMemoryRepository", "InMemoryStore", "matches"]
