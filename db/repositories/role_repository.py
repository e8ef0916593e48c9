"""``RoleRepository``: administrative roles (``Role``), the data behind ``uow.admin``'s role operations.

A built-in role (``built_in=True``) belongs to ``db.admin_catalog``: only ``seed_builtin_roles`` makes or changes
one. This repository keeps that invariant on every write it offers: ``built_in`` cannot be set (``ValidationError``),
a built-in role cannot be changed or deleted (``Conflict``), and the bulk writes leave built-in roles out.

Who may write roles is not this repository's business: ``uow.admin`` (``db.services.admin``) checks permissions
and records the reason; prefer its ``create_role`` / ``delete_role``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Literal, overload

from sqlalchemy import select

from db.errors import Conflict, ValidationError
from db.models.admin_role import Role
from db.models.admin_user_role import UserRole
from db.repositories.base_repository import BaseRepository, translated


class RoleRepository(BaseRepository[Role]):
    model = Role

    # --- queries -----------------------------------------------------------------------------------------------

    @translated
    def named(self, name: str) -> Role | None:
        return self.session.scalar(select(Role).where(Role.name == name))

    @translated
    def granted_to(self, user_id: uuid.UUID) -> list[Role]:
        """The roles granted to the user (whether or not the user is active), by name."""
        statement = select(Role).join(UserRole, UserRole.role_id == Role.id).where(UserRole.user_id == user_id)
        return list(self.session.scalars(statement.order_by(Role.name)))

    # --- writes: never a built-in role -------------------------------------------------------------------------

    def create(self, **fields: Any) -> Role:
        _refuse_built_in_flag(fields)
        return super().create(**fields)

    def _prepared(self, row: Mapping[str, Any]) -> Mapping[str, Any]:
        _refuse_built_in_flag(row)
        return row

    def update(self, instance_or_id: Any, **fields: Any) -> Role:
        _refuse_built_in_flag(fields)
        check_not_built_in(self._resolve(instance_or_id))
        return super().update(instance_or_id, **fields)

    def update_many(self, filters: Mapping[str, Any], **fields: Any) -> int:
        _refuse_built_in_flag(fields)
        return super().update_many({**self._required(filters), "built_in": False}, **fields)

    def delete(self, instance_or_id: Any, *, hard: bool = False) -> None:
        check_not_built_in(self._resolve(instance_or_id))
        super().delete(instance_or_id, hard=hard)

    def delete_many(self, filters: Mapping[str, Any], *, hard: bool = False, include_deleted: bool = False) -> int:
        return super().delete_many({**self._required(filters), "built_in": False}, hard=hard,
                                   include_deleted=include_deleted)

    def upsert(self, values: Mapping[str, Any], *, match: Sequence[str]) -> Role:
        _refuse_built_in_flag(values)
        keys = [match] if isinstance(match, str) else list(match)
        existing = self.session.scalar(select(Role).where(*(self._column(k) == values.get(k) for k in keys)))
        if existing is not None:
            check_not_built_in(existing)
        return super().upsert(values, match=match)

    @overload
    def upsert_many(self, rows: Iterable[Mapping[str, Any]], *, match: Sequence[str],
                    returning: Literal[False] = False) -> int: ...
    @overload
    def upsert_many(self, rows: Iterable[Mapping[str, Any]], *, match: Sequence[str],
                    returning: Literal[True]) -> list[Role]: ...

    def upsert_many(
        self, rows: Iterable[Mapping[str, Any]], *, match: Sequence[str], returning: bool = False
    ) -> int | list[Role]:
        keys = [match] if isinstance(match, str) else list(match)
        held = select(*(self._column(k) for k in keys)).where(Role.built_in.is_(True))
        built_in = {tuple(found) for found in self.session.execute(held)} if set(keys) <= set(self._table.c.keys()) \
            else set()

        def guarded(rows: Iterable[Mapping[str, Any]]) -> Iterator[Mapping[str, Any]]:
            for row in rows:
                if isinstance(row, Mapping) and set(keys) <= row.keys():
                    wanted = self._coerced({k: row[k] for k in keys})
                    if tuple(wanted[k] for k in keys) in built_in:
                        raise Conflict("a built-in role changes only with the catalogue (seed_builtin_roles)",
                                       entity="admin_role")
                yield row

        written: int | list[Role] = super().upsert_many(  # type: ignore[call-overload]
            guarded(rows), match=match, returning=returning)
        return written


def check_not_built_in(role: Role) -> None:
    """``Conflict`` if ``role`` is built in: it changes only with the catalogue."""
    if role.built_in:
        raise Conflict(f"role {role.name!r} is built in: it changes only with the catalogue (seed_builtin_roles)",
                       entity="admin_role")


def _refuse_built_in_flag(fields: Mapping[str, Any]) -> None:
    if fields.get("built_in"):
        raise ValidationError("built-in roles come from the catalogue (seed_builtin_roles)", field="built_in")


__all__ = ["RoleRepository", "check_not_built_in"]
