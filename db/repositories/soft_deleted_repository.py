"""``SoftDeletedRepository``: the soft-deleted rows of any soft-deletable model, as purges see them.

``soft_deleted_repository(model)`` gives the repository of one model (a class, its name or its table's), made once
per model; purging is ``uow.admin``'s operation (``db.services.admin``: permission, reason, audit event).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from typing import Any

from sqlalchemy import select

from db.base import Base
from db.errors import ValidationError
from db.repositories.base_repository import WriteRepository, translated


class SoftDeletedRepository(WriteRepository[Any]):
    """Rows of one soft-deletable model (set ``model`` in a subclass, or use ``soft_deleted_repository``)."""

    @translated
    def deleted_before(self, before: dt.datetime) -> list[tuple[uuid.UUID, dt.datetime]]:
        """(id, deleted_at) of the rows soft-deleted before ``before``, oldest first."""
        model = self.model
        statement = select(model.id, model.deleted_at).where(model.deleted_at < before)
        return [(row[0], row[1]) for row in self.session.execute(statement.order_by(model.deleted_at, model.id))]

    def purge(self, filters: Mapping[str, Any]) -> int:
        """Hard-delete the matching rows, soft-deleted or not, through the audited bulk delete; returns how many."""
        return self.delete_many(filters, hard=True, include_deleted=True)


_REPOSITORIES: dict[type[Any], type[SoftDeletedRepository]] = {}


def soft_deleted_repository(model: str | type[Any]) -> type[SoftDeletedRepository]:
    """The repository class of a soft-deletable model; ``ValidationError`` for anything else."""
    target = _soft_deletable(model)
    if target not in _REPOSITORIES:
        _REPOSITORIES[target] = type(f"{target.__name__}Purger", (SoftDeletedRepository,), {"model": target})
    return _REPOSITORIES[target]


def _soft_deletable(model: str | type[Any]) -> type[Any]:
    for mapper in Base.registry.mappers:
        cls = mapper.class_
        if model in (cls, cls.__name__, getattr(cls, "__tablename__", None)) and "deleted_at" in mapper.columns:
            return cls
    raise ValidationError(f"{str(model)[:64]!r} is not a soft-deletable model", field="model")


__all__ = ["SoftDeletedRepository", "soft_deleted_repository"]
