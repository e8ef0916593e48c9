"""``Service`` and ``EntityService``: what every service of the layer (and of an application) builds on."""

from __future__ import annotations

import abc
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Generic, TypeVar

from db.repositories.base_repository import OnSession, ReadRepository
from db.repositories.rules import Page

ModelT = TypeVar("ModelT")


class Service(OnSession):
    """Business operations over one session: built from the session, as a repository is, and never committing.

    A unit of work builds each service once, on first use (``uow.users``, or ``uow.repository(SomeService)`` for
    an application's own).
    """

    @property
    def actor(self) -> Any:
        """Who acts in this unit of work, as the audit trail records it."""
        return self.session.info.get("actor")


class EntityService(Service, Generic[ModelT], abc.ABC):
    """A service centred on one entity: its reads are its repository's, offered here unchanged."""

    @property
    @abc.abstractmethod
    def repository(self) -> ReadRepository[ModelT]:
        """The entity's repository, on this service's session."""

    def get_by_id(self, ident: Any, *, include_deleted: bool = False, for_update: bool = False) -> ModelT | None:
        return self.repository.get_by_id(ident, include_deleted=include_deleted, for_update=for_update)

    def get_many(self, ids: Iterable[Any], *, include_deleted: bool = False) -> list[ModelT]:
        return self.repository.get_many(ids, include_deleted=include_deleted)

    def exists(self, **filters: Any) -> bool:
        return self.repository.exists(**filters)

    def count(self, filters: Mapping[str, Any] | None = None, *, include_deleted: bool = False) -> int:
        return self.repository.count(filters, include_deleted=include_deleted)

    def page(
        self, *, filters: Mapping[str, Any] | None = None, order_by: Sequence[str] = (), size: int = 50,
        after: str | None = None, include_deleted: bool = False,
    ) -> Page[ModelT]:
        return self.repository.page(filters=filters, order_by=order_by, size=size, after=after,
                                    include_deleted=include_deleted)

    def list(
        self, *, filters: Mapping[str, Any] | None = None, order_by: Sequence[str] = (), limit: int | None = None,
        offset: int = 0, include_deleted: bool = False,
    ) -> Sequence[ModelT]:
        # Last in the class: below this line ``list`` names the method, not the builtin.
        return self.repository.list(filters=filters, order_by=order_by, limit=limit, offset=offset,
                                    include_deleted=include_deleted)


__all__ = ["EntityService", "Service"]
