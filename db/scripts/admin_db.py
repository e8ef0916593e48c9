"""Administrators from the command line: create one, grant or revoke a role, unlock a user.

    python -m db admin create ada@example.com --role superadmin --reason "first operator"   # asks the password
    python -m db admin grant bob@example.com support --reason "joins the help desk"
    python -m db admin revoke bob@example.com support --reason "left the help desk"
    python -m db admin unlock carol@example.com --reason "verified by phone"

These run as the explicit ``SYSTEM`` actor (``db.admin_catalog``): whoever can run them can already reach the
database. Every change is audited with its reason, by the same ``uow.admin`` operations an application uses.
"""

from __future__ import annotations

from dataclasses import dataclass

from db.admin_catalog import SYSTEM
from db.errors import NotFound
from db.layer import Database, UnitOfWork
from db.models.user import User


@dataclass(frozen=True, slots=True)
class AdminResult:
    email: str
    created: bool = False  # a new user
    changed: bool = True  # False: nothing to do (the role was held already)
    roles: tuple[str, ...] = ()  # the user's roles afterwards


def create_admin(database: Database, email: str, password: str, *, role: str, reason: str) -> AdminResult:
    """Create the user ``email`` (or take the existing one: its password is left alone) and grant ``role``."""
    with database.unit_of_work(actor=SYSTEM) as uow:
        user, created, granted = ensure_admin(uow, email, password, role=role, reason=reason)
        return AdminResult(user.email, created, created or granted, _roles(uow, user))


def ensure_admin(uow: UnitOfWork, email: str, password: str, *, role: str, reason: str,
                 display_name: str | None = None) -> tuple[User, bool, bool]:
    """The user ``email``, created if missing (an existing user's password is left alone), holding ``role``;
    with whether it was created and whether the role was granted now."""
    user = uow.users.get_by_email(email)
    created = user is None
    if user is None:
        user = uow.users.create(email=email, password=password, display_name=display_name, is_verified=True)
    return user, created, _grant_missing(uow, user, role, reason)


def grant_role(database: Database, email: str, role: str, *, reason: str) -> AdminResult:
    with database.unit_of_work(actor=SYSTEM) as uow:
        user = _user(uow, email)
        granted = _grant_missing(uow, user, role, reason)
        return AdminResult(user.email, changed=granted, roles=_roles(uow, user))


def revoke_role(database: Database, email: str, role: str, *, reason: str) -> AdminResult:
    """``NotFound`` if the user does not hold the role."""
    with database.unit_of_work(actor=SYSTEM) as uow:
        user = _user(uow, email)
        uow.admin.revoke_role(user, role, reason=reason)
        return AdminResult(user.email, roles=_roles(uow, user))


def unlock_user(database: Database, email: str, *, reason: str) -> AdminResult:
    with database.unit_of_work(actor=SYSTEM) as uow:
        user = _user(uow, email)
        uow.admin.unlock_user(user, reason=reason)
        return AdminResult(user.email, roles=_roles(uow, user))


def _user(uow: UnitOfWork, email: str) -> User:
    user = uow.users.get_by_email(email)
    if user is None:
        raise NotFound("user", email)
    return user


def _grant_missing(uow: UnitOfWork, user: User, role: str, reason: str) -> bool:
    if role in _roles(uow, user):
        return False
    uow.admin.grant_role(user, role, reason=reason)
    return True


def _roles(uow: UnitOfWork, user: User) -> tuple[str, ...]:
    return tuple(role.name for role in uow.admin.roles_of(user))


if __name__ == "__main__":
    from db.cli import run_script

    run_script("admin")
