"""SQL that differs between engines, as constructs compiled per engine (``sqlalchemy.ext.compiler``).

A construct is built the same way everywhere (``time_bucket(column, "week")``); each engine's module registers how
it is written in that engine's SQL (``@compiles(TimeBucket, "postgresql")``), next to the rest of that engine.

Reports' calendar buckets: a bucket is labelled with the ISO date ('YYYY-MM-DD') of its first day: the day itself,
the Monday of its ISO week, the first of its month, all in UTC, computed by the engine from the stored value and
never through a session time zone. The constants are written into the SQL rather than bound: the GROUP BY
expression is then textually the SELECT expression on every engine, which PostgreSQL requires and which lets SQLite
evaluate it once per row.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import String, exc, literal_column
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql import ColumnElement, Insert
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.sql.visitors import InternalTraversal

from db import errors
from db.dialects.base import ENGINE_MODULES, EXCLUDED

BUCKETS = ("day", "week", "month")


class TimeBucket(FunctionElement[str]):
    """The label of the ``unit`` bucket (day, week or month) that a UTC datetime column falls in."""

    type = String()
    name = "time_bucket"
    inherit_cache = True
    _traverse_internals = [*FunctionElement._traverse_internals, ("unit", InternalTraversal.dp_string)]  # noqa: RUF012

    def __init__(self, column: ColumnElement[Any], unit: str) -> None:
        if unit not in BUCKETS:
            raise errors.ValidationError(f"bucket must be one of {', '.join(BUCKETS)}", field="bucket",
                                         rule="bucket")
        self.unit = unit
        super().__init__(column)

    @property
    def column(self) -> ColumnElement[Any]:
        return next(iter(self.clauses))


@compiles(TimeBucket)
def _compile_after_loading_the_engine(element: TimeBucket, compiler: SQLCompiler, **kw: Any) -> str:
    """Engine modules are imported on first use: load this engine's (which registers its own form), then compile."""
    module = ENGINE_MODULES.get(compiler.dialect.name)
    if module is None or kw.get("engine_module_loaded"):
        raise exc.CompileError(f"time buckets are not written for the engine {compiler.dialect.name!r}")
    importlib.import_module(module)
    return compiler.process(element, engine_module_loaded=True, **kw)


def time_bucket(column: ColumnElement[Any], unit: str) -> TimeBucket:
    return TimeBucket(column, unit)


def constant(sql: str) -> ColumnElement[Any]:
    """A constant of our own (never caller input) written into the statement."""
    return literal_column(sql)


def on_conflict_upsert(stmt: Any, match: Sequence[str], updates: Mapping[str, Any]) -> Insert:
    """``INSERT … ON CONFLICT (match) DO UPDATE`` of SQLite's or PostgreSQL's insert construct (the same API)."""
    set_ = {key: stmt.excluded[key] if value is EXCLUDED else value for key, value in updates.items()}
    if not set_:
        return stmt.on_conflict_do_nothing(index_elements=list(match))  # type: ignore[no-any-return]
    return stmt.on_conflict_do_update(index_elements=list(match), set_=set_)  # type: ignore[no-any-return]
