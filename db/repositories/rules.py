"""``RepositoryRules``: the model-level rules ``BaseRepository`` (SQL) and ``InMemoryRepository`` (fake) share.

The rules read the model's mapping and the repository class's configuration only, never a session or a store,
so the fake cannot drift from the real repository on what it accepts, refuses and says. ``list``, ``page`` and
``get_or_create`` are written here once too, around the few reads each repository makes its own way::

    class AccountRepository(BaseRepository[Account]):      # BaseRepository derives from RepositoryRules
        model = Account
        sortable = frozenset({"created_at", "name"})
"""

from __future__ import annotations

import functools
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, Protocol, TypeVar, cast

from sqlalchemy import Column, Table
from sqlalchemy import inspect as sa_inspect

from db.base import secret_columns
from db.errors import Conflict, InvalidFilter, NotFound, StaleVersion, ValidationError
from db.repositories import query_spec as qs
from db.repositories import values
from db.repositories.bulk import BATCH_ROWS

ModelT = TypeVar("ModelT")
ModelT_co = TypeVar("ModelT_co", covariant=True)


@dataclass(frozen=True, slots=True)
class Page(Generic[ModelT]):
    """One page of a keyset-paged listing; ``next_cursor`` is None on the last page."""

    items: list[ModelT]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class Listing:
    """What ``list`` and ``page`` ask a repository's storage for, once the window and the sort keys are checked."""

    filters: Mapping[str, Any] | None
    keys: list[qs.SortKey]
    include_deleted: bool


class RepositoryRules(Generic[ModelT]):
    """Configuration (``model``, ``filterable``, ``sortable``) and the I/O-free rules derived from it."""

    model: ClassVar[type[Any]]
    batch_size: ClassVar[int] = BATCH_ROWS  # create_many's rows per statement (checked a batch at a time)
    filterable: ClassVar[frozenset[str] | None] = None
    sortable: ClassVar[frozenset[str] | None] = None

    # --- what each repository provides from its own storage ------------------------------------------------

    def get_by_id(self, ident: Any, *, include_deleted: bool = False, for_update: bool = False) -> ModelT | None:
        raise NotImplementedError

    def _listed(self, listing: Listing, limit: int | None, offset: int) -> list[ModelT]:
        """The rows ``listing`` asks for, ``offset`` rows skipped and at most ``limit`` kept."""
        raise NotImplementedError

    def _paged(self, listing: Listing, after: str | None, limit: int) -> list[ModelT]:
        """The first ``limit`` rows ``listing`` asks for strictly after the cursor ``after`` (None: from the start).

        Filters are checked before the cursor: a call with both wrong is refused for its filters.
        """
        raise NotImplementedError

    # --- configuration -------------------------------------------------------------------------------------

    @property
    def entity(self) -> str:
        return str(self.model.__tablename__)

    @classmethod
    def policy(cls) -> qs.FieldPolicy:
        """Which fields may be filtered and sorted on (computed once per repository class)."""
        return _policy_of(cast(Hashable, cls.model), cls.filterable, cls.sortable)  # a class hashes by identity

    @property
    def _table(self) -> Table:
        return cast(Table, self.model.__table__)

    @functools.cached_property
    def _pk(self) -> Column[Any]:
        """The primary key column (its name is ``_pk.key``)."""
        return cast(Column[Any], sa_inspect(self.model).primary_key[0])

    @property
    def _soft(self) -> bool:
        return "deleted_at" in self._table.c

    @property
    def _versioned(self) -> bool:
        return sa_inspect(self.model).version_id_col is not None

    def _protected(self) -> frozenset[str]:
        """Fields the layer maintains and callers may not set: the version counter."""
        return frozenset({"version"}) if self._versioned else frozenset()

    # --- instances and ids -----------------------------------------------------------------------------------

    def _pk_of(self, instance: Any) -> Any:
        return getattr(instance, self._pk.key)

    def _is_deleted(self, instance: Any) -> bool:
        return self._soft and instance.deleted_at is not None

    def _coerce_id(self, ident: Any) -> Any:
        policy = self.policy()
        return qs.coerce_value(policy, policy.primary_key, policy.types[policy.primary_key], ident)

    def _coerced(self, match: Mapping[str, Any]) -> dict[str, Any]:
        """Match values checked like filter values, so a bad one is refused the same way on every engine."""
        policy = self.policy()
        return {
            key: qs.coerce_value(policy, key, policy.types[key], value) if key in policy.types and value is not None
            else value
            for key, value in match.items()
        }

    def _resolve(self, instance_or_id: Any, *, include_deleted: bool = False) -> Any:
        if isinstance(instance_or_id, self.model):
            if not include_deleted and self._is_deleted(instance_or_id):
                raise NotFound(self.entity, self._pk_of(instance_or_id))
            return instance_or_id
        instance = self.get_by_id(instance_or_id, include_deleted=include_deleted)
        if instance is None:
            raise NotFound(self.entity, instance_or_id)
        return instance

    # --- listing, paging and get-or-create ------------------------------------------------------------------

    def list(
        self,
        *,
        filters: Mapping[str, Any] | None = None,
        order_by: Sequence[str] = (),
        limit: int | None = None,
        offset: int = 0,
        include_deleted: bool = False,
    ) -> list[ModelT]:
        policy = self.policy()
        qs.check_window(policy, limit=limit, offset=offset)
        return self._listed(Listing(filters, qs.parse_order(policy, order_by), include_deleted), limit, offset)

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
        qs.check_size(policy, size)
        keys = qs.parse_order(policy, order_by)
        rows = self._paged(Listing(filters, keys, include_deleted), after, size + 1)
        if len(rows) <= size:
            return Page(rows, None)
        last = rows[size - 1]
        return Page(rows[:size], qs.encode_cursor(policy, keys, [getattr(last, k.field) for k in keys]))

    # --- checks ----------------------------------------------------------------------------------------------

    def _check_writable(self, fields: Mapping[str, Any], *, allow_pk: bool) -> None:
        columns = self._table.c
        for key, value in fields.items():
            if key not in columns or (self._versioned and key == "version"):
                raise ValidationError(f"{self.entity}: unknown field {str(key)[:64]!r}", field=str(key)[:64])
            if not allow_pk and columns[key].primary_key:
                raise ValidationError(f"{self.entity}.{key} cannot be changed", field=key)
            values.stored(self.entity, columns[key], value)  # ValidationError naming the field and the rule

    def _converted(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        """``fields`` (checked by ``_check_writable``) as their columns store them: ISO text parsed, UTC, rounded.

        The instance and the row then hold what every engine gives back, and so does the fake (``values``).
        """
        columns = self._table.c
        return {key: values.stored(self.entity, columns[key], value) for key, value in fields.items()}

    def _check_required(self, fields: Mapping[str, Any]) -> None:
        """A NOT NULL column without any default must be given (a given None is left to the NOT NULL check)."""
        table = self._table
        for column in table.columns:
            if column.key in fields or column.nullable or column.default is not None:
                continue
            if column.server_default is None and table.autoincrement_column is not column:
                raise ValidationError(f"{self.entity}.{column.key} is required", field=column.key, rule="required")

    def _check_update(self, instance: Any, fields: dict[str, Any]) -> None:
        """Take ``version`` out of ``fields`` (the version the caller last saw) and check the rest can be set."""
        expected = fields.pop("version", None) if self._versioned else None
        if expected is not None:
            expected = values.stored(self.entity, self._table.c.version, expected)
        self._check_writable(fields, allow_pk=False)
        if expected is not None and expected != instance.version:
            raise StaleVersion(self.entity, self._pk_of(instance))

    def _check_bulk_update(self, fields: Mapping[str, Any]) -> None:
        self._check_writable(fields, allow_pk=False)
        if not fields:
            raise ValidationError(f"{self.entity}: update_many needs at least one field to set")

    def _upsert_input(self, values: Mapping[str, Any], match: Sequence[str]) -> tuple[tuple[str, ...], dict[str, Any]]:
        """``match`` as a unique key and ``values`` as fields, checked; every ``match`` field must be given."""
        key = self._unique_key(match)
        fields = dict(values)
        self._check_writable(fields, allow_pk=True)
        self._check_required(fields)
        missing = [name for name in key if name not in fields]
        if missing:
            raise ValidationError(f"{self.entity}.{missing[0]} is required to upsert", field=missing[0])
        return key, self._converted(fields)

    def _required(self, filters: Mapping[str, Any]) -> Mapping[str, Any]:
        """The filters of a bulk change: refused when empty, so no bulk change touches every row by accident."""
        if not filters:
            raise InvalidFilter(f"{self.entity}: refusing a bulk change without filters")
        return filters

    def _unique_key(self, match: Sequence[str]) -> tuple[str, ...]:
        if isinstance(match, str):
            match = (match,)
        wanted = frozenset(match)
        if not wanted or wanted not in self._unique_keys():
            raise InvalidFilter(f"{self.entity}: upsert must match on a unique key, not {sorted(wanted)!r}")
        return tuple(match)

    def _unique_keys(self) -> frozenset[frozenset[str]]:
        return _unique_keys_of(self._table)


@functools.lru_cache(maxsize=1024)
def _unique_keys_of(table: Any) -> frozenset[frozenset[str]]:
    """Every unique key of ``table`` (its primary key included), each as its column names: computed once."""
    keys = {frozenset(column.key for column in table.primary_key.columns)}
    keys |= {frozenset(c.key for c in constraint.columns) for constraint in table.constraints
             if constraint.__class__.__name__ == "UniqueConstraint"}
    keys |= {frozenset(c.key for c in index.columns) for index in table.indexes if index.unique}
    keys |= {frozenset({column.key}) for column in table.columns if column.unique}
    return frozenset(keys)


def check_upsert_key(entity: str, row: Mapping[str, Any], key: Sequence[str]) -> None:
    """A row of ``upsert_many`` gives a value for every field of its ``match`` key: NULL matches no row."""
    for name in key:
        if row.get(name) is None:
            raise ValidationError(f"{entity}.{name} is required to upsert", field=name, rule="required")


class Creating(Protocol[ModelT_co]):
    """What ``get_or_create`` needs of a repository (the SQL one and the in-memory fake)."""

    @property
    def entity(self) -> str: ...
    def _made_unless_held(self, match: Mapping[str, Any], defaults: Mapping[str, Any]) -> ModelT_co | None: ...
    def _find(self, match: Mapping[str, Any], *, locking: bool) -> ModelT_co | None: ...
    def _coerced(self, match: Mapping[str, Any]) -> dict[str, Any]: ...
    def _check_writable(self, fields: Mapping[str, Any], *, allow_pk: bool) -> None: ...


def get_or_create(
    repository: Creating[ModelT], defaults: Mapping[str, Any] | None, match: Mapping[str, Any]
) -> tuple[ModelT, bool]:
    """The visible row matching ``match``, or a new one; a create that loses a race reads the winner's row."""
    if not match:
        raise InvalidFilter(f"{repository.entity}: get_or_create needs at least one field to match")
    _check_defaults(repository.entity, defaults, match)
    match = repository._coerced(match)  # a malformed value is an InvalidFilter here, as in any filter
    repository._check_writable(match, allow_pk=True)
    found = repository._find(match, locking=False)
    if found is not None:
        return found, False
    clash: Conflict | None = None
    try:
        made = repository._made_unless_held(match, defaults or {})
    except Conflict as error:
        if isinstance(error, StaleVersion):
            raise
        made, clash = None, error
    if made is not None:
        return made, True
    found = repository._find(match, locking=True)  # the row of the caller that won the race
    if found is None:
        raise clash or Conflict(f"{repository.entity}: a hidden (soft-deleted) row holds this key",
                                entity=repository.entity)
    return found, False


def _check_defaults(entity: str, defaults: Any, match: Mapping[str, Any]) -> None:
    """A wrong call of get_or_create is the caller's bug: a TypeError, as Python raises for any wrong call."""
    if defaults is None:
        return
    if not isinstance(defaults, Mapping):
        raise TypeError(f"{entity}: get_or_create's defaults must be a mapping, not {type(defaults).__name__}")
    repeated = sorted(str(key) for key in set(match) & set(defaults))
    if repeated:
        raise TypeError(f"{entity}: get_or_create's defaults repeat the matched field {repeated[0]!r}")


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
        if kind in qs.COERCERS and column.key not in secret:
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


__all__ = ["Listing", "Page", "RepositoryRules", "build_policy"]


@functools.lru_cache(maxsize=1024)
def _policy_of(model: Any, filterable: frozenset[str] | None, sortable: frozenset[str] | None) -> qs.FieldPolicy:
    """A repository configuration's field policy, built once (bounded: configurations are few, but not the cache's
    business to trust)."""
    return build_policy(model, filterable, sortable)
