"""``InMemoryStore``: the rows behind ``InMemoryRepository``, and the database rules it enforces.

Rows are plain dicts of column values (snapshots), keyed by primary key, per table name. Several fakes
that share one store see each other's writes, which is how a test plays two sessions. Writes go through
``Changes``: a set of inserts, updates and deletes that is checked against the tables' unique and
foreign-key constraints and then applied all at once, or not at all.

Values are stored as the engines return them, converted by ``values`` (the rules every engine's writes follow):
datetimes in UTC, decimals rounded to the column's scale, ints of float columns as floats, ISO and UUID text parsed.
What the rules refuse is refused here too (a naive datetime, a string longer than its column, a number out of range,
a NUL character, NaN).
"""

from __future__ import annotations

import copy
import datetime as dt
import functools
import threading
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy.sql.schema import Column, ForeignKeyConstraint, Table, UniqueConstraint

from db.errors import Conflict, ValidationError
from db.repositories import values

Row = dict[str, Any]
Key = tuple[Any, ...]

_FK_MESSAGE = "refers to a missing row or is still referred to"


class InMemoryStore:
    """Rows per table name; share one between fakes to simulate several sessions on one database.

    ``enforce_foreign_keys=False`` lets a test store child rows without their parents.
    """

    def __init__(self, *, enforce_foreign_keys: bool = True) -> None:
        self.tables: dict[str, dict[Key, Row]] = {}
        self.enforce_foreign_keys = enforce_foreign_keys
        self.lock = threading.RLock()
        self._sequences: dict[str, int] = {}

    def rows(self, table: str) -> dict[Key, Row]:
        """The stored rows of ``table`` by primary key (live: treat them as read-only)."""
        return self.tables.setdefault(table, {})

    def next_value(self, table: Table, column: str) -> int:
        """The next value of an autoincrement integer column: never reused, always above what is stored."""
        stored = (row[column] for row in self.rows(table.fullname).values() if isinstance(row[column], int))
        value = int(max(self._sequences.get(table.fullname, 0), *stored, 0)) + 1
        self._sequences[table.fullname] = value
        return value

    def clear(self) -> None:
        self.tables.clear()
        self._sequences.clear()


# --- constraints --------------------------------------------------------------------------------------------


def key_of(table: Table, row: Mapping[str, Any]) -> Key:
    return tuple(row[column.key] for column in table.primary_key.columns)


@functools.cache
def unique_constraints(table: Table) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """(name, column keys) of every unique key but the primary key, named as PostgreSQL reports them."""
    entries = [(c.name, tuple(col.key for col in c.columns)) for c in table.constraints
               if isinstance(c, UniqueConstraint)]
    entries += [(index.name, tuple(col.key for col in index.columns)) for index in table.indexes
                if index.unique]
    entries += [(None, (column.key,)) for column in table.columns if column.unique]
    found: dict[frozenset[str], tuple[str, tuple[str, ...]]] = {
        frozenset(column.key for column in table.primary_key.columns): ("", ())
    }
    for name, columns in entries:
        found.setdefault(frozenset(columns), (constraint_name(table, name, columns), columns))
    return tuple(entry for entry in found.values() if entry[1])


def constraint_name(table: Table, name: Any, columns: Iterable[str]) -> str:
    return name if isinstance(name, str) else f"{table.name}.{','.join(columns)}"


def referencing(table: Table) -> tuple[ForeignKeyConstraint, ...]:
    """The foreign keys (of any table in the same metadata) that refer to ``table``."""
    return tuple(fk for other in table.metadata.tables.values() for fk in other.foreign_key_constraints
                 if fk.referred_table is table)


def _referred_keys(fk: ForeignKeyConstraint) -> list[str]:
    return [element.column.key for element in fk.elements]


def _pick(row: Mapping[str, Any], columns: Iterable[str]) -> tuple[Any, ...] | None:
    """The row's values for ``columns``, or None where one is NULL (NULLs never conflict nor refer)."""
    values = tuple(row[column] for column in columns)
    return None if any(value is None for value in values) else values


def required(entity: str, table: Table, key: str) -> ValidationError:
    """A NOT NULL column left NULL, as the repositories report it on every engine."""
    return ValidationError(f"{entity}.{key} is required", field=key, rule="required")


def check_not_null(
    entity: str, table: Table, row: Mapping[str, Any], keys: Iterable[str] | None = None
) -> None:
    for key in keys if keys is not None else row:
        if row[key] is None and not table.c[key].nullable:
            raise required(entity, table, key)


@dataclass(slots=True)
class _TableChange:
    table: Table
    inserted: dict[Key, Row] = field(default_factory=dict)
    updated: dict[Key, Row] = field(default_factory=dict)
    deleted: set[Key] = field(default_factory=set)

    def written(self) -> dict[Key, Row]:
        return {**self.updated, **self.inserted}


class Changes:
    """Inserts, updates and deletes across tables, checked as one statement would be, then applied.

    Call ``apply()`` with the store's lock held from the first read the changes depend on.
    """

    def __init__(self, store: InMemoryStore, entity: str) -> None:
        self.store = store
        self.entity = entity
        self._changes: dict[str, _TableChange] = {}

    def _change(self, table: Table) -> _TableChange:
        return self._changes.setdefault(table.fullname, _TableChange(table))

    def rows(self, table: Table) -> dict[Key, Row]:
        """``table`` as it would be with these changes applied."""
        change = self._changes.get(table.fullname)
        current = self.store.rows(table.fullname)
        if change is None:
            return current
        rows = {key: row for key, row in current.items() if key not in change.deleted}
        rows.update(change.written())
        return rows

    def insert(self, table: Table, row: Row) -> None:
        key, change = key_of(table, row), self._change(table)
        if key in change.inserted or (key in self.store.rows(table.fullname) and key not in change.deleted):
            name = constraint_name(table, table.primary_key.name, (c.key for c in table.primary_key.columns))
            raise Conflict(f"{self.entity} ({name}): already exists", entity=self.entity, constraint=name)
        change.inserted[key] = row

    def update(self, table: Table, key: Key, row: Row) -> None:
        self._change(table).updated[key] = row

    def delete(self, table: Table, keys: Iterable[Key]) -> None:
        """Delete rows, cascading (or setting NULL) where a foreign key says ``ondelete``."""
        change, stored = self._change(table), self.store.rows(table.fullname)
        doomed = [key for key in keys if key in stored and key not in change.deleted]
        change.deleted.update(doomed)
        if not doomed or not self.store.enforce_foreign_keys:
            return
        for fk in referencing(table):
            action = (fk.ondelete or "").upper()
            if action in ("CASCADE", "SET NULL"):
                gone = {_pick(stored[key], _referred_keys(fk)) for key in doomed}
                self._on_delete(fk, action, gone - {None})

    def _on_delete(self, fk: ForeignKeyConstraint, action: str, gone: set[Any]) -> None:
        child = fk.table
        orphans = {key: row for key, row in self.rows(child).items() if _pick(row, fk.column_keys) in gone}
        if action == "CASCADE":
            self.delete(child, orphans)
            return
        for key, row in orphans.items():
            cleared = {**row, **dict.fromkeys(fk.column_keys)}
            check_not_null(self.entity, child, cleared, fk.column_keys)
            self.update(child, key, cleared)

    def check(self) -> None:
        """Conflict unless every unique and foreign key the changes touch holds."""
        for change in self._changes.values():
            self._check_unique(change)
        if self.store.enforce_foreign_keys:
            for change in self._changes.values():
                self._check_refers(change)
                self._check_referred(change)

    def apply(self) -> None:
        """Check every unique and foreign key the changes touch; store them all, or raise Conflict."""
        self.check()
        for name, change in self._changes.items():
            rows = self.store.rows(name)
            for key in change.deleted:
                rows.pop(key, None)
            rows.update(change.written())

    def _check_unique(self, change: _TableChange) -> None:
        written = change.written()
        if not written:
            return
        for name, columns in unique_constraints(change.table):
            taken: dict[tuple[Any, ...], Key] = {}
            for key, row in written.items():
                self._claim(taken, _pick(row, columns), key, name)
            for key, row in self.store.rows(change.table.fullname).items():
                if key not in written and key not in change.deleted:
                    self._claim(taken, _pick(row, columns), key, name)

    def _claim(self, taken: dict[tuple[Any, ...], Key], values: tuple[Any, ...] | None, key: Key,
               name: str) -> None:
        if values is None:
            return
        if taken.setdefault(values, key) != key:
            raise Conflict(f"{self.entity} ({name}): already exists", entity=self.entity, constraint=name)

    def _check_refers(self, change: _TableChange) -> None:
        """Every inserted row, and every updated row whose foreign key changed, points at an existing row."""
        stored = self.store.rows(change.table.fullname)
        for fk in change.table.foreign_key_constraints:
            wanted = {_pick(row, fk.column_keys) for row in change.inserted.values()}
            wanted |= {_pick(row, fk.column_keys) for key, row in change.updated.items()
                       if _pick(row, fk.column_keys) != _pick(stored[key], fk.column_keys)}
            wanted.discard(None)
            if wanted and wanted - self._present(fk):
                raise self._fk_conflict(fk)

    def _check_referred(self, change: _TableChange) -> None:
        """No remaining row refers to a row that was deleted, or whose referred key changed."""
        stored = self.store.rows(change.table.fullname)
        for fk in referencing(change.table) if change.deleted or change.updated else ():
            referred = _referred_keys(fk)
            gone = {_pick(stored[key], referred) for key in change.deleted}
            gone |= {_pick(stored[key], referred) for key, row in change.updated.items()
                     if _pick(row, referred) != _pick(stored[key], referred)}
            gone.discard(None)
            if gone:
                gone -= self._present(fk)
            if gone and any(_pick(row, fk.column_keys) in gone for row in self.rows(fk.table).values()):
                raise self._fk_conflict(fk)

    def _present(self, fk: ForeignKeyConstraint) -> set[Any]:
        referred = _referred_keys(fk)
        return {_pick(row, referred) for row in self.rows(fk.referred_table).values()}

    def _fk_conflict(self, fk: ForeignKeyConstraint) -> Conflict:
        name = constraint_name(fk.table, fk.name, fk.column_keys)
        return Conflict(f"{self.entity} ({name}): {_FK_MESSAGE}", entity=self.entity, constraint=name)


# --- values -------------------------------------------------------------------------------------------------


_IMMUTABLE = (str, int, float, bool, Decimal, uuid.UUID, dt.date, dt.time, dt.timedelta, bytes, type(None))


def fresh(value: Any) -> Any:
    """A value nobody else holds: immutable values as they are, anything else (JSON) deep-copied."""
    return value if isinstance(value, _IMMUTABLE) else copy.deepcopy(value)


def to_stored(entity: str, column: Column[Any], value: Any, *, compare: bool = False) -> Any:
    """``value`` as the database would store (and return) it in ``column``, or ValidationError: the rules of
    ``values``, which every engine's writes follow too. ``compare`` is for values only compared with stored ones."""
    return fresh(values.stored(entity, column, value, compare=compare))


__all__ = ["Changes", "InMemoryStore", "Key", "Row", "check_not_null", "fresh", "key_of", "required",
           "to_stored", "unique_constraints"]
