"""The bulk insert path behind ``create_many``: close to the driver's own ``executemany``.

SQLAlchemy's generic executemany turns each row into a dict of bound parameters and runs every value through
its type's processor, which costs several times the driver's own work. Here a statement is compiled once per
set of keys, defaults are resolved once per statement where they are constants (``created_at``), ids are
generated directly in the form the driver takes, and the rows go to the driver as plain tuples through
``Connection.exec_driver_sql`` (still inside the session's transaction, with SQLAlchemy's error wrapping).
Every given value is checked and converted by ``values`` first, as in every other write: a bulk insert stores what
``create`` would, on every engine.
"""

from __future__ import annotations

import contextlib
import gc
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import islice
from operator import itemgetter
from typing import Any

import uuid_utils
from sqlalchemy import Column, Connection, Dialect, Insert, insert
from sqlalchemy.sql.schema import Table

from db.errors import ValidationError
from db.models.base import STATEMENT_DEFAULT, new_id
from db.repositories import values

BATCH_ROWS = 5_000
"""Rows per statement, per id list and per chunk everywhere the layer works in batches: large enough that per-statement
costs vanish, small enough to stay under every engine's bound-parameter limit and to keep memory flat."""


def batched(rows: Iterable[Any], size: int = BATCH_ROWS) -> Iterator[list[Any]]:
    iterator = iter(rows)
    while batch := list(islice(iterator, size)):
        yield batch


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while a large batch of rows or ORM objects is built.

    Each row or object allocates a few small tracked containers, so building 100,000 of them runs the collector
    hundreds of times over an ever larger heap: a quarter of the time. None of them forms a cycle (reference counting
    frees them at once); the collector resumes, as it was, when the block ends.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


@dataclass(slots=True)
class _Plan:
    """How rows with one particular set of keys become driver parameters."""

    sql: str
    pick: Callable[[Mapping[str, Any]], tuple[Any, ...]]
    converters: Sequence[tuple[int, Callable[[Any], Any]]]
    per_row: Sequence[Callable[[], Any]]
    constants: tuple[Any, ...]
    reorder: Callable[[tuple[Any, ...]], Any]
    pk_index: int | None
    not_null: Sequence[tuple[int, str]]  # given values that must not be None: (position, field)


class BulkInserter:
    """Prepares and runs batches of row mappings for one table on one connection."""

    def __init__(
        self, table: Table, connection: Connection, entity: str, *, protected: frozenset[str] = frozenset(),
        rows_per_statement: int = 1, statement_for: Callable[[tuple[str, ...]], Insert] | None = None,
    ) -> None:
        self.table = table
        # The INSERT for a set of keys (an upsert's differs by the columns it updates); plain by default.
        self.statement_for = statement_for or (lambda keys: insert(table))
        # > 1: multi-row VALUES (positional paramstyles, and the plain INSERT only: an upsert's tail would repeat)
        self.rows_per_statement = rows_per_statement
        self.protected = protected
        self.connection = connection
        self.dialect: Dialect = connection.dialect
        self.entity = entity
        self.columns: dict[str, Column[Any]] = {column.key: column for column in table.columns}
        self._plans: dict[tuple[str, ...], _Plan] = {}
        self._statement_values: dict[str, Any] = {}
        self.inserted_ids: list[Any] = []

    def insert(self, batch: Sequence[Mapping[str, Any]], *, collect_ids: bool = False) -> int:
        """Check and convert every row of the batch, then insert it: a bad value is found before any constraint."""
        groups: dict[tuple[str, ...], list[Any]] = {}
        for row in batch:
            if not isinstance(row, Mapping):
                raise ValidationError(f"{self.entity}: each row must be a mapping of field to value")
            keys = tuple(row)
            plan = self._plans.get(keys) or self._plan(keys)
            values = self._values(plan, row)
            for index, field in plan.not_null:
                if values[index] is None:
                    raise ValidationError(f"{self.entity}.{field} is required", field=field, rule="required")
            if collect_ids and plan.pk_index is not None:
                self.inserted_ids.append(values[plan.pk_index])
            groups.setdefault(keys, []).append(plan.reorder(values))
        for keys, parameters in groups.items():
            self._execute(self._plans[keys].sql, parameters)
        return len(batch)

    def _execute(self, sql: str, parameters: list[Any]) -> None:
        per = self.rows_per_statement
        if per <= 1 or not isinstance(parameters[0], tuple):
            self.connection.exec_driver_sql(sql, parameters)
            return
        into, _, row = sql.partition(" VALUES ")
        for start in range(0, len(parameters), per):
            chunk = parameters[start:start + per]
            flat = tuple(value for values in chunk for value in values)
            self.connection.exec_driver_sql(f"{into} VALUES {', '.join([row] * len(chunk))}", flat)

    @staticmethod
    def _values(plan: _Plan, row: Mapping[str, Any]) -> tuple[Any, ...]:
        provided = plan.pick(row)
        if plan.converters:
            converted = list(provided)
            for index, convert in plan.converters:
                converted[index] = convert(converted[index])
            provided = tuple(converted)
        if plan.per_row:
            provided += tuple(make() for make in plan.per_row)
        return provided + plan.constants

    def _plan(self, keys: tuple[str, ...]) -> _Plan:
        unknown = [key for key in keys if key not in self.columns or key in self.protected]
        if unknown:
            raise ValidationError(f"{self.entity}: unknown field {unknown[0][:64]!r}", field=unknown[0][:64])
        per_row_columns, per_row = self._per_row_defaults(keys)
        constant_columns = [key for key in self.columns if key not in keys and key not in per_row_columns]
        constant_columns = [key for key in constant_columns if self._has_constant(key)]
        self._check_required(keys, per_row_columns)
        order = [*keys, *per_row_columns, *constant_columns]
        compiled = self.statement_for(keys).compile(dialect=self.dialect, column_keys=order)
        pk_key = next((key for key in order if self.columns[key].primary_key), None)
        plan = _Plan(
            sql=compiled.string,
            pick=_picker(keys),
            converters=[(i, c) for i, key in enumerate(keys) if (c := self._converter(key)) is not None],
            per_row=per_row,
            constants=tuple(self._constant(key) for key in constant_columns),
            reorder=_reorderer(compiled, order),
            pk_index=order.index(pk_key) if pk_key else None,
            not_null=[(i, key) for i, key in enumerate(keys) if not self.columns[key].nullable],
        )
        self._plans[keys] = plan
        return plan

    def _converter(self, key: str) -> Callable[[Any], Any] | None:
        """The value as its column stores it (``values``: the same rules as every other write), in the driver's form."""
        check = values.converter(self.entity, self.columns[key])
        process = self.columns[key].type._cached_bind_processor(self.dialect)
        if process is None:
            return None if check is values.unchanged else check
        entity, field = self.entity, key

        def convert(value: Any) -> Any:
            checked = check(value)
            try:
                return process(checked)
            except (ValueError, TypeError, AttributeError) as error:
                # The column type's own refusal (a custom type); its message may quote the value: not shown.
                raise ValidationError(f"{entity}.{field}: {type(error).__name__} for this column's type",
                                      field=field) from None

        return convert

    def _per_row_defaults(self, keys: tuple[str, ...]) -> tuple[list[str], list[Callable[[], Any]]]:
        names: list[str] = []
        makers: list[Callable[[], Any]] = []
        for key, column in self.columns.items():
            default = column.default
            if key in keys or default is None or not default.is_callable or column.info.get(STATEMENT_DEFAULT):
                continue
            names.append(key)
            makers.append(self._fast_id() if _is_new_id(default.arg) else self._processed_call(key))  # type: ignore[attr-defined]
        return names, makers

    def _fast_id(self) -> Callable[[], Any]:
        """A UUIDv7 already in the driver's form: 32 hex digits where the column is CHAR(32)."""
        process = self.columns[self._pk_key()].type._cached_bind_processor(self.dialect)
        if process is None:
            return new_id
        probe = uuid.UUID(int=0x0123456789ABCDEF0123456789ABCDEF)
        if process(probe) == probe.hex:
            return lambda: uuid_utils.uuid7().hex
        return lambda: process(new_id())

    def _pk_key(self) -> str:
        return next(key for key, column in self.columns.items() if column.primary_key)

    def _processed_call(self, key: str) -> Callable[[], Any]:
        default = self.columns[key].default
        make = default.arg  # type: ignore[union-attr]
        process = self.columns[key].type._cached_bind_processor(self.dialect) or (lambda value: value)
        return lambda: process(make(None))  # type: ignore[no-untyped-call]

    def _has_constant(self, key: str) -> bool:
        default = self.columns[key].default
        return default is not None and (not default.is_callable or bool(self.columns[key].info.get(
            STATEMENT_DEFAULT)))

    def instant(self) -> Any:
        """The one instant of this call's per-statement defaults (``created_at``, ``updated_at``), in Python's form."""
        column = next(column for column in self.columns.values() if column.info.get(STATEMENT_DEFAULT))
        return self._statement_values.setdefault(STATEMENT_DEFAULT, column.default.arg(None))  # type: ignore[union-attr]

    def _constant(self, key: str) -> Any:
        """A scalar default, or a per-statement one evaluated once for the whole ``create_many`` call."""
        if key not in self._statement_values:
            default = self.columns[key].default
            if self.columns[key].info.get(STATEMENT_DEFAULT):
                # One instant for every per-statement column (created_at == updated_at on a new row).
                value = self.instant()
            else:
                value = default.arg(None) if default.is_callable else default.arg  # type: ignore[union-attr]
            process = self.columns[key].type._cached_bind_processor(self.dialect)
            self._statement_values[key] = process(value) if process else value
        return self._statement_values[key]

    def _check_required(self, keys: tuple[str, ...], generated: list[str]) -> None:
        for key, column in self.columns.items():
            if key in keys or key in generated or column.nullable or self._has_constant(key):
                continue
            if column.server_default is None and self.table.autoincrement_column is not column:
                raise ValidationError(f"{self.entity}.{key} is required", field=key, rule="required")


def _is_new_id(callable_default: Any) -> bool:
    return getattr(callable_default, "__wrapped__", callable_default) is new_id


def _picker(keys: tuple[str, ...]) -> Callable[[Mapping[str, Any]], tuple[Any, ...]]:
    if len(keys) == 1:
        only = keys[0]
        return lambda row: (row[only],)
    if not keys:
        return lambda row: ()
    return itemgetter(*keys)


def _reorderer(compiled: Any, order: list[str]) -> Callable[[tuple[Any, ...]], Any]:
    """Values in ``order`` → the driver's parameters: a tuple in the statement's order, or a dict."""
    if compiled.positional:
        positions = [order.index(name) for name in compiled.positiontup]
        if positions == list(range(len(order))):
            return lambda values: values
        if len(positions) == 1:
            only = positions[0]
            return lambda values: (values[only],)
        pick = itemgetter(*positions)
        return pick
    names = [compiled.escaped_bind_names.get(name, name) for name in order]
    return lambda values: dict(zip(names, values, strict=True))
