"""Accounts and memberships on every engine: the owner invariant, slugs, roles, and a real race on the last owner."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import select

from db import Conflict, Database, NotFound, UnitOfWork, ValidationError
from db.models.account import Account
from db.models.membership import Membership
from db.models.user import User

PASSWORD = "correct horse battery staple"


def new_user(uow: UnitOfWork, name: str) -> User:
    return uow.users.create(email=f"{name}@example.com", password=PASSWORD)


@pytest.fixture
def people(database: Database) -> dict[str, User]:
    with database.unit_of_work() as uow:
        return {name: new_user(uow, name) for name in ("ada", "bob", "cy")}


@pytest.fixture
def acme(database: Database, people: dict[str, User]) -> Account:
    with database.unit_of_work() as uow:
        return uow.accounts.create(name="Acme", slug="acme", owner=people["ada"])


def roles(uow: UnitOfWork, account: Account) -> dict[str, str]:
    return {str(m.user.email): m.role for m in uow.accounts.members(account)}


# --- accounts ------------------------------------------------------------------------------------------------


def test_creating_an_account_makes_its_creator_the_owner_with_defaults(database: Database, acme: Account) -> None:
    with database.unit_of_work() as uow:
        account = uow.accounts.get_by_id(acme.id)
        assert account is not None
        assert (account.name, account.slug, account.plan, account.status) == ("Acme", "acme", "free", "active")
        assert account.storage_quota_bytes == 10 * 2**30
        assert roles(uow, account) == {"ada@example.com": "owner"}


def test_an_account_whose_owner_cannot_be_recorded_is_not_created_either(database: Database) -> None:
    ghost: Any = SimpleNamespace(id=uuid.uuid4())  # no such user in the database
    with database.unit_of_work() as uow:
        with pytest.raises(Conflict):
            uow.accounts.create(name="Ghost", slug="ghost", owner=ghost)
        assert uow.accounts.count() == 0
        assert uow.session.scalars(select(Membership)).all() == []


def test_a_duplicate_slug_is_a_conflict_and_the_transaction_stays_usable(
    database: Database, people: dict[str, User], acme: Account
) -> None:
    with database.unit_of_work() as uow:
        with pytest.raises(Conflict, match=r"account\.slug 'acme' already exists"):
            uow.accounts.create(name="Other Acme", slug="acme", owner=people["bob"])
        other = uow.accounts.create(name="Other", slug="acme-2", owner=people["bob"])
    with database.unit_of_work() as uow:
        assert uow.accounts.count({"slug__startswith": "acme"}) == 2
        assert [a.slug for a in uow.accounts.accounts_of(people["bob"])] == [other.slug]


def test_the_slug_of_a_soft_deleted_account_stays_reserved(
    database: Database, people: dict[str, User], acme: Account
) -> None:
    with database.unit_of_work() as uow:
        uow.accounts.delete(acme)
        with pytest.raises(Conflict):
            uow.accounts.create(name="Acme again", slug="acme", owner=people["bob"])


@pytest.mark.parametrize("slug", ["", "Acme", "ac me", "ac_me", "acmé", "a" * 81, "acme\n", None])
def test_a_malformed_slug_is_refused(database: Database, people: dict[str, User], slug: Any) -> None:
    with database.unit_of_work() as uow:
        with pytest.raises(ValidationError) as refused:
            uow.accounts.create(name="Acme", slug=slug, owner=people["ada"])
        assert refused.value.field == "slug"
        assert uow.accounts.count() == 0


def test_slugs_of_one_and_eighty_characters_are_accepted(database: Database, people: dict[str, User]) -> None:
    with database.unit_of_work() as uow:
        uow.accounts.create(name="A", slug="a", owner=people["ada"])
        uow.accounts.create(name="B", slug="0-" + "b" * 78, owner=people["ada"])
        assert uow.accounts.count() == 2


def test_renaming_to_a_malformed_slug_is_refused(database: Database, acme: Account) -> None:
    with database.unit_of_work() as uow:
        with pytest.raises(ValidationError):
            uow.accounts.update(acme, slug="Not A Slug")
        with pytest.raises(ValidationError):
            uow.accounts.update_many({"slug": "acme"}, slug="Not A Slug")
        updated = uow.accounts.update(acme, slug="acme-inc", plan="pro")
        assert (updated.slug, updated.plan) == ("acme-inc", "pro")


@pytest.mark.parametrize(("field", "value"), [
    ("plan", "platinum"), ("status", "frozen"), ("storage_quota_bytes", -1), ("name", "   "),
])
def test_an_unknown_plan_or_status_or_a_bad_quota_or_name_is_refused(
    database: Database, people: dict[str, User], field: str, value: Any
) -> None:
    fields = {"name": "Acme", "slug": "acme", field: value}
    with database.unit_of_work() as uow:
        with pytest.raises(ValidationError) as refused:
            uow.accounts.create(owner=people["ada"], **fields)
        assert refused.value.field == field
        assert uow.accounts.count() == 0


# --- memberships ---------------------------------------------------------------------------------------------


def test_members_are_added_re_roled_and_removed(database: Database, people: dict[str, User], acme: Account) -> None:
    with database.unit_of_work() as uow:
        uow.accounts.add_member(acme, people["bob"], "viewer")
        uow.accounts.add_member(acme, people["cy"], "member")
        uow.accounts.change_role(acme, people["bob"], "admin")
    with database.unit_of_work() as uow:
        assert roles(uow, acme) == {"ada@example.com": "owner", "bob@example.com": "admin", "cy@example.com": "member"}
        assert uow.accounts.role_of(acme, people["bob"]) == "admin"
        uow.accounts.remove_member(acme, people["cy"])
    with database.unit_of_work() as uow:
        assert roles(uow, acme) == {"ada@example.com": "owner", "bob@example.com": "admin"}
        assert uow.accounts.role_of(acme, people["cy"]) is None


def test_members_are_listed_owners_first_then_by_joining_order(
    database: Database, people: dict[str, User], acme: Account
) -> None:
    with database.unit_of_work() as uow:
        uow.accounts.add_member(acme, people["bob"], "viewer")
        uow.accounts.add_member(acme, people["cy"], "admin")
        listed = uow.accounts.members(acme)
        assert [(m.user.email, m.role) for m in listed] == [
            ("ada@example.com", "owner"), ("cy@example.com", "admin"), ("bob@example.com", "viewer"),
        ]


def test_accounts_of_a_user_hides_soft_deleted_accounts(
    database: Database, people: dict[str, User], acme: Account
) -> None:
    with database.unit_of_work() as uow:
        beta = uow.accounts.create(name="Beta", slug="beta", owner=people["bob"])
        uow.accounts.add_member(beta, people["ada"], "member")
        gone = uow.accounts.create(name="Gone", slug="gone", owner=people["ada"])
        uow.accounts.delete(gone)
    with database.unit_of_work() as uow:
        assert [a.slug for a in uow.accounts.accounts_of(people["ada"])] == ["acme", "beta"]
        assert [a.slug for a in uow.accounts.accounts_of(people["cy"])] == []


def test_adding_a_member_twice_is_a_conflict(database: Database, people: dict[str, User], acme: Account) -> None:
    with database.unit_of_work() as uow:
        uow.accounts.add_member(acme, people["bob"], "member")
        with pytest.raises(Conflict):
            uow.accounts.add_member(acme, people["bob"], "admin")
        assert roles(uow, acme)["bob@example.com"] == "member"


@pytest.mark.parametrize("role", ["superuser", "Owner", "", None])
def test_an_unknown_role_is_refused(database: Database, people: dict[str, User], acme: Account, role: Any) -> None:
    with database.unit_of_work() as uow:
        with pytest.raises(ValidationError):
            uow.accounts.add_member(acme, people["bob"], role)
        uow.accounts.add_member(acme, people["bob"], "member")
        with pytest.raises(ValidationError):
            uow.accounts.change_role(acme, people["bob"], role)
        assert roles(uow, acme)["bob@example.com"] == "member"


def test_changing_or_removing_a_non_member_is_not_found(
    database: Database, people: dict[str, User], acme: Account
) -> None:
    with database.unit_of_work() as uow:
        with pytest.raises(NotFound):
            uow.accounts.change_role(acme, people["bob"], "admin")
        with pytest.raises(NotFound):
            uow.accounts.remove_member(acme, people["bob"])


def test_membership_changes_on_a_soft_deleted_account_are_not_found(
    database: Database, people: dict[str, User], acme: Account
) -> None:
    with database.unit_of_work() as uow:
        uow.accounts.delete(acme)
        with pytest.raises(NotFound):
            uow.accounts.add_member(acme, people["bob"], "member")


# --- the last owner ------------------------------------------------------------------------------------------


def test_demoting_the_last_owner_is_a_conflict(database: Database, people: dict[str, User], acme: Account) -> None:
    with database.unit_of_work() as uow:
        with pytest.raises(Conflict, match="last owner"):
            uow.accounts.change_role(acme, people["ada"], "admin")
        assert roles(uow, acme) == {"ada@example.com": "owner"}


def test_removing_the_last_owner_is_a_conflict(database: Database, people: dict[str, User], acme: Account) -> None:
    with database.unit_of_work() as uow:
        uow.accounts.add_member(acme, people["bob"], "admin")
        with pytest.raises(Conflict, match="last owner"):
            uow.accounts.remove_member(acme, people["ada"])
        assert roles(uow, acme) == {"ada@example.com": "owner", "bob@example.com": "admin"}


def test_an_owner_may_step_down_once_another_owner_exists(
    database: Database, people: dict[str, User], acme: Account
) -> None:
    with database.unit_of_work() as uow:
        uow.accounts.add_member(acme, people["bob"], "member")
        uow.accounts.change_role(acme, people["bob"], "owner")
        uow.accounts.change_role(acme, people["ada"], "member")
        uow.accounts.remove_member(acme, people["ada"])
        uow.accounts.change_role(acme, people["bob"], "owner")  # unchanged: still allowed
        assert roles(uow, acme) == {"bob@example.com": "owner"}


# --- a real race: committed data, two threads ----------------------------------------------------------------

ROUNDS = 4


@pytest.fixture(scope="module")
def race_database(engine_name: str, test_databases: Any) -> Iterator[Database]:
    """A database of its own, committed to for real (see ``TestDatabases.own``)."""
    with test_databases.own(engine_name, "dblayer_race") as database:
        yield database


def two_owners(database: Database) -> tuple[Account, User, User]:
    tag = uuid.uuid4().hex[:10]
    with database.unit_of_work() as uow:
        first, second = new_user(uow, f"race-{tag}-1"), new_user(uow, f"race-{tag}-2")
        account = uow.accounts.create(name="Race", slug=f"race-{tag}", owner=first)
        uow.accounts.add_member(account, second, "owner")
    return account, first, second


def demote(uow: UnitOfWork, account: Account, user: User) -> None:
    uow.accounts.change_role(account, user, "member")


def remove(uow: UnitOfWork, account: Account, user: User) -> None:
    uow.accounts.remove_member(account, user)


@pytest.mark.slow
@pytest.mark.parametrize("take_away", [demote, remove], ids=["demote", "remove"])
def test_two_owners_taken_away_at_once_leave_exactly_one_owner(
    race_database: Database, take_away: Callable[[UnitOfWork, Account, User], None]
) -> None:
    database = race_database
    for _ in range(ROUNDS):
        account, first, second = two_owners(database)
        start = threading.Barrier(2)

        def attempt(user: User, account: Account = account, start: threading.Barrier = start) -> str:
            start.wait(timeout=30)
            try:
                with database.unit_of_work() as uow:
                    uow.accounts.members(account)  # a plain read first: on MariaDB the snapshot is taken here
                    take_away(uow, account, user)
            except Conflict:
                return "refused"
            return "done"

        with ThreadPoolExecutor(2) as pool:
            outcomes = sorted(pool.map(attempt, [first, second]))
        assert outcomes == ["done", "refused"]
        with database.unit_of_work() as uow:
            assert [m.role for m in uow.accounts.members(account)].count("owner") == 1


@pytest.mark.parametrize("owner", [None, "ada@example.com", uuid.uuid4()])
def test_an_owner_that_is_not_a_user_is_a_validation_error_and_creates_nothing(database: Database, owner: Any) -> None:
    with pytest.raises(ValidationError), database.unit_of_work() as uow:
        uow.accounts.create(owner=owner, name="Acme", slug=f"acme-{uuid.uuid4().hex[:8]}")
    with database.session() as session:
        assert session.scalar(select(Account).where(Account.name == "Acme")) is None
