"""The built-in administrative permissions and roles, as data, and ``seed_builtin_roles`` that installs them.

The catalogue is the single source of truth for the built-in roles: ``seed_builtin_roles`` makes the database match
it and is idempotent (a second run changes nothing). Call it from a migration (whenever the catalogue changes) and
from the fill step::

    from db.admin_catalog import seed_builtin_roles
    seed_builtin_roles(op.get_bind())              # in an Alembic revision's upgrade()
    seed_builtin_roles(uow.session)                # in application code

It works on a ``Session`` or a ``Connection`` with Core statements over the few columns it needs (``id``,
``name``, ``description``, ``built_in``, timestamps), never the ORM models, so an old revision keeps working
after the models grow new columns (give such columns a default). Core statements are not seen by the audit
hooks: seeding is a deployment step, recorded by the migration history.

Built-in roles are owned by the catalogue: seeding adds their missing permissions and removes any other ones.
Customise by creating your own roles. Permissions not in the catalogue (an application's own) are left alone.

``SYSTEM`` is the one actor that holds every permission without a role (``uow.admin``, ``db.services.admin``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Boolean, Connection, String, Uuid, column, delete, insert, select, table, update
from sqlalchemy.orm import Session

from db.base import UTCDateTime
from db.models.base import new_id, utcnow

WILDCARD = "*"

PERMISSIONS: dict[str, str] = {
    WILDCARD: "Every permission, present and future",
    "users.read": "See users and their status",
    "users.deactivate": "Deactivate a user: they can no longer sign in and their tokens are revoked",
    "users.reactivate": "Reactivate a deactivated user",
    "users.unlock": "Clear a user's login lockout",
    "users.force_password_reset": "Make a user choose a new password; issues a reset token",
    "accounts.read": "See accounts and their members",
    "accounts.delete": "Soft-delete an account",
    "accounts.restore": "Restore a soft-deleted account",
    "roles.read": "See roles and who holds them",
    "roles.grant": "Grant a role (only one whose permissions the granter holds)",
    "roles.revoke": "Revoke a role (only one whose permissions the revoker holds)",
    "roles.manage": "Create, change and delete custom roles",
    "audit.read": "Read the audit log",
    "data.purge": "Hard-delete soft-deleted rows past a given age (irreversible)",
}


@dataclass(frozen=True, slots=True)
class RoleSpec:
    description: str
    permissions: frozenset[str]


ROLES: dict[str, RoleSpec] = {
    "superadmin": RoleSpec("Everything, including purges and role management", frozenset({WILDCARD})),
    "admin": RoleSpec(
        "Manages users, accounts and role grants; no purge, no role definitions",
        frozenset({
            "users.read", "users.deactivate", "users.reactivate", "users.unlock", "users.force_password_reset",
            "accounts.read", "accounts.delete", "accounts.restore",
            "roles.read", "roles.grant", "roles.revoke", "audit.read",
        }),
    ),
    "support": RoleSpec(
        "Helps users sign in again",
        frozenset({"users.read", "users.unlock", "users.force_password_reset", "accounts.read"}),
    ),
    "auditor": RoleSpec(
        "Reads the audit log, users, accounts and roles; changes nothing",
        frozenset({"audit.read", "users.read", "accounts.read", "roles.read"}),
    ),
}


class SystemActor:
    """The explicit system actor: it holds every permission. Use the ``SYSTEM`` instance, never a new one.

    Meant for operations scripts and bootstrapping the first superadmin; it cannot come from request data.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return "system"

    __str__ = __repr__


SYSTEM = SystemActor()


# Lightweight table clauses: only the columns the seed reads and writes.
_permission = table(
    "admin_permission",
    column("id", Uuid()), column("name", String()), column("description", String()),
    column("created_at", UTCDateTime()), column("updated_at", UTCDateTime()),
)
_role = table(
    "admin_role",
    column("id", Uuid()), column("name", String()), column("description", String()), column("built_in", Boolean()),
    column("created_at", UTCDateTime()), column("updated_at", UTCDateTime()),
)
_role_permission = table(
    "admin_role_permission",
    column("id", Uuid()), column("role_id", Uuid()), column("permission_id", Uuid()),
    column("created_at", UTCDateTime()), column("updated_at", UTCDateTime()),
)


def seed_builtin_roles(bind: Session | Connection) -> dict[str, int]:
    """Make the built-in permissions and roles match the catalogue; returns how many rows it changed, by kind.

    Idempotent: a second run returns all zeros and writes nothing. Runs in the caller's transaction.
    """
    now = utcnow()
    changes = {"permissions": 0, "roles": 0, "grants_added": 0, "grants_removed": 0}
    permission_rows = {name: {"description": text} for name, text in PERMISSIONS.items()}
    permission_ids = _sync_named(bind, _permission, permission_rows, now=now, changes=changes, kind="permissions")
    role_rows = {name: {"description": spec.description, "built_in": True} for name, spec in ROLES.items()}
    role_ids = _sync_named(bind, _role, role_rows, now=now, changes=changes, kind="roles")
    for name, spec in ROLES.items():
        role_id = role_ids[name]
        wanted = {permission_ids[permission] for permission in spec.permissions}
        links = select(_role_permission.c.permission_id).where(_role_permission.c.role_id == role_id)
        present = set(bind.execute(links).scalars())
        if wanted - present:
            bind.execute(insert(_role_permission), [
                {"id": new_id(), "role_id": role_id, "permission_id": pid, "created_at": now, "updated_at": now}
                for pid in sorted(wanted - present)
            ])
        if present - wanted:
            bind.execute(delete(_role_permission).where(
                _role_permission.c.role_id == role_id, _role_permission.c.permission_id.in_(sorted(present - wanted))
            ))
        changes["grants_added"] += len(wanted - present)
        changes["grants_removed"] += len(present - wanted)
    return changes


def _sync_named(
    bind: Session | Connection, clause: Any, wanted: dict[str, dict[str, Any]], *, now: dt.datetime,
    changes: dict[str, int], kind: str,
) -> dict[str, Any]:
    """Insert the missing rows of ``clause`` by name and update those that differ; returns name → id."""
    fields = sorted(next(iter(wanted.values())))
    statement = select(clause.c.id, clause.c.name, *(clause.c[key] for key in fields))
    existing = {row.name: row for row in bind.execute(statement.where(clause.c.name.in_(wanted)))}
    ids: dict[str, Any] = {}
    for name, values in wanted.items():
        row = existing.get(name)
        if row is None:
            ids[name] = new_id()
            bind.execute(insert(clause).values(id=ids[name], name=name, created_at=now, updated_at=now, **values))
            changes[kind] += 1
            continue
        ids[name] = row.id
        if any(getattr(row, key) != value for key, value in values.items()):
            bind.execute(update(clause).where(clause.c.id == row.id).values(updated_at=now, **values))
            changes[kind] += 1
    return ids


__all__ = ["PERMISSIONS", "ROLES", "SYSTEM", "WILDCARD", "RoleSpec", "SystemActor", "seed_builtin_roles"]
