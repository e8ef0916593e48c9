"""Roles, permissions and the privileged operations, on every engine.

Each privileged operation is refused without its permission before it writes anything (the whole database is
compared before and after, inside the same transaction), is done with it, records its audit event with the
reason, and refuses a blank reason.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import Connection, select, update
from sqlalchemy.orm import Session

import db.audit
from db import Conflict, Database, NotFound, UnitOfWork, ValidationError
from db.admin_catalog import PERMISSIONS, ROLES, SYSTEM, WILDCARD, seed_builtin_roles
from db.base import Base
from db.errors import PermissionDenied
from db.models.account import Account
from db.models.admin_permission import Permission
from db.models.admin_role import Role
from db.models.admin_role_permission import RolePermission
from db.models.admin_user_role import UserRole
from db.models.membership import Membership
from db.models.user import User
from db.repositories.role_repository import RoleRepository

PASSWORD = "correct horse battery staple"
REASON = "ticket 42: requested by the customer"
STAFF = {"root": "superadmin", "admin": "admin", "support": "support", "auditor": "auditor"}


@dataclass
class World:
    database: Database
    users: dict[str, User]
    account: Account

    def uow(self, name: str | None = None) -> Any:
        """A unit of work acting as the user called ``name`` (None: no actor)."""
        return self.database.unit_of_work(actor=None if name is None else self.users[name])


@pytest.fixture
def world(database: Database) -> World:
    """Seeded roles; root (superadmin), admin, support, auditor, nobody (no role) and target; target owns acme."""
    with database.unit_of_work(actor=SYSTEM) as uow:
        seed_builtin_roles(uow.session)
        users = {
            name: uow.users.create(email=f"{name}@example.com", password=PASSWORD)
            for name in (*STAFF, "nobody", "target")
        }
        for name, role in STAFF.items():
            uow.admin.grant_role(users[name], role, reason="test staff")
        account = uow.accounts.create(name="Acme", slug="acme", owner=users["target"])
    return World(database, users, account)


@pytest.fixture
def events(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str | None, str, dict[str, Any]]]:
    """The ``admin.*`` events passed to ``db.audit.record_event``, as (action, entity_type, entity_id, data).

    They are still written; events of other kinds (``token.issued``...) are the user repository's business.
    """
    calls: list[tuple[str, str | None, str, dict[str, Any]]] = []
    real = db.audit.record_event

    def recording(session: Session, action: str, **kwargs: Any) -> None:
        if action.startswith("admin."):
            data = dict(kwargs.get("data") or {})
            calls.append((action, kwargs.get("entity_type"), str(kwargs.get("entity_id")), data))
        real(session, action, **kwargs)

    monkeypatch.setattr(db.audit, "record_event", recording)
    return calls


def snapshot(session: Session) -> dict[str, list[str]]:
    """Every row of every table of the application, as text: equal snapshots mean nothing was written."""
    return {
        table.name: sorted(repr(tuple(row)) for row in session.execute(select(table)))
        for table in Base.metadata.sorted_tables
    }


def fetch_user(uow: UnitOfWork, user: User) -> User:
    found = uow.users.get_by_id(user.id, include_deleted=True)
    assert found is not None
    return found


def fetch_account(uow: UnitOfWork, account: Account) -> Account | None:
    return uow.accounts.get_by_id(account.id, include_deleted=True)


# --- the privileged operations, as data ----------------------------------------------------------------------


@dataclass(frozen=True)
class Operation:
    name: str
    permission: str
    action: str
    allowed: str  # the least privileged staff member holding the permission
    lacking: str  # a staff member without it
    run: Callable[[UnitOfWork, World, Any], Any]
    check: Callable[[UnitOfWork, World, Any], None]
    prepare: Callable[[UnitOfWork, World], None] = lambda uow, world: None

    def __str__(self) -> str:
        return self.name


def _deactivated(uow: UnitOfWork, world: World) -> None:
    uow.users.set_active(fetch_user(uow, world.users["target"]), False)


def _locked(uow: UnitOfWork, world: World) -> None:
    in_an_hour = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    uow.users.update(world.users["target"].id, locked_until=in_an_hour, failed_login_count=5)


def _soft_deleted(uow: UnitOfWork, world: World) -> None:
    uow.accounts.delete(world.account.id)


def _soft_deleted_long_ago(uow: UnitOfWork, world: World) -> None:
    long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=90)
    uow.session.execute(update(Account).where(Account.id == world.account.id).values(deleted_at=long_ago))


def _granted_auditor(uow: UnitOfWork, world: World) -> None:
    auditor = uow.admin.role("auditor")
    assert auditor is not None
    uow.session.add(UserRole(user_id=world.users["target"].id, role_id=auditor.id, reason="setup"))


def _check_active(expected: bool) -> Callable[[UnitOfWork, World, Any], None]:
    def check(uow: UnitOfWork, world: World, _result: Any) -> None:
        assert fetch_user(uow, world.users["target"]).is_active is expected
    return check


def _check_unlocked(uow: UnitOfWork, world: World, _result: Any) -> None:
    target = fetch_user(uow, world.users["target"])
    assert (target.locked_until, target.failed_login_count) == (None, 0)


def _check_reset(uow: UnitOfWork, world: World, token: Any) -> None:
    assert isinstance(token, str)
    assert len(token) >= 20
    assert fetch_user(uow, world.users["target"]).must_change_password is True


def _check_account_deleted(expected: bool) -> Callable[[UnitOfWork, World, Any], None]:
    def check(uow: UnitOfWork, world: World, _result: Any) -> None:
        account = fetch_account(uow, world.account)
        assert account is not None
        assert account.is_deleted is expected
    return check


def _check_purged(uow: UnitOfWork, world: World, count: Any) -> None:
    assert count == 1
    assert fetch_account(uow, world.account) is None
    assert uow.session.scalars(select(Membership).where(Membership.account_id == world.account.id)).all() == []


def _check_roles(expected: list[str]) -> Callable[[UnitOfWork, World, Any], None]:
    def check(uow: UnitOfWork, world: World, _result: Any) -> None:
        assert [role.name for role in uow.admin.roles_of(world.users["target"])] == expected
    return check


OPERATIONS = [
    Operation("deactivate_user", "users.deactivate", "admin.user.deactivate", "admin", "support",
              lambda uow, w, reason: uow.admin.deactivate_user(w.users["target"], reason=reason),
              _check_active(False)),
    Operation("reactivate_user", "users.reactivate", "admin.user.reactivate", "admin", "support",
              lambda uow, w, reason: uow.admin.reactivate_user(w.users["target"], reason=reason),
              _check_active(True), _deactivated),
    Operation("unlock_user", "users.unlock", "admin.user.unlock", "support", "auditor",
              lambda uow, w, reason: uow.admin.unlock_user(w.users["target"], reason=reason),
              _check_unlocked, _locked),
    Operation("force_password_reset", "users.force_password_reset", "admin.user.force_password_reset", "support",
              "auditor", lambda uow, w, reason: uow.admin.force_password_reset(w.users["target"], reason=reason),
              _check_reset),
    Operation("soft_delete_account", "accounts.delete", "admin.account.soft_delete", "admin", "support",
              lambda uow, w, reason: uow.admin.soft_delete_account(w.account, reason=reason),
              _check_account_deleted(True)),
    Operation("restore_account", "accounts.restore", "admin.account.restore", "admin", "auditor",
              lambda uow, w, reason: uow.admin.restore_account(w.account, reason=reason),
              _check_account_deleted(False), _soft_deleted),
    Operation("purge_soft_deleted", "data.purge", "admin.purge", "root", "admin",
              lambda uow, w, reason: uow.admin.purge_soft_deleted(
                  "account", older_than=dt.timedelta(days=30), reason=reason),
              _check_purged, _soft_deleted_long_ago),
    Operation("grant_role", "roles.grant", "admin.role.grant", "admin", "support",
              lambda uow, w, reason: uow.admin.grant_role(w.users["target"], "auditor", reason=reason),
              _check_roles(["auditor"])),
    Operation("revoke_role", "roles.revoke", "admin.role.revoke", "admin", "auditor",
              lambda uow, w, reason: uow.admin.revoke_role(w.users["target"], "auditor", reason=reason),
              _check_roles([]), _granted_auditor),
]


@pytest.fixture(params=OPERATIONS, ids=str)
def operation(request: pytest.FixtureRequest, world: World) -> Operation:
    """One privileged operation, its preconditions in place (a deactivated user to reactivate, and so on)."""
    op: Operation = request.param
    with world.uow() as uow:
        op.prepare(uow, world)
    return op


@pytest.mark.parametrize("who", ["nobody", "lacking"])
def test_every_privileged_operation_without_its_permission_is_denied_and_writes_nothing(
    world: World, operation: Operation, who: str, events: list[Any]
) -> None:
    actor = operation.lacking if who == "lacking" else "nobody"
    with world.uow(actor) as uow:
        before = snapshot(uow.session)
        with pytest.raises(PermissionDenied) as denied:
            operation.run(uow, world, REASON)
        assert denied.value.permission == operation.permission
        assert snapshot(uow.session) == before
    assert events == []


def test_every_privileged_operation_with_its_permission_is_done_and_recorded_with_its_reason(
    world: World, operation: Operation, events: list[Any]
) -> None:
    with world.uow(operation.allowed) as uow:
        result = operation.run(uow, world, f"  {REASON}\n")
    with world.uow() as uow:
        operation.check(uow, world, result)
    assert [(action, data["reason"]) for action, _type, _id, data in events] == [(operation.action, REASON)]
    if isinstance(result, str):
        assert result not in repr(events)  # a reset token never reaches the audit log


def test_the_audit_events_name_the_entity_acted_on(world: World, operation: Operation, events: list[Any]) -> None:
    with world.uow("root") as uow:
        operation.run(uow, world, REASON)
    [(_action, entity_type, entity_id, _data)] = events
    expected = {"account": str(world.account.id), "user": str(world.users["target"].id)}
    assert entity_type in expected
    if operation.name != "purge_soft_deleted":  # a purge names the table only
        assert entity_id == expected[entity_type]


@pytest.mark.parametrize("reason", ["", "   \n\t", None, "x" * 501])
def test_every_privileged_operation_refuses_a_blank_or_missing_reason_and_writes_nothing(
    world: World, operation: Operation, reason: Any, events: list[Any]
) -> None:
    with world.uow("root") as uow:
        before = snapshot(uow.session)
        with pytest.raises(ValidationError) as refused:
            operation.run(uow, world, reason)
        assert refused.value.field == "reason"
        assert snapshot(uow.session) == before
    assert events == []


def test_an_actor_without_the_permission_is_denied_before_the_reason_is_looked_at(
    world: World, operation: Operation
) -> None:
    with world.uow("nobody") as uow, pytest.raises(PermissionDenied):
        operation.run(uow, world, "")


# --- who is an actor -----------------------------------------------------------------------------------------


def _deactivate_root(world: World) -> Any:
    with world.uow() as uow:
        uow.users.set_active(fetch_user(uow, world.users["root"]), False)
    return world.users["root"]  # the object still says is_active=True: the database decides


def _soft_delete_root(world: World) -> Any:
    with world.uow() as uow:
        uow.users.delete(world.users["root"].id)
    return world.users["root"]


ACTORS: dict[str, Callable[[World], Any]] = {
    "no actor": lambda world: None,
    "the string 'system'": lambda world: "system",
    "a superadmin's id": lambda world: world.users["root"].id,
    "an unsaved user": lambda world: User(email="new@example.com", email_key="new@example.com"),
    "a deactivated superadmin": _deactivate_root,
    "a soft-deleted superadmin": _soft_delete_root,
}


@pytest.mark.parametrize("make_actor", ACTORS.values(), ids=ACTORS.keys())
def test_only_a_saved_active_user_can_hold_a_permission(world: World, make_actor: Callable[[World], Any]) -> None:
    actor = make_actor(world)
    with world.database.unit_of_work(actor=actor) as uow:
        assert uow.admin.has_permission(actor, "users.deactivate") is False
        assert uow.admin.permissions_of(actor) == set()
        before = snapshot(uow.session)
        with pytest.raises(PermissionDenied):
            uow.admin.deactivate_user(world.users["target"], reason=REASON)
        assert snapshot(uow.session) == before


def test_a_reactivated_user_holds_their_roles_again(world: World) -> None:
    _deactivate_root(world)
    with world.uow() as uow:
        uow.users.set_active(fetch_user(uow, world.users["root"]), True)
        assert uow.admin.has_permission(world.users["root"], "data.purge")


def test_the_system_actor_may_do_anything_and_is_recorded_as_system(world: World, events: list[Any]) -> None:
    with world.database.unit_of_work(actor=SYSTEM) as uow:
        grant = uow.admin.grant_role(world.users["target"], "superadmin", reason="bootstrap the first superadmin")
        assert grant.granted_by is None
        assert db.audit.actor_of(uow.session) == "system"
    assert [action for action, *_ in events] == ["admin.role.grant"]


# --- has_permission ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("who", "permission", "expected"), [
    ("root", "data.purge", True),
    ("root", "some.future.permission", True),  # the wildcard
    ("admin", "users.deactivate", True),
    ("admin", "roles.grant", True),
    ("admin", "data.purge", False),
    ("admin", "roles.manage", False),
    ("admin", WILDCARD, False),
    ("support", "users.unlock", True),
    ("support", "users.force_password_reset", True),
    ("support", "users.deactivate", False),
    ("auditor", "audit.read", True),
    ("auditor", "users.unlock", False),
    ("nobody", "users.read", False),
    ("target", "audit.read", False),
])
def test_has_permission_follows_the_roles_granted(world: World, who: str, permission: str, expected: bool) -> None:
    with world.uow() as uow:
        assert uow.admin.has_permission(world.users[who], permission) is expected


def test_permissions_of_lists_what_a_user_holds(world: World) -> None:
    with world.uow() as uow:
        assert uow.admin.permissions_of(world.users["support"]) == ROLES["support"].permissions
        assert uow.admin.permissions_of(world.users["root"]) == {WILDCARD}
        assert uow.admin.permissions_of(world.users["nobody"]) == set()


# --- granting and revoking -----------------------------------------------------------------------------------


def test_a_grant_records_who_granted_it_and_why(world: World) -> None:
    with world.uow("admin") as uow:
        uow.admin.grant_role(world.users["target"], "support", reason="joins the help desk")
    with world.uow() as uow:
        grant = uow.session.scalars(select(UserRole).where(UserRole.user_id == world.users["target"].id)).one()
        assert (grant.granted_by, grant.reason) == (world.users["admin"].id, "joins the help desk")
        assert uow.admin.has_permission(world.users["target"], "users.unlock")


def test_nobody_grants_or_revokes_a_role_with_permissions_they_lack(world: World) -> None:
    with world.uow("admin") as uow:
        before = snapshot(uow.session)
        with pytest.raises(PermissionDenied) as denied:
            uow.admin.grant_role(world.users["target"], "superadmin", reason=REASON)
        assert denied.value.permission == WILDCARD
        with pytest.raises(PermissionDenied):
            uow.admin.revoke_role(world.users["root"], "superadmin", reason=REASON)
        assert snapshot(uow.session) == before


def test_granting_a_role_held_already_is_a_conflict(world: World) -> None:
    with world.uow("root") as uow, pytest.raises(Conflict):
        uow.admin.grant_role(world.users["support"], "support", reason=REASON)


def test_granting_or_revoking_an_unknown_or_unheld_role_is_not_found(world: World) -> None:
    with world.uow("root") as uow:
        with pytest.raises(NotFound):
            uow.admin.grant_role(world.users["target"], "wizard", reason=REASON)
        with pytest.raises(NotFound):
            uow.admin.revoke_role(world.users["target"], "support", reason=REASON)


# --- roles: the catalogue, seeding and custom roles ----------------------------------------------------------


def catalogue_state(session: Session) -> dict[str, Any]:
    rows = session.execute(
        select(Role.name, Role.built_in, Role.description, Permission.name)
        .join(RolePermission, RolePermission.role_id == Role.id).join(Permission)
    )
    state: dict[str, Any] = {}
    for role, built_in, description, permission in rows:
        state.setdefault(role, (built_in, description, set()))[2].add(permission)
    return state


def test_seeding_twice_changes_nothing(world: World) -> None:
    with world.uow() as uow:
        before = snapshot(uow.session)
        assert seed_builtin_roles(uow.session) == {"permissions": 0, "roles": 0, "grants_added": 0,
                                                   "grants_removed": 0}
        assert snapshot(uow.session) == before


def test_seeding_installs_exactly_the_catalogue(world: World) -> None:
    with world.uow() as uow:
        state = catalogue_state(uow.session)
        assert {name: permissions for name, (_b, _d, permissions) in state.items()} == {
            name: set(spec.permissions) for name, spec in ROLES.items()
        }
        assert all(built_in for built_in, _d, _p in state.values())
        assert set(uow.session.scalars(select(Permission.name))) == set(PERMISSIONS)


def test_seeding_brings_drifted_built_in_roles_back_and_leaves_custom_ones_alone(world: World) -> None:
    with world.uow("root") as uow:
        uow.admin.create_role("billing", permissions=["accounts.read"], reason="finance team")
        uow.session.add(Permission(name="reports.export", description="an application's own permission"))
        support, purge = uow.admin.role("support"), uow.session.scalars(
            select(Permission).where(Permission.name == "data.purge")).one()
        assert support is not None
        uow.session.add(RolePermission(role_id=support.id, permission_id=purge.id))
        uow.session.execute(update(Role).where(Role.name == "auditor").values(description="edited"))
        unlock = select(Permission.id).where(Permission.name == "users.unlock").scalar_subquery()
        uow.session.execute(RolePermission.__table__.delete().where(
            RolePermission.role_id == support.id, RolePermission.permission_id == unlock))
    with world.uow() as uow:
        assert seed_builtin_roles(uow.session) == {"permissions": 0, "roles": 1, "grants_added": 1,
                                                   "grants_removed": 1}
        state = catalogue_state(uow.session)
        assert state["support"][2] == set(ROLES["support"].permissions)
        assert state["auditor"][1] == ROLES["auditor"].description
        assert state["billing"] == (False, None, {"accounts.read"})
        assert "reports.export" in set(uow.session.scalars(select(Permission.name)))


def test_seeding_works_on_a_bare_connection_as_in_a_migration(database: Database) -> None:
    with database.unit_of_work() as uow:
        connection: Connection = uow.session.connection()
        for table in ("admin_user_role", "admin_role_permission", "admin_role", "admin_permission"):
            connection.exec_driver_sql(f"DELETE FROM {table}")  # undo the migration's own seed, to seed afresh
        first = seed_builtin_roles(connection)
        assert first["roles"] == len(ROLES)
        assert first["permissions"] == len(PERMISSIONS)
        assert seed_builtin_roles(connection) == dict.fromkeys(first, 0)


def test_every_permission_the_operations_require_is_in_the_catalogue() -> None:
    required = {op.permission for op in OPERATIONS} | {"roles.manage"}
    assert required <= set(PERMISSIONS)
    assert all(spec.permissions <= set(PERMISSIONS) for spec in ROLES.values())


def test_a_custom_role_grants_exactly_its_permissions(world: World) -> None:
    with world.uow("root") as uow:
        uow.admin.create_role("unlocker", permissions=["users.unlock"], description="unlocks", reason=REASON)
        uow.admin.grant_role(world.users["nobody"], "unlocker", reason=REASON)
    with world.uow("nobody") as uow:
        uow.admin.unlock_user(world.users["target"], reason=REASON)
        with pytest.raises(PermissionDenied):
            uow.admin.force_password_reset(world.users["target"], reason=REASON)


def test_role_definitions_need_roles_manage(world: World) -> None:
    with world.uow("admin") as uow:
        before = snapshot(uow.session)
        attempts: list[Callable[[], Any]] = [
            lambda: uow.admin.create_role("unlocker", permissions=["users.unlock"], reason=REASON),
            lambda: uow.admin.delete_role("support", reason=REASON),
        ]
        for attempt in attempts:
            with pytest.raises(PermissionDenied) as denied:
                attempt()
            assert denied.value.permission == "roles.manage"
        assert snapshot(uow.session) == before
        # Role definitions change through those two operations only: the service offers no generic write of roles.
        generic = ("create", "create_many", "update", "update_many", "delete", "delete_many", "upsert",
                   "get_or_create")
        assert [name for name in generic if hasattr(uow.admin, name)] == []


def test_built_in_roles_change_only_with_the_catalogue(world: World) -> None:
    with world.uow("root") as uow:
        roles = uow.repository(RoleRepository)
        support = uow.admin.role("support")
        assert support is not None
        for attempt in (
            lambda: uow.admin.delete_role("support", reason=REASON),
            lambda: roles.delete(support),
            lambda: roles.update(support, name="helpdesk"),
            lambda: roles.update(support, built_in=False),
            lambda: roles.upsert({"name": "support", "description": "x"}, match=["name"]),
            lambda: roles.upsert_many([{"name": "extra"}, {"name": "support", "description": "x"}], match=["name"]),
        ):
            with pytest.raises(Conflict):
                attempt()
        for attempt in (
            lambda: roles.create(name="fake", built_in=True),
            lambda: roles.create_many([{"name": "fake", "built_in": True}]),
            lambda: roles.upsert({"name": "fake", "built_in": True}, match=["name"]),
            lambda: roles.upsert_many([{"name": "fake", "built_in": True}], match=["name"]),
        ):
            with pytest.raises(ValidationError):
                attempt()
        assert roles.get_or_create(name="extra")[1]  # the refused upsert_many wrote nothing
        assert roles.update_many({"name": "support"}, description="x") == 0
        assert roles.delete_many({"name": "support"}) == 0
        assert uow.admin.role("support") is not None
        assert support.description == ROLES["support"].description


def test_the_role_repository_writes_custom_roles(world: World) -> None:
    with world.uow() as uow:
        roles = uow.repository(RoleRepository)
        custom = roles.create(name="billing", description="finance")
        assert roles.update(custom, description="finance team").description == "finance team"
        assert roles.update_many({"name": "billing"}, description="money") == 1
        roles.delete(custom)
        assert uow.admin.role("billing") is None


def test_a_role_still_granted_cannot_be_deleted(world: World) -> None:
    with world.uow("root") as uow:
        uow.admin.create_role("unlocker", permissions=["users.unlock"], reason=REASON)
        uow.admin.grant_role(world.users["nobody"], "unlocker", reason=REASON)
        with pytest.raises(Conflict):
            uow.admin.delete_role("unlocker", reason=REASON)
        uow.admin.revoke_role(world.users["nobody"], "unlocker", reason=REASON)
        uow.admin.delete_role("unlocker", reason=REASON)
        assert uow.admin.role("unlocker") is None


def test_a_custom_role_needs_known_permissions_and_a_plain_name(world: World) -> None:
    with world.uow("root") as uow:
        with pytest.raises(ValidationError):
            uow.admin.create_role("typo", permissions=["users.unlok"], reason=REASON)
        with pytest.raises(ValidationError):
            uow.admin.create_role("Bad Name", permissions=[], reason=REASON)


# --- accounts and purges -------------------------------------------------------------------------------------


def test_restoring_a_live_account_is_a_conflict_and_deleting_a_deleted_one_not_found(world: World) -> None:
    with world.uow("root") as uow:
        with pytest.raises(Conflict):
            uow.admin.restore_account(world.account, reason=REASON)
        uow.admin.soft_delete_account(world.account, reason=REASON)
        with pytest.raises(NotFound):
            uow.admin.soft_delete_account(world.account, reason=REASON)


def test_a_purge_removes_only_rows_soft_deleted_longer_ago_than_asked(world: World) -> None:
    now = dt.datetime.now(dt.UTC)
    with world.uow() as uow:
        owner = world.users["target"]
        ages = {"old": now - dt.timedelta(days=40), "recent": now - dt.timedelta(days=5), "live": None}
        for slug, deleted_at in ages.items():
            account = uow.accounts.create(name=slug, slug=slug, owner=owner)
            uow.session.execute(update(Account).where(Account.id == account.id).values(deleted_at=deleted_at))
    with world.uow("root") as uow:
        assert uow.admin.purge_soft_deleted(Account, older_than=dt.timedelta(days=30), reason=REASON) == 1
        assert uow.admin.purge_soft_deleted("Account", older_than=dt.timedelta(days=30), reason=REASON) == 0
    with world.uow() as uow:
        left = uow.session.scalars(select(Account.slug).order_by(Account.slug)).all()
        assert left == ["acme", "live", "recent"]


@pytest.mark.parametrize(("model", "older_than"), [
    ("widget", dt.timedelta(days=1)),                # not an application table
    ("membership", dt.timedelta(days=1)),            # not soft-deletable
    ("account", dt.timedelta(days=-1)),              # a negative age
    ("account", 30),                                 # not a timedelta
])
def test_a_purge_of_an_unknown_or_hard_delete_model_or_with_a_bad_age_is_refused(
    world: World, model: str, older_than: Any
) -> None:
    with world.uow("root") as uow, pytest.raises(ValidationError):
        uow.admin.purge_soft_deleted(model, older_than=older_than, reason=REASON)


def test_every_privileged_operation_leaves_its_entry_in_the_audit_log_in_the_same_transaction(
    world: World, operation: Operation
) -> None:
    def recorded() -> list[Any]:
        with world.uow() as uow:
            return uow.audit.by_action(operation.action, size=100).items

    before = {entry.id for entry in recorded()}
    with pytest.raises(RuntimeError), world.uow(operation.allowed) as uow:
        operation.run(uow, world, REASON)
        raise RuntimeError("the caller fails after the operation: its entry goes with it")
    assert {entry.id for entry in recorded()} == before
    with world.uow(operation.allowed) as uow:
        operation.run(uow, world, REASON)
    (entry,) = [entry for entry in recorded() if entry.id not in before]
    assert entry.actor == str(world.users[operation.allowed].id)
    assert json.loads(entry.data or "{}")["reason"] == REASON
    with world.uow() as uow:
        assert uow.audit.verify_chain().ok
