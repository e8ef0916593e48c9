"""``RepositoryContract``: what every repository promises, as tests an application runs on its own repositories.

Subclass it in a test module, give it a ``repository`` fixture (a ``BaseRepository`` in a unit of work, or an
``InMemoryRepository``) and ``valid_fields(n)``, and pytest collects the inherited tests::

    class TestProjectRepository(RepositoryContract):
        @pytest.fixture
        def repository(self) -> FakeProjectRepository:
            return FakeProjectRepository()

        def valid_fields(self, n: int) -> dict[str, Any]:
            return {"name": f"project {n}", "stars": n}

``valid_fields(n)`` gives the fields of a valid new row: every required field, values of a unique key distinct
for distinct ``n``, and values as a read gives them back (aware UTC datetimes, ``Decimal`` at the column's scale).
Each test starts from an empty table. A test that needs what the model lacks (a unique key among the fields, soft
delete, a version column, a secret column) is skipped, saying so.

The tests read the model through the repository's ``model`` and ``policy()``, as the repositories do.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import Table, UniqueConstraint
from sqlalchemy.sql.schema import ScalarElementColumnDefault

from db.base import secret_columns
from db.errors import Conflict, InvalidFilter, NotFound, StaleVersion, ValidationError

UTC = dt.UTC
NO_SUCH_FIELD = "no_such_field"
MANY = 1234  # rows of the bulk tests: beyond 1,000, so that no engine's single-statement limit hides a bug
FAR = 1_000_000  # ``valid_fields(FAR + i)`` gives values no other test row holds


@dataclass(frozen=True, slots=True)
class Shape:
    """What the contract needs to know of a repository's model: its key and the mixins and columns it has."""

    entity: str
    table: Table
    pk: str
    pk_type: type
    versioned: bool
    soft: bool
    stamped: bool
    secrets: frozenset[str]
    filterable: frozenset[str]
    sortable: tuple[str, ...]


def shape_of(repository: Any) -> Shape:
    model = repository.model
    table: Table = model.__table__
    policy = repository.policy()
    return Shape(
        entity=str(model.__tablename__),
        table=table,
        pk=policy.primary_key,
        pk_type=table.c[policy.primary_key].type.python_type,
        versioned="version" in table.c and model.__mapper__.version_id_col is not None,
        soft="deleted_at" in table.c,
        stamped="created_at" in table.c and "updated_at" in table.c,
        secrets=secret_columns(model),
        filterable=policy.filterable,
        sortable=tuple(sorted(policy.sortable)),
    )


def unique_keys(table: Table) -> list[tuple[str, ...]]:
    """The table's unique keys other than its primary key, each as its column names."""
    keys = [tuple(c.key for c in constraint.columns) for constraint in table.constraints
            if isinstance(constraint, UniqueConstraint)]
    keys += [tuple(c.key for c in index.columns) for index in table.indexes if index.unique]
    keys += [(column.key,) for column in table.columns if column.unique]
    return keys


def scalar_defaults(table: Table, given: Mapping[str, Any]) -> dict[str, Any]:
    """The plain default of each column not in ``given`` (the layer's own columns left out)."""
    managed = {"version", "deleted_at", "created_at", "updated_at"}
    return {column.key: column.default.arg for column in table.columns
            if isinstance(column.default, ScalarElementColumnDefault)
            and column.key not in given and column.key not in managed}


def values_of(instance: Any, fields: Mapping[str, Any]) -> dict[str, Any]:
    return {key: getattr(instance, key) for key in fields}


def walk_pages(repository: Any, order_by: list[str], size: int) -> list[Any]:
    """Every row, page after page."""
    seen: list[Any] = []
    page = repository.page(order_by=order_by, size=size)
    while True:
        assert len(page.items) <= size
        seen += page.items
        if page.next_cursor is None:
            return seen
        page = repository.page(order_by=order_by, size=size, after=page.next_cursor)


class RepositoryContract:
    """The contract suite; see the module docstring. Subclass it as ``Test...`` and provide the two hooks below."""

    # --- what a subclass provides ------------------------------------------------------------------------

    @pytest.fixture
    def repository(self) -> Any:
        pytest.fail(f"{type(self).__name__} must define a `repository` fixture giving the repository to test")

    def valid_fields(self, n: int) -> dict[str, Any]:
        raise NotImplementedError(f"{type(self).__name__} must define valid_fields(n): the fields of a valid row")

    # --- helpers -----------------------------------------------------------------------------------------

    def created(self, repository: Any, *numbers: int) -> list[Any]:
        return [repository.create(**self.valid_fields(n)) for n in numbers]

    def unique_key(self, repository: Any) -> tuple[str, ...]:
        """A unique key whose every field ``valid_fields`` gives, or a skip."""
        given = self.valid_fields(0)
        for key in unique_keys(shape_of(repository).table):
            if set(key) <= set(given):
                return key
        pytest.skip(f"{shape_of(repository).entity}: no unique key among the fields valid_fields gives")

    def change(self, repository: Any, *, outside_unique_keys: bool = False) -> dict[str, Any]:
        """One field of row 0 (outside every unique key, if asked) and a different valid value for it, or a skip."""
        avoided = {name for key in unique_keys(shape_of(repository).table) for name in key}
        before, after = self.valid_fields(0), self.valid_fields(FAR)
        for key, value in after.items():
            if before.get(key) != value and not (outside_unique_keys and key in avoided):
                return {key: value}
        pytest.skip(f"{shape_of(repository).entity}: valid_fields varies no field"
                    + (" outside a unique key" if outside_unique_keys else ""))

    def missing_id(self, repository: Any) -> Any:
        """The id of a row that no longer exists."""
        gone = repository.create(**self.valid_fields(FAR + 1))
        ident = getattr(gone, shape_of(repository).pk)
        repository.delete(gone, hard=True)
        return ident

    def probe(self, repository: Any) -> str:
        """The primary key as a filter, or a skip where the repository does not allow it."""
        shape = shape_of(repository)
        if shape.pk not in shape.filterable:
            pytest.skip(f"{shape.entity}: the primary key {shape.pk!r} is not filterable")
        return shape.pk

    # --- create ------------------------------------------------------------------------------------------

    def test_create_returns_the_row_with_its_key_stamps_version_and_defaults(self, repository: Any) -> None:
        shape, fields = shape_of(repository), self.valid_fields(0)
        before = dt.datetime.now(UTC)
        row = repository.create(**fields)
        assert values_of(row, fields) == fields
        assert getattr(row, shape.pk) is not None
        if shape.pk_type is uuid.UUID:
            assert getattr(row, shape.pk).version == 7
        if shape.stamped:
            assert row.created_at.utcoffset() == dt.timedelta(0) and row.created_at == row.updated_at
            assert before - dt.timedelta(seconds=1) <= row.created_at <= dt.datetime.now(UTC) + dt.timedelta(seconds=1)
        assert not shape.versioned or row.version == 1
        assert not shape.soft or row.deleted_at is None
        assert values_of(row, scalar_defaults(shape.table, fields)) == scalar_defaults(shape.table, fields)

    def test_a_created_row_reads_back_as_it_was_returned(self, repository: Any) -> None:
        row = repository.create(**self.valid_fields(0))
        columns = {column.key: None for column in shape_of(repository).table.columns}
        again = repository.get_by_id(getattr(row, shape_of(repository).pk))
        assert values_of(again, columns) == values_of(row, columns)

    def test_an_unknown_field_is_a_validation_error(self, repository: Any) -> None:
        with pytest.raises(ValidationError, match=NO_SUCH_FIELD):
            repository.create(**self.valid_fields(0), **{NO_SUCH_FIELD: 1})
        with pytest.raises(ValidationError, match=NO_SUCH_FIELD):
            repository.create_many([{**self.valid_fields(0), NO_SUCH_FIELD: 1}])
        assert repository.count() == 0

    def test_a_missing_or_null_required_field_is_a_validation_error(self, repository: Any) -> None:
        table, fields = shape_of(repository).table, self.valid_fields(0)
        required = [key for key in fields if not table.c[key].nullable and table.c[key].default is None
                    and table.c[key].server_default is None and not table.c[key].primary_key]
        if not required:
            pytest.skip(f"{shape_of(repository).entity}: valid_fields gives no required field")
        missing = {key: value for key, value in fields.items() if key != required[0]}
        with pytest.raises(ValidationError, match=required[0]):
            repository.create(**missing)
        with pytest.raises(ValidationError, match=required[0]):
            repository.create_many([missing])
        row = repository.create(**fields)
        with pytest.raises(ValidationError):
            repository.update(row, **{required[0]: None})
        with pytest.raises(ValidationError):
            repository.upsert({**self.valid_fields(1), required[0]: None}, match=[shape_of(repository).pk])
        assert values_of(repository.get_by_id(getattr(row, shape_of(repository).pk)), fields) == fields

    def test_the_version_is_kept_by_the_layer_not_the_caller(self, repository: Any) -> None:
        if not shape_of(repository).versioned:
            pytest.skip(f"{shape_of(repository).entity} has no version column")
        with pytest.raises(ValidationError):
            repository.create(**self.valid_fields(0), version=7)
        with pytest.raises(ValidationError):
            repository.create_many([{**self.valid_fields(0), "version": 7}])
        assert repository.count() == 0

    def test_a_naive_datetime_is_refused(self, repository: Any) -> None:
        table = shape_of(repository).table
        moments = [c.key for c in table.columns if c.type.python_type is dt.datetime and not c.primary_key]
        if not moments:
            pytest.skip(f"{shape_of(repository).entity} has no datetime column")
        naive = {**self.valid_fields(0), moments[0]: dt.datetime(2026, 1, 1)}
        with pytest.raises(ValidationError):
            repository.create(**naive)
        with pytest.raises(ValidationError):
            repository.create_many([naive])
        assert repository.count() == 0

    def test_a_duplicate_unique_value_is_a_conflict_naming_the_entity_and_the_repository_stays_usable(
        self, repository: Any
    ) -> None:
        key = self.unique_key(repository)
        repository.create(**self.valid_fields(0))
        with pytest.raises(Conflict) as raised:
            repository.create(**{**self.valid_fields(1), **{k: self.valid_fields(0)[k] for k in key}})
        assert shape_of(repository).entity in str(raised.value)
        repository.create(**self.valid_fields(1))
        assert repository.count() == 2

    def test_create_many_consumes_a_generator_and_returns_the_count(self, repository: Any) -> None:
        assert repository.create_many(self.valid_fields(n) for n in range(MANY)) == MANY
        assert repository.count() == MANY

    def test_create_many_fills_distinct_keys_stamps_versions_and_defaults(self, repository: Any) -> None:
        shape = shape_of(repository)
        repository.create_many([self.valid_fields(0), self.valid_fields(1)])
        rows = repository.list()
        assert len({getattr(row, shape.pk) for row in rows}) == 2
        for row in rows:
            assert not shape.stamped or (row.created_at.utcoffset() == dt.timedelta(0)
                                         and row.created_at == row.updated_at)
            assert not shape.versioned or row.version == 1
            assert not shape.soft or row.deleted_at is None
            defaults = scalar_defaults(shape.table, self.valid_fields(0))
            assert values_of(row, defaults) == defaults

    def test_create_many_returning_gives_the_instances_in_input_order(self, repository: Any) -> None:
        numbers = list(reversed(range(30)))
        created = repository.create_many((self.valid_fields(n) for n in numbers), returning=True)
        assert [values_of(row, self.valid_fields(n)) for row, n in zip(created, numbers, strict=True)] == [
            self.valid_fields(n) for n in numbers]
        assert all(getattr(row, shape_of(repository).pk) is not None for row in created)

    def test_create_many_is_all_or_nothing_on_a_conflict(self, repository: Any) -> None:
        self.unique_key(repository)
        repository.create(**self.valid_fields(0))
        with pytest.raises(Conflict):
            repository.create_many([*(self.valid_fields(n) for n in range(1, 51)), self.valid_fields(0)])
        assert repository.count() == 1

    def test_create_many_is_all_or_nothing_on_a_bad_row(self, repository: Any) -> None:
        with pytest.raises(ValidationError):
            repository.create_many([*(self.valid_fields(n) for n in range(50)), {NO_SUCH_FIELD: 1}])
        assert repository.count() == 0

    # --- read --------------------------------------------------------------------------------------------

    def test_get_by_id_finds_the_row_and_returns_none_for_a_missing_id(self, repository: Any) -> None:
        pk = shape_of(repository).pk
        row = repository.create(**self.valid_fields(0))
        assert values_of(repository.get_by_id(getattr(row, pk)), self.valid_fields(0)) == self.valid_fields(0)
        if shape_of(repository).pk_type is uuid.UUID:
            assert getattr(repository.get_by_id(str(getattr(row, pk))), pk) == getattr(row, pk)
        assert repository.get_by_id(self.missing_id(repository)) is None

    def test_get_by_id_refuses_a_malformed_id(self, repository: Any) -> None:
        if shape_of(repository).pk_type is str:
            pytest.skip(f"{shape_of(repository).entity}: any text is a well-formed id")
        with pytest.raises(InvalidFilter):
            repository.get_by_id("not-an-id")
        with pytest.raises(InvalidFilter):
            repository.get_or_create(**{shape_of(repository).pk: "not-an-id"}, defaults=self.valid_fields(0))

    def test_get_many_keeps_the_order_asked_and_skips_missing_ids(self, repository: Any) -> None:
        pk = shape_of(repository).pk
        rows = self.created(repository, 0, 1, 2)
        asked = [getattr(rows[2], pk), self.missing_id(repository), getattr(rows[0], pk), getattr(rows[1], pk)]
        assert [getattr(row, pk) for row in repository.get_many(asked)] == [asked[0], asked[2], asked[3]]

    def test_exists_and_count_apply_filters(self, repository: Any) -> None:
        pk = self.probe(repository)
        rows = self.created(repository, 0, 1, 2)
        assert repository.exists(**{pk: getattr(rows[0], pk)})
        assert not repository.exists(**{pk: self.missing_id(repository)})
        assert repository.count() == 3
        assert repository.count({f"{pk}__in": [getattr(rows[0], pk), getattr(rows[2], pk)]}) == 2

    def test_list_orders_limits_and_offsets(self, repository: Any) -> None:
        shape = shape_of(repository)
        if shape.pk not in shape.sortable:
            pytest.skip(f"{shape.entity}: the primary key {shape.pk!r} is not sortable")
        ids = sorted(getattr(row, shape.pk) for row in self.created(repository, 0, 1, 2, 3))
        assert [getattr(row, shape.pk) for row in repository.list(order_by=[f"-{shape.pk}"], limit=2, offset=1)] == [
            ids[2], ids[1]]

    @pytest.mark.parametrize("filters", [{NO_SUCH_FIELD: 1}, {f"{NO_SUCH_FIELD}__isnull": True}])
    def test_an_unknown_filter_field_is_refused(self, repository: Any, filters: dict[str, Any]) -> None:
        with pytest.raises(InvalidFilter):
            repository.list(filters=filters)
        with pytest.raises(InvalidFilter):
            repository.count(filters)
        with pytest.raises(InvalidFilter):
            repository.page(filters=filters)

    def test_a_secret_field_cannot_be_filtered_or_sorted_on_and_is_never_echoed(self, repository: Any) -> None:
        secrets = sorted(shape_of(repository).secrets)
        if not secrets:
            pytest.skip(f"{shape_of(repository).entity} has no secret column")
        for field in secrets:
            for filters in ({field: "s3cr3t-value"}, {f"{field}__isnull": False}):
                with pytest.raises(InvalidFilter) as raised:
                    repository.list(filters=filters)
                assert "s3cr3t-value" not in str(raised.value)
                with pytest.raises(InvalidFilter):
                    repository.count(filters)
            for order_by in ([field], [f"-{field}"]):
                with pytest.raises(InvalidFilter):
                    repository.list(order_by=order_by)

    def test_sorting_on_an_unknown_or_repeated_field_is_refused(self, repository: Any) -> None:
        sortable = shape_of(repository).sortable
        bad: list[list[Any]] = [[NO_SUCH_FIELD], [f"-{NO_SUCH_FIELD}"], [5]]
        bad += [[sortable[0], sortable[0]]] if sortable else []
        for order_by in bad:
            with pytest.raises(InvalidFilter):
                repository.list(order_by=order_by)
            with pytest.raises(InvalidFilter):
                repository.page(order_by=order_by)

    @pytest.mark.parametrize("window", [{"limit": -1}, {"offset": -5}, {"limit": "3"}])
    def test_a_bad_window_is_refused(self, repository: Any, window: dict[str, Any]) -> None:
        with pytest.raises(InvalidFilter):
            repository.list(**window)

    @pytest.mark.parametrize("size", [0, -1, 1001, "10"])
    def test_a_bad_page_size_is_refused(self, repository: Any, size: Any) -> None:
        with pytest.raises(InvalidFilter):
            repository.page(size=size)

    def test_paging_visits_every_row_once_in_list_order_for_every_sortable_field(self, repository: Any) -> None:
        pk = shape_of(repository).pk
        self.created(repository, 0, 1, 2, 3, 4)
        for field in shape_of(repository).sortable:
            for order_by in ([field], [f"-{field}"]):
                listed = [getattr(row, pk) for row in repository.list(order_by=order_by)]
                assert [getattr(row, pk) for row in walk_pages(repository, order_by, 2)] == listed, order_by

    def test_a_tampered_or_foreign_cursor_is_refused(self, repository: Any) -> None:
        sortable = shape_of(repository).sortable
        if not sortable:
            pytest.skip(f"{shape_of(repository).entity} has no sortable field")
        self.created(repository, 0, 1, 2)
        cursor = repository.page(order_by=[sortable[0]], size=1).next_cursor
        assert cursor
        for after in (cursor[:-3] + ("BBB" if cursor.endswith("AAA") else "AAA"), "garbage!", "", cursor + "x" * 5000):
            with pytest.raises(InvalidFilter):
                repository.page(order_by=[sortable[0]], size=1, after=after)
        with pytest.raises(InvalidFilter):
            repository.page(order_by=[f"-{sortable[0]}"], size=1, after=cursor)

    def test_the_last_page_has_no_cursor(self, repository: Any) -> None:
        self.created(repository, 0, 1, 2)
        page = repository.page(size=3)
        assert len(page.items) == 3 and page.next_cursor is None
        assert repository.page(size=1000).next_cursor is None

    # --- update ------------------------------------------------------------------------------------------

    def test_update_changes_only_the_given_fields_and_bumps_the_version(self, repository: Any) -> None:
        shape, change = shape_of(repository), self.change(repository)
        row = repository.create(**self.valid_fields(0))
        changed = repository.update(getattr(row, shape.pk), **change)
        expected = {**self.valid_fields(0), **change}
        assert values_of(changed, expected) == expected
        assert values_of(repository.get_by_id(getattr(row, shape.pk)), expected) == expected
        assert not shape.versioned or changed.version == 2
        assert not shape.stamped or (changed.updated_at >= row.updated_at and changed.created_at == row.created_at)

    def test_update_with_an_outdated_expected_version_is_stale(self, repository: Any) -> None:
        if not shape_of(repository).versioned:
            pytest.skip(f"{shape_of(repository).entity} has no version column")
        row, change = repository.create(**self.valid_fields(0)), self.change(repository)
        repository.update(row, **change)
        with pytest.raises(StaleVersion):
            repository.update(getattr(row, shape_of(repository).pk), **self.valid_fields(FAR + 2), version=1)
        assert values_of(repository.get_by_id(getattr(row, shape_of(repository).pk)), change) == change

    def test_update_refuses_unknown_fields_and_the_primary_key(self, repository: Any) -> None:
        pk = shape_of(repository).pk
        row = repository.create(**self.valid_fields(0))
        with pytest.raises(ValidationError):
            repository.update(getattr(row, pk), **{NO_SUCH_FIELD: 1})
        with pytest.raises(ValidationError):
            repository.update(getattr(row, pk), **{pk: self.missing_id(repository)})

    def test_update_of_a_missing_row_is_not_found(self, repository: Any) -> None:
        with pytest.raises(NotFound):
            repository.update(self.missing_id(repository), **self.change(repository))

    def test_update_to_a_taken_unique_value_is_a_conflict(self, repository: Any) -> None:
        key = self.unique_key(repository)
        first, second = self.created(repository, 0, 1)
        pk = shape_of(repository).pk
        with pytest.raises(Conflict):
            repository.update(getattr(second, pk), **{k: self.valid_fields(0)[k] for k in key})
        assert values_of(repository.get_by_id(getattr(second, pk)), self.valid_fields(1)) == self.valid_fields(1)
        assert values_of(repository.get_by_id(getattr(first, pk)), self.valid_fields(0)) == self.valid_fields(0)

    def test_update_many_changes_the_matching_rows_and_counts_them(self, repository: Any) -> None:
        pk, change = self.probe(repository), self.change(repository, outside_unique_keys=True)
        rows = self.created(repository, 0, 1, 2)
        assert repository.update_many({f"{pk}__in": [getattr(rows[0], pk), getattr(rows[1], pk)]}, **change) == 2
        changed = repository.get_many([getattr(row, pk) for row in rows])
        assert values_of(changed[0], change) == values_of(changed[1], change) == change
        assert values_of(changed[2], change) == {name: self.valid_fields(2)[name] for name in change}
        assert not shape_of(repository).versioned or [row.version for row in changed] == [2, 2, 1]

    def test_update_many_needs_a_field_to_set(self, repository: Any) -> None:
        pk = self.probe(repository)
        row = repository.create(**self.valid_fields(0))
        with pytest.raises(ValidationError):
            repository.update_many({pk: getattr(row, pk)})

    def test_bulk_changes_without_filters_are_refused(self, repository: Any) -> None:
        self.created(repository, 0, 1)
        with pytest.raises(InvalidFilter):
            repository.update_many({}, **self.change(repository))
        with pytest.raises(InvalidFilter):
            repository.delete_many({})
        assert repository.count() == 2

    # --- delete ------------------------------------------------------------------------------------------

    def test_a_soft_deleted_row_is_invisible_unless_asked_for(self, repository: Any) -> None:
        shape = shape_of(repository)
        if not shape.soft:
            pytest.skip(f"{shape.entity} has no soft delete")
        row, _ = self.created(repository, 0, 1)
        ident = getattr(row, shape.pk)
        repository.delete(ident)
        assert repository.get_by_id(ident) is None
        assert ident not in [getattr(item, shape.pk) for item in repository.list()]
        assert repository.count() == 1 and repository.count(include_deleted=True) == 2
        assert repository.get_by_id(ident, include_deleted=True).deleted_at is not None
        assert ident in [getattr(item, shape.pk) for item in repository.page(include_deleted=True, size=10).items]
        assert shape.pk not in shape.filterable or not repository.exists(**{shape.pk: ident})
        with pytest.raises(NotFound):
            repository.update(ident, **self.change(repository))
        with pytest.raises(NotFound):
            repository.delete(ident)

    def test_a_row_without_soft_delete_is_deleted_for_real(self, repository: Any) -> None:
        shape = shape_of(repository)
        if shape.soft:
            pytest.skip(f"{shape.entity} is soft-deleted")
        row = repository.create(**self.valid_fields(0))
        repository.delete(getattr(row, shape.pk))
        assert repository.get_by_id(getattr(row, shape.pk), include_deleted=True) is None
        assert repository.count() == 0

    def test_hard_delete_removes_the_row(self, repository: Any) -> None:
        pk = shape_of(repository).pk
        row = repository.create(**self.valid_fields(0))
        repository.delete(row, hard=True)
        assert repository.get_by_id(getattr(row, pk), include_deleted=True) is None

    def test_delete_many_counts_the_rows_and_a_hard_one_purges_them(self, repository: Any) -> None:
        shape, pk = shape_of(repository), self.probe(repository)
        ids = [getattr(row, pk) for row in self.created(repository, 0, 1, 2)]
        assert repository.delete_many({f"{pk}__in": ids[:2]}) == 2
        assert repository.count() == 1
        assert repository.delete_many({f"{pk}__in": ids[:2]}, hard=True, include_deleted=True) == (2 if shape.soft
                                                                                                    else 0)
        assert repository.count(include_deleted=True) == 1

    def test_a_bulk_hard_delete_leaves_other_loaded_rows_intact(self, repository: Any) -> None:
        pk, change = self.probe(repository), self.change(repository)
        keep, drop = self.created(repository, 0, 1)
        assert repository.delete_many({pk: getattr(drop, pk)}, hard=True) == 1
        repository.update(keep, **change)
        assert values_of(repository.get_by_id(getattr(keep, pk)), change) == change
        assert repository.count() == 1

    # --- upsert and get_or_create ------------------------------------------------------------------------

    def test_upsert_inserts_then_updates_the_same_row(self, repository: Any) -> None:
        shape, key = shape_of(repository), self.unique_key(repository)
        change = self.change(repository, outside_unique_keys=True)
        first = repository.upsert(self.valid_fields(0), match=list(key))
        second = repository.upsert({**self.valid_fields(0), **change}, match=list(reversed(key)))
        assert getattr(second, shape.pk) == getattr(first, shape.pk) and values_of(second, change) == change
        assert not shape.versioned or second.version == 2
        assert not shape.stamped or second.created_at == first.created_at
        assert repository.count() == 1
        repository.upsert(self.valid_fields(1), match=list(key))
        assert repository.count() == 2

    def test_upsert_brings_back_a_soft_deleted_row(self, repository: Any) -> None:
        shape, key = shape_of(repository), self.unique_key(repository)
        if not shape.soft:
            pytest.skip(f"{shape.entity} has no soft delete")
        gone = repository.create(**self.valid_fields(0))
        repository.delete(gone)
        back = repository.upsert(self.valid_fields(0), match=list(key))
        assert getattr(back, shape.pk) == getattr(gone, shape.pk) and back.deleted_at is None

    def test_upsert_must_match_a_unique_key_it_is_given(self, repository: Any) -> None:
        key = self.unique_key(repository)
        keys = {frozenset(k) for k in unique_keys(shape_of(repository).table)}
        loose = [[name] for name in self.valid_fields(0) if frozenset({name}) not in keys]
        for match in [[NO_SUCH_FIELD], *loose[:1]]:
            with pytest.raises(InvalidFilter):
                repository.upsert(self.valid_fields(0), match=match)
        without = {name: value for name, value in self.valid_fields(0).items() if name != key[0]}
        with pytest.raises(ValidationError):
            repository.upsert(without, match=list(key))
        assert repository.count() == 0

    def test_an_upsert_that_clashes_on_another_unique_key_is_a_conflict(self, repository: Any) -> None:
        pk, key = shape_of(repository).pk, self.unique_key(repository)
        first = repository.create(**self.valid_fields(0))
        with pytest.raises(Conflict):
            repository.upsert({**self.valid_fields(1), pk: getattr(first, pk)}, match=list(key))
        assert values_of(repository.get_by_id(getattr(first, pk)), self.valid_fields(0)) == self.valid_fields(0)
        assert repository.count() == 1

    def test_upsert_many_inserts_and_updates_in_one_call(self, repository: Any) -> None:
        shape, key = shape_of(repository), self.unique_key(repository)
        change = self.change(repository, outside_unique_keys=True)
        first = repository.create(**self.valid_fields(0))
        rows = [self.valid_fields(1), {**self.valid_fields(0), **change}, self.valid_fields(2)]
        assert repository.upsert_many(iter(rows), match=list(key)) == 3
        assert repository.count() == 3
        again = repository.get_by_id(getattr(first, shape.pk))
        assert values_of(again, change) == change
        assert not shape.versioned or again.version == 2
        assert not shape.stamped or (again.created_at == first.created_at and again.updated_at >= first.updated_at)

    def test_upsert_many_returning_gives_the_rows_written_in_input_order(self, repository: Any) -> None:
        pk, key = shape_of(repository).pk, self.unique_key(repository)
        old = repository.create(**self.valid_fields(3))
        numbers = [5, 3, 0, 9, 1]
        written = repository.upsert_many((self.valid_fields(n) for n in numbers), match=list(key), returning=True)
        assert [values_of(row, self.valid_fields(n)) for row, n in zip(written, numbers, strict=True)] == [
            self.valid_fields(n) for n in numbers]
        assert getattr(written[1], pk) == getattr(old, pk)

    def test_upsert_many_brings_back_a_soft_deleted_row(self, repository: Any) -> None:
        shape, key = shape_of(repository), self.unique_key(repository)
        if not shape.soft:
            pytest.skip(f"{shape.entity} has no soft delete")
        gone = repository.create(**self.valid_fields(0))
        repository.delete(gone)
        repository.upsert_many([self.valid_fields(0)], match=list(key))
        back = repository.get_by_id(getattr(gone, shape.pk))
        assert back is not None and back.deleted_at is None

    def test_upsert_many_is_all_or_nothing(self, repository: Any) -> None:
        pk, key = shape_of(repository).pk, self.unique_key(repository)
        first = repository.create(**self.valid_fields(0))
        with pytest.raises(ValidationError):
            repository.upsert_many([*(self.valid_fields(n) for n in range(1, 51)), {NO_SUCH_FIELD: 1}],
                                   match=list(key))
        with pytest.raises(Conflict):  # a row clashing on another unique key (its primary key)
            repository.upsert_many([self.valid_fields(1), {**self.valid_fields(2), pk: getattr(first, pk)}],
                                   match=list(key))
        with pytest.raises(InvalidFilter):
            repository.upsert_many([self.valid_fields(1)], match=[NO_SUCH_FIELD])
        assert repository.count() == 1

    def test_get_or_create_creates_once_then_finds(self, repository: Any) -> None:
        pk, key = shape_of(repository).pk, self.unique_key(repository)
        match = {k: self.valid_fields(0)[k] for k in key}
        rest = {k: v for k, v in self.valid_fields(0).items() if k not in key}
        made, created = repository.get_or_create(**match, defaults=rest)
        found, created_again = repository.get_or_create(**match, defaults=rest)
        assert created and not created_again
        assert getattr(found, pk) == getattr(made, pk) and values_of(found, rest) == rest
        assert repository.count() == 1

    def test_get_or_create_over_a_soft_deleted_holder_of_the_key_is_a_conflict(self, repository: Any) -> None:
        shape, key = shape_of(repository), self.unique_key(repository)
        if not shape.soft:
            pytest.skip(f"{shape.entity} has no soft delete")
        repository.delete(repository.create(**self.valid_fields(0)))
        match = {k: self.valid_fields(0)[k] for k in key}
        with pytest.raises(Conflict):
            repository.get_or_create(**match, defaults={k: v for k, v in self.valid_fields(0).items() if k not in key})
        assert repository.count() == 0


__all__ = ["RepositoryContract", "Shape", "shape_of", "unique_keys"]
