"""The in-memory fake and every engine agree on every input: the same answer, or the same ``db.errors`` class.

Hypothesis throws generated writes, filters, sort keys, cursors, ids and values at the fake and at one engine side by
side: every column type, booleans, datetimes (naive, aware, ISO text, garbage), UUIDs as text, bytes and int, huge
integers, NaN, NUL characters, lone surrogates, non-ASCII text and wrong containers. After every write the two tables
must hold the same rows. The fake is the oracle; where it and an engine differ, one of them is wrong.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.orm import Session

from db import DatabaseError
from db.repositories.rules import Page
from tests.contract.support import MemoryBackend
from tests.support import TestDatabases, WidgetRepository

UTC = dt.UTC
NAMES = ["alpha", "Beta", "gamma_%", "Émile", "\u212aelvin", "straße", "İstanbul", "zoë 🙂"]
COLUMNS = ["name", "category", "quantity", "price", "ratio", "active", "released_at", "secret_token"]
FIELDS = [*COLUMNS, "id", "version", "created_at", "deleted_at", "nope"]
OPS = ["eq", "ne", "lt", "lte", "gt", "gte", "in", "not_in", "between", "contains", "startswith", "isnull", "like"]
ZONES = [UTC, dt.timezone(dt.timedelta(hours=14)), dt.timezone(dt.timedelta(hours=-12, minutes=-30))]

# --- hostile values ------------------------------------------------------------------------------------------

every_character = st.characters(codec=None, exclude_categories=())  # NUL, lone surrogates, emoji, combining marks
texts = st.one_of(
    st.text(max_size=6),
    st.text(alphabet=every_character, max_size=4),
    st.sampled_from([
        "", "\x00", "a\x00b", "\ud800", "x" * 101, "é" * 60, "2026-01-01T12:00:00+02:00", "2026-01-01T12:00:00",
        "2026-01-01", "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "not a date", "1.25", "1e400",
        "NaN", "-0", "true", str(uuid.UUID(int=7)), uuid.UUID(int=7).hex, "{" + str(uuid.UUID(int=7)) + "}",
        "urn:uuid:" + str(uuid.UUID(int=7)), "%", "_", "K", "k", "ss", "i\u0307",
    ]),
)
datetimes = st.one_of(
    st.datetimes(timezones=st.sampled_from(ZONES)),
    st.datetimes(),  # naive
    st.sampled_from([dt.datetime(1, 1, 1, tzinfo=UTC), dt.datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
                     dt.datetime(2026, 1, 1, 12, tzinfo=UTC)]),
)
numbers = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, 1, -1, 2**31, -(2**31) - 1, 2**63 - 1, -(2**63), 2**63, 10**12, 10**15]),
    st.floats(),
    st.sampled_from([5e-324, -0.0, 1e308, 0.1, 2.5]),
    st.decimals(allow_nan=True, allow_infinity=True),
    st.decimals(places=3, min_value=-10**11, max_value=10**11),
    st.sampled_from([Decimal("1.005"), Decimal("-0.00"), Decimal("9999999999.995"), Decimal("1E+20"),
                     Decimal("1.0000000000000001"), Decimal("1E-400"), Decimal("123456789012345.6")]),
)
scalars = st.one_of(
    st.none(), st.booleans(), numbers, texts, datetimes, st.dates(), st.uuids(),
    st.uuids().map(lambda u: u.bytes), st.uuids().map(lambda u: u.int), st.binary(max_size=4),
    st.integers(min_value=0, max_value=2**128 - 1).map(lambda n: uuid.UUID(int=n)),  # any variant and version
)
values = st.one_of(scalars, st.lists(scalars, max_size=3), st.tuples(scalars, scalars),
                   st.dictionaries(st.text(max_size=2), scalars, max_size=2), st.frozensets(st.integers(), max_size=2))
names = st.one_of(st.sampled_from(NAMES), values)
fields = st.dictionaries(st.sampled_from(FIELDS), values, max_size=3)
new_rows = st.builds(lambda name, rest: {"name": name, **rest}, names, fields)
filter_keys = st.one_of(st.builds(lambda f, o: f"{f}__{o}", st.sampled_from(FIELDS), st.sampled_from(OPS)),
                        st.sampled_from(FIELDS), st.text(max_size=6))
FRAGMENTS = ["é", "É", "e", "k", "K", "\u212a", "ss", "SS", "ß", "ẞ", "i", "I", "İ", "i\u0307", "ë", "🙂", "%", "_",
             "a", "A", "ALPHA", "tools", "TOOLS", "straSSe", "é" * 3]
filters = st.dictionaries(filter_keys, st.one_of(values, st.sampled_from(NAMES + FRAGMENTS)), max_size=2)
sort_keys = st.lists(st.one_of(st.builds(lambda d, f: d + f, st.sampled_from(["", "-"]), st.sampled_from(FIELDS)),
                               st.text(max_size=5), st.integers()), max_size=3)


def hostile_cursor(draw: Callable[[Any], Any]) -> Any:
    payload = {"e": draw(st.sampled_from(["widget", "gadget", 5])),
               "k": draw(st.one_of(st.just(["name", "id"]), st.lists(st.sampled_from(["name", "-name", "id"]),
                                                                          max_size=3))),
               "v": draw(st.lists(st.one_of(scalars.filter(lambda v: isinstance(v, str | int | float | type(None))),
                                            st.dictionaries(st.sampled_from(["dt", "d", "s", "x"]), texts,
                                                            max_size=2)), max_size=3))}
    raw = json.dumps(payload, default=str).encode()
    return draw(st.one_of(st.just(base64.urlsafe_b64encode(raw).decode().rstrip("=")), texts, st.none(),
                          st.integers()))


cursors = st.composite(hostile_cursor)()

# --- the two sides -------------------------------------------------------------------------------------------


class Side:
    """One backend's repository, with the table state read back as the database holds it."""

    def __init__(self, repo: Any, session: Any = None) -> None:
        self.repo, self.session = repo, session

    def rows(self) -> list[tuple[Any, ...]]:
        if self.session is not None:
            self.session.expire_all()
        return sorted((shown(row) for row in self.repo.list(include_deleted=True)), key=lambda row: row[0])

    def named(self, name: str) -> Any:
        found = self.repo.list(filters={"name": name}, include_deleted=True)
        return found[0] if found else None


@pytest.fixture
def sides(engine_name: str, test_databases: TestDatabases) -> Iterator[Callable[[], tuple[Side, Side]]]:
    """A pair (fake, engine) with empty tables, made afresh for each example.

    The engine's side is a session of its own whose transaction is rolled back at the next example (repositories
    never commit): a new top-level transaction per example, as savepoints by the thousand would fill PostgreSQL's
    lock table.
    """
    database = test_databases.get(engine_name)
    opened: list[Session] = []

    def close() -> None:
        while opened:
            session = opened.pop()
            session.rollback()
            session.close()

    def make() -> tuple[Side, Side]:
        close()
        opened.append(database.sessions())
        return Side(MemoryBackend().repo(WidgetRepository)), Side(WidgetRepository(opened[-1]), opened[-1])

    yield make
    close()


def shown(result: Any) -> Any:
    """A result as the two sides can be compared: rows by their stored values (ids and clocks differ)."""
    if isinstance(result, Page):
        return [shown(item) for item in result.items]
    if isinstance(result, list):
        return [shown(item) for item in result]
    if isinstance(result, tuple):
        return tuple(shown(item) for item in result)
    if hasattr(result, "__table__"):
        return (*(getattr(result, column) for column in COLUMNS), result.deleted_at is not None, result.version)
    return result


def outcome(call: Callable[[], Any]) -> Any:
    """The answer, or the ``db.errors`` class raised. Anything else (a raw driver error, a bug) fails the test."""
    try:
        return ("answer", shown(call()))
    except DatabaseError as error:
        return ("refused", type(error).__name__)


# --- writes --------------------------------------------------------------------------------------------------

targets = st.sampled_from(NAMES)
write_ops = st.one_of(
    st.tuples(st.just("create"), new_rows),
    st.tuples(st.just("create_many"), st.lists(new_rows, max_size=3)),
    st.tuples(st.just("update"), targets, fields),
    st.tuples(st.just("update_many"), filters, fields),
    st.tuples(st.just("upsert"), new_rows, st.sampled_from([["name"], ["id"], ["category"], "name", []])),
    st.tuples(st.just("get_or_create"), st.dictionaries(st.sampled_from(COLUMNS), values, min_size=1, max_size=2),
              st.dictionaries(st.sampled_from(COLUMNS), values, max_size=2)),
    st.tuples(st.just("delete"), targets, st.booleans()),
    st.tuples(st.just("delete_many"), filters, st.booleans()),
)


def write(side: Side, op: tuple[Any, ...]) -> Any:
    kind, *args = op
    repo = side.repo
    if kind == "create":
        return outcome(lambda: repo.create(**args[0]))
    if kind == "create_many":
        return outcome(lambda: repo.create_many(args[0], returning=True))
    if kind in ("update", "delete"):
        target = side.named(args[0])
        if target is None:
            return ("absent",)
        if kind == "update":
            return outcome(lambda: repo.update(target, **args[1]))
        return outcome(lambda: repo.delete(target, hard=args[1]))
    if kind == "update_many":
        return outcome(lambda: repo.update_many(args[0], **args[1]))
    if kind == "upsert":
        return outcome(lambda: repo.upsert(args[0], match=args[1]))
    if kind == "get_or_create":
        match, defaults = args
        defaults = {key: value for key, value in defaults.items() if key not in match}
        return outcome(lambda: repo.get_or_create(defaults=defaults, **match))
    return outcome(lambda: repo.delete_many(args[0], hard=args[1]))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(ops=st.lists(write_ops, min_size=1, max_size=6))
def test_every_write_gives_the_same_answer_and_leaves_the_same_rows_as_the_fake(
    sides: Callable[[], tuple[Side, Side]], ops: list[tuple[Any, ...]]
) -> None:
    fake, engine = sides()
    for op in ops:
        assert write(engine, op) == write(fake, op), op
        assert engine.rows() == fake.rows(), op


# --- reads ---------------------------------------------------------------------------------------------------

T0 = dt.datetime(2026, 1, 1, 12, tzinfo=UTC)
SEED: list[dict[str, Any]] = [
    {"name": "alpha", "category": "tools", "quantity": 5, "price": Decimal("9.50"), "ratio": 0.5, "released_at": T0},
    {"name": "Beta", "category": "Tools", "quantity": -(2**63), "price": Decimal("-0.01"), "ratio": -0.0,
     "released_at": dt.datetime(1, 1, 1, tzinfo=UTC), "active": False},
    {"name": "gamma_%", "category": None, "quantity": 2**63 - 1, "price": Decimal("9999999999.99"), "ratio": None,
     "released_at": None},
    {"name": "Émile", "category": "élan", "quantity": 0, "price": Decimal("0"), "ratio": 5e-324,
     "released_at": dt.datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)},
    {"name": "\u212aelvin", "category": "KELVIN", "quantity": 7, "price": Decimal("7.00"), "ratio": 1e308,
     "released_at": T0 + dt.timedelta(microseconds=1), "active": False},
    {"name": "straße", "category": "STRASSE", "quantity": 7, "price": Decimal("1.25"), "ratio": 2.5,
     "released_at": T0 - dt.timedelta(days=400)},
    {"name": "İstanbul", "category": "i\u0307stanbul", "quantity": 3, "price": Decimal("3.33"), "ratio": 0.1,
     "released_at": T0 + dt.timedelta(hours=5), "secret_token": "s3cr3t"},
    {"name": "zoë 🙂", "category": "🙂", "quantity": 3, "price": Decimal("0.10"), "ratio": 0.5, "released_at": T0},
]
# Fixed ids and times, so that ties break alike and cursors (which carry the sort values) are the same text.
ROWS = [{**row, "id": uuid.UUID(int=(index + 1) << 64), "created_at": T0, "updated_at": T0}
        for index, row in enumerate(SEED)]


@pytest.fixture
def seeded_sides(sides: Callable[[], tuple[Side, Side]]) -> tuple[Side, Side]:
    fake, engine = sides()
    fake.repo.create_many(ROWS)
    engine.repo.create_many(ROWS)
    return fake, engine


read_ops = st.one_of(
    st.tuples(st.just("list"), filters, sort_keys),
    st.tuples(st.just("count"), filters),
    st.tuples(st.just("exists"), filters),
    st.tuples(st.just("page"), filters, sort_keys, st.one_of(st.integers(min_value=1, max_value=4), values)),
    st.tuples(st.just("after"), sort_keys, cursors),
    st.tuples(st.just("get_by_id"), st.one_of(values, st.sampled_from([row["id"] for row in ROWS]),
                                              st.sampled_from([str(row["id"]) for row in ROWS]))),
    st.tuples(st.just("get_many"), st.lists(st.one_of(values, st.sampled_from([row["id"] for row in ROWS])),
                                            max_size=3)),
)


def read(side: Side, op: tuple[Any, ...]) -> Any:
    kind, *args = op
    repo = side.repo
    if kind == "list":
        return outcome(lambda: repo.list(filters=args[0], order_by=args[1]))
    if kind == "count":
        return outcome(lambda: repo.count(args[0]))
    if kind == "exists":
        return outcome(lambda: repo.exists(**args[0]) if all(isinstance(k, str) for k in args[0]) else None)
    if kind == "page":
        return outcome(lambda: _pages(repo, filters=args[0], order_by=args[1], size=args[2]))
    if kind == "after":
        return outcome(lambda: _pages(repo, order_by=args[0], size=2, after=args[1]))
    if kind == "get_by_id":
        return outcome(lambda: repo.get_by_id(args[0]))
    return outcome(lambda: repo.get_many(args[0]))


def _pages(repo: Any, **query: Any) -> list[Any]:
    """Every page to the end, each with its cursor: the cursors must be the same text on both sides too."""
    pages, page = [], repo.page(**query)
    pages.append((shown(page), page.next_cursor))
    while page.next_cursor is not None and len(pages) < 10:
        page = repo.page(**{**query, "after": page.next_cursor})
        pages.append((shown(page), page.next_cursor))
    return pages


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(op=read_ops)
def test_every_read_gives_the_same_answer_as_the_fake(seeded_sides: tuple[Side, Side], op: tuple[Any, ...]) -> None:
    fake, engine = seeded_sides
    assert read(engine, op) == read(fake, op), op
