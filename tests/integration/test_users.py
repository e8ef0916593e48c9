"""Users, logins, lockout and tokens on every engine."""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from sqlalchemy import func, insert, select, update

from db import Conflict, Database, InvalidFilter, ValidationError, audit, passwords
from db.errors import AuthenticationError, TokenError
from db.models.base import utcnow
from db.models.log_audit import AuditEntry
from db.models.user import User
from db.models.user_token import UserToken
from db.repositories.user_repository import UserRepository
from db.settings import Settings
from tests.argon2_clock import SimulatedArgon2Clock
from tests.support import TestDatabases

PASSWORD = "violet-Harbor-42-lantern"
OTHER_PASSWORD = "quiet-Meadow-17-compass"
EMAIL = "ada@example.com"


# --- helpers -------------------------------------------------------------------------------------------------


def make_user(database: Database, email: str = EMAIL, password: str | None = PASSWORD, **fields: Any) -> uuid.UUID:
    with database.unit_of_work() as uow:
        return uow.users.create(email=email, password=password, **fields).id


def login(database: Database, email: str = EMAIL, password: str = PASSWORD) -> User:
    with database.unit_of_work() as uow:
        return uow.users.authenticate(email, password)


def refused_login(database: Database, email: str = EMAIL, password: str = OTHER_PASSWORD) -> AuthenticationError:
    """A login the way an application writes it: the error leaves the unit of work, which rolls back."""
    with pytest.raises(AuthenticationError) as caught:
        login(database, email, password)
    return caught.value


def fetch(database: Database, user_id: uuid.UUID) -> User:
    with database.unit_of_work() as uow:
        user = uow.users.get_by_id(user_id)
    assert user is not None
    return user


def issue(database: Database, user_id: uuid.UUID, purpose: str) -> str:
    with database.unit_of_work() as uow:
        return uow.users.issue_token(user_id, purpose)


def consume(database: Database, raw: str, purpose: str) -> User:
    with database.unit_of_work() as uow:
        return uow.users.consume_token(raw, purpose)


def outstanding_tokens(database: Database) -> int:
    with database.unit_of_work() as uow:
        return int(uow.session.scalar(select(func.count()).select_from(UserToken).where(
            UserToken.used_at.is_(None), UserToken.revoked_at.is_(None))) or 0)


def with_settings(database: Database, **overrides: Any) -> Database:
    """The same (isolated) database, with other settings."""
    other = copy.copy(database)
    other.settings = Settings.for_tests(**overrides)
    return other


def lock_for(database: Database, user_id: uuid.UUID, delta: dt.timedelta) -> None:
    with database.unit_of_work() as uow:
        uow.users.update(user_id, locked_until=utcnow() + delta)


@pytest.fixture
def verifications(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The hashes that each password verification was made against, in order."""
    calls: list[str] = []
    real = passwords.verify_password

    def spy(password: str, password_hash: str) -> bool:
        calls.append(password_hash)
        return real(password, password_hash)

    monkeypatch.setattr(passwords, "verify_password", spy)
    return calls


@pytest.fixture
def events(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dict[str, Any]]]:
    """Activity events recorded through ``db.audit.record_event``: (action, keyword arguments)."""
    recorded: list[tuple[str, dict[str, Any]]] = []
    real = audit.record_event

    def spy(session: Any, action: str, **kwargs: Any) -> None:
        recorded.append((action, kwargs))
        real(session, action, **kwargs)

    monkeypatch.setattr(audit, "record_event", spy)
    return recorded


# --- creating users and their emails -------------------------------------------------------------------------


LOOK_ALIKES = ["ali\u200bce@example.com", "ali\u00adce@example.com", "alice@example.com\u200b",
               "\u202ealice@example.com", "\u0430lice@example.com", "alice@ex\u0430mple.com",
               "\u0430\u04cf\u0456\u0441\u0435@example.com"]


@pytest.mark.parametrize("look_alike", LOOK_ALIKES)
def test_an_address_that_displays_as_a_registered_one_cannot_register_or_be_moved_to(
    database: Database, look_alike: str
) -> None:
    alice = make_user(database, email="alice@example.com")
    bob = make_user(database, email="bob@example.com")
    with pytest.raises(ValidationError) as refused, database.unit_of_work() as uow:
        uow.users.create(email=look_alike, password=PASSWORD)
    assert refused.value.field == "email" and refused.value.rule in {"invisible", "mixed_script", "confusable"}
    with pytest.raises(ValidationError), database.unit_of_work() as uow:
        uow.users.update(bob, email=look_alike)
    with pytest.raises(ValidationError), database.unit_of_work() as uow:
        uow.users.create_many([{"email": "carol@example.com", "password": None},
                               {"email": look_alike, "password": None}])
    with database.unit_of_work() as uow:
        assert uow.users.count({}) == 2
        assert uow.users.get_by_email(look_alike) is None
    assert fetch(database, alice).email == "alice@example.com"


def test_a_new_user_has_a_normalised_email_key_and_an_argon2id_hash(database: Database) -> None:
    user = fetch(database, make_user(database, email="  Ada.Lovelace+x@Example.COM "))
    assert user.email == "Ada.Lovelace+x@Example.COM"
    assert user.email_key == "ada.lovelace+x@example.com"
    assert user.password_hash is not None and user.password_hash.startswith("$argon2id$")
    assert passwords.verify_password(PASSWORD, user.password_hash)
    assert (user.is_active, user.is_verified, user.failed_login_count) == (True, False, 0)
    assert user.password_changed_at is not None


def test_an_email_differing_only_in_case_or_unicode_form_is_the_same_user(database: Database) -> None:
    make_user(database, email="Ada@Example.com")
    for twin in ("ada@example.com", "ADA@EXAMPLE.COM", " ada@example.com", "\uff21da@example.com"):  # full-width A
        with pytest.raises(Conflict) as caught, database.unit_of_work() as uow:
            uow.users.create(email=twin, password=PASSWORD)
        assert str(caught.value) == "user.email already exists"
    with database.unit_of_work() as uow:
        found = uow.users.get_by_email("ADA@example.COM")
        assert found is not None and found.email == "Ada@Example.com"
        assert uow.users.count() == 1


def test_the_database_itself_refuses_a_second_row_with_the_same_email_key(database: Database) -> None:
    make_user(database, email="Ada@Example.com")
    row = {"id": uuid.uuid4(), "email": "ADA@example.com", "email_key": "ada@example.com", "created_at": utcnow(),
           "updated_at": utcnow(), "version": 1, "is_active": True, "is_verified": False,
           "must_change_password": False, "failed_login_count": 0}
    with pytest.raises(Conflict), database.unit_of_work() as uow:
        uow.session.execute(insert(User).values(row))


def test_a_username_taken_in_another_case_is_a_conflict(database: Database) -> None:
    make_user(database, username="Ada_L")
    with pytest.raises(Conflict, match=r"^user\.username already exists$"), database.unit_of_work() as uow:
        uow.users.create(email="other@example.com", password=PASSWORD, username="ada_l")
    with database.unit_of_work() as uow:
        assert uow.users.get_by_username("ADA_L") is not None


def test_a_username_clash_on_update_is_a_conflict_and_the_transaction_goes_on(database: Database) -> None:
    make_user(database, username="ada")
    bob = make_user(database, email="bob@example.com")
    with database.unit_of_work() as uow:
        with pytest.raises(Conflict, match="username"):
            uow.users.update_profile(bob, username="ADA")
        uow.users.update_profile(bob, display_name="Bob")
    assert fetch(database, bob).display_name == "Bob"


def test_many_users_without_usernames_can_exist(database: Database) -> None:
    make_user(database, email="a@example.com")
    make_user(database, email="b@example.com")
    with database.unit_of_work() as uow:
        assert uow.users.count({"username_key__isnull": True}) == 2


@pytest.mark.parametrize(
    ("field", "value"),
    [("email", "not-an-address"), ("email", "two@@example.com"), ("email", "a b@example.com"),
     ("username", "a b"), ("username", "x"), ("timezone", "Mars/Olympus_Mons"), ("timezone", "../../etc/passwd"),
     ("locale", "english please"), ("display_name", "bell\x07")],
)
def test_an_invalid_profile_value_is_refused_naming_the_field(database: Database, field: str, value: str) -> None:
    fields = {"email": "ada@example.com", field: value}
    with pytest.raises(ValidationError) as caught, database.unit_of_work() as uow:
        uow.users.create(password=PASSWORD, **fields)
    assert caught.value.field == field
    assert value not in str(caught.value)


def test_valid_profile_values_are_stored(database: Database) -> None:
    user_id = make_user(database)
    with database.unit_of_work() as uow:
        uow.users.update_profile(user_id, display_name=" Ada Lovelace ", locale="en-GB", timezone="Europe/London",
                                 username="ada")
    user = fetch(database, user_id)
    assert (user.display_name, user.locale, user.timezone, user.username) == (
        "Ada Lovelace", "en-GB", "Europe/London", "ada")


@pytest.mark.parametrize("field", ["email", "password_hash", "is_active", "email_key", "failed_login_count"])
def test_update_profile_refuses_anything_but_profile_fields(database: Database, field: str) -> None:
    user_id = make_user(database)
    with pytest.raises(ValidationError) as caught, database.unit_of_work() as uow:
        uow.users.update_profile(user_id, **{field: "x"})
    assert (caught.value.field, caught.value.rule) == (field, "not_allowed")


def test_the_hash_and_the_normalised_keys_cannot_be_written_directly(database: Database) -> None:
    user_id = make_user(database)
    with database.unit_of_work() as uow:
        for field in ("password_hash", "email_key", "username_key", "last_login_at"):
            with pytest.raises(ValidationError, match="cannot be set"):
                uow.users.update(user_id, **{field: "x"})
        with pytest.raises(ValidationError):
            uow.users.update_many({"id": user_id}, email="x@example.com")
        with pytest.raises(ValidationError):
            uow.users.create(email="x@example.com", password=None, password_hash="$argon2id$forged")
        with pytest.raises(ValidationError):
            uow.users.create_many([{"email": "x@example.com", "password_hash": "$argon2id$forged"}])
        assert not hasattr(uow.users, "upsert") and not hasattr(uow.users, "get_or_create")
    assert fetch(database, user_id).email == EMAIL
    with database.unit_of_work() as uow:
        assert uow.users.count() == 1


def test_the_repository_writes_plain_columns_and_derives_the_normalised_keys(database: Database) -> None:
    precomputed = passwords.hash_password(PASSWORD, database.settings)
    with database.unit_of_work() as uow:
        users = uow.repository(UserRepository)
        ada = users.create(email="Ada@Example.com", password_hash=precomputed, username="Ada_L", is_verified=True)
        assert (ada.email, ada.email_key, ada.username_key, ada.password_hash) == (
            "Ada@Example.com", "ada@example.com", "ada_l", precomputed)
        count = users.create_many([{"email": "Bob@Example.com", "username": "Bob"}, {"email": "carol@example.com"}])
        users.update_many({"email_key": "bob@example.com"}, username="Robert")
        for field in ("email_key", "username_key"):
            with pytest.raises(ValidationError, match="cannot be set"):
                users.create(email="dan@example.com", **{field: "dan@example.com"})
            with pytest.raises(ValidationError, match="cannot be set"):
                users.create_many([{"email": "dan@example.com", field: "dan@example.com"}])
            with pytest.raises(ValidationError, match="cannot be set"):
                users.update(ada, **{field: "x"})
    assert count == 2
    assert login(database, "ADA@example.com").email == "Ada@Example.com"
    with database.unit_of_work() as uow:
        bob = uow.users.get_by_username("ROBERT")
        assert bob is not None and bob.email_key == "bob@example.com"
        assert uow.users.get_by_email("Carol@Example.COM") is not None
        assert uow.users.count() == 3


def test_create_many_normalises_and_hashes_each_row(database: Database) -> None:
    with database.unit_of_work() as uow:
        made = uow.users.create_many([{"email": "A@x.org", "password": PASSWORD}, {"email": "b@x.org"}],
                                     returning=True)
        with pytest.raises(Conflict, match=r"^user\.email already exists$"):
            uow.users.create_many([{"email": "a@X.ORG", "password": PASSWORD}])
    assert [user.email_key for user in made] == ["a@x.org", "b@x.org"]
    assert login(database, "a@x.org").id == made[0].id


def test_changing_the_email_makes_the_user_unverified_and_keeps_it_unique(database: Database) -> None:
    user_id = make_user(database, is_verified=True)
    make_user(database, email="taken@example.com")
    with database.unit_of_work() as uow:
        with pytest.raises(Conflict, match="email"):
            uow.users.update(user_id, email="TAKEN@example.com")
        uow.users.update(user_id, email="Ada@New.example")
    user = fetch(database, user_id)
    assert (user.email_key, user.is_verified) == ("ada@new.example", False)


def test_changing_the_email_revokes_the_tokens_mailed_to_the_old_address(database: Database) -> None:
    user_id = make_user(database)
    verify = issue(database, user_id, "verify_email")
    reset = issue(database, user_id, "password_reset")
    with database.unit_of_work() as uow:
        uow.users.update(user_id, email="ADA@example.com")  # the same address: nothing to revoke
    assert outstanding_tokens(database) == 2
    with database.unit_of_work() as uow:
        uow.users.update(user_id, email="ada@new.example")
    for raw, purpose in ((verify, "verify_email"), (reset, "password_reset")):
        with pytest.raises(TokenError):
            consume(database, raw, purpose)
    assert fetch(database, user_id).is_verified is False


def test_filtering_or_sorting_on_the_password_hash_is_refused_before_any_sql_runs(database: Database) -> None:
    with database.unit_of_work() as uow:
        with pytest.raises(InvalidFilter):
            uow.users.list(filters={"password_hash__startswith": "$argon2"})
        with pytest.raises(InvalidFilter):
            uow.users.list(order_by=["password_hash"])


def test_a_weak_password_is_refused_at_creation_naming_the_rule(database: Database) -> None:
    with pytest.raises(ValidationError) as caught, database.unit_of_work() as uow:
        uow.users.create(email=EMAIL, password="password1")
    assert (caught.value.field, caught.value.rule) == ("password", "common")
    assert "password1" not in str(caught.value)


# --- logins ------------------------------------------------------------------------------------------------


def _registered(database: Database) -> None:
    make_user(database)


def _unknown(database: Database) -> None:
    make_user(database)


def _inactive(database: Database) -> None:
    user_id = make_user(database)
    with database.unit_of_work() as uow:
        uow.users.set_active(user_id, False)


def _locked(database: Database) -> None:
    lock_for(database, make_user(database), dt.timedelta(hours=1))


def _passwordless(database: Database) -> None:
    make_user(database, password=None)


REFUSALS: dict[str, tuple[Callable[[Database], None], str, str]] = {
    "unknown email": (_unknown, "nobody@example.com", PASSWORD),
    "wrong password": (_registered, EMAIL, OTHER_PASSWORD),
    "inactive user, right password": (_inactive, EMAIL, PASSWORD),
    "locked user, right password": (_locked, EMAIL, PASSWORD),
    "user without a password": (_passwordless, EMAIL, PASSWORD),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_every_refused_login_raises_the_same_error_after_exactly_one_verification(
    database: Database, verifications: list[str], case: str
) -> None:
    arrange, email, password = REFUSALS[case]
    arrange(database)
    verifications.clear()
    error = refused_login(database, email, password)
    assert str(error) == "invalid email or password"
    assert len(verifications) == 1


def test_every_refused_login_takes_the_same_time_whatever_the_stored_hash(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Hashes made before the parameters were raised verify fast: without padding, an enumeration oracle."""
    make_user(database, email="outdated@example.com")
    _locked(database)
    make_user(database, email="inactive@example.com", is_active=False)
    make_user(database, email="nopassword@example.com", password=None)
    stronger = with_settings(database, password_time_cost=3, password_memory_cost_kib=64)
    make_user(stronger, email="current@example.com")
    clock = SimulatedArgon2Clock(monkeypatch)
    refused_login(stronger, "nobody@example.com")  # the first measurement of a current verification
    times = {
        email: clock.elapsed(lambda email=email, password=password: refused_login(stronger, email, password))
        for email, password in [
            ("nobody@example.com", PASSWORD), ("outdated@example.com", OTHER_PASSWORD),
            ("current@example.com", OTHER_PASSWORD), (EMAIL, PASSWORD), ("inactive@example.com", PASSWORD),
            ("nopassword@example.com", PASSWORD),
        ]
    }
    assert times["nobody@example.com"] > 0
    assert times == pytest.approx(dict.fromkeys(times, times["nobody@example.com"]), rel=1e-9)


def test_an_unknown_email_spends_its_verification_on_the_dummy_hash(
    database: Database, verifications: list[str]
) -> None:
    refused_login(database, "nobody@example.com", PASSWORD)
    assert verifications == [passwords.dummy_hash(database.settings)]


def test_a_successful_login_verifies_once_resets_the_count_and_records_the_time(
    database: Database, verifications: list[str]
) -> None:
    user_id = make_user(database)
    refused_login(database)
    refused_login(database)
    assert fetch(database, user_id).failed_login_count == 2
    verifications.clear()
    before = utcnow()
    user = login(database, "ADA@example.com", PASSWORD)
    assert user.id == user_id and len(verifications) == 1
    stored = fetch(database, user_id)
    assert stored.failed_login_count == 0
    assert stored.last_login_at is not None and stored.last_login_at >= before


def test_failed_logins_are_counted_although_the_unit_of_work_rolls_back(database: Database) -> None:
    user_id = make_user(database)
    for _ in range(3):
        refused_login(database)
    assert fetch(database, user_id).failed_login_count == 3


def test_a_failed_login_keeps_nothing_else_the_unit_of_work_wrote(database: Database) -> None:
    user_id = make_user(database)
    bob = make_user(database, email="bob@example.com")
    with pytest.raises(AuthenticationError), database.unit_of_work() as uow:
        uow.users.update_profile(bob, display_name="Bob")
        uow.users.authenticate(EMAIL, OTHER_PASSWORD)
    assert fetch(database, bob).display_name is None
    assert fetch(database, user_id).failed_login_count == 1


def test_a_failure_caught_inside_the_unit_of_work_is_counted_once(database: Database) -> None:
    user_id = make_user(database)
    with database.unit_of_work() as uow:
        with pytest.raises(AuthenticationError):
            uow.users.authenticate(EMAIL, OTHER_PASSWORD)
        assert uow.users.get_by_id(user_id).failed_login_count == 1  # type: ignore[union-attr]
    assert fetch(database, user_id).failed_login_count == 1


def test_a_failure_in_a_rolled_back_savepoint_is_counted_once_when_the_transaction_commits(
    database: Database,
) -> None:
    user_id = make_user(database)
    with database.unit_of_work() as uow, pytest.raises(AuthenticationError), uow.session.begin_nested():
        uow.users.authenticate(EMAIL, OTHER_PASSWORD)
    assert fetch(database, user_id).failed_login_count == 1


def test_the_fifth_consecutive_failure_locks_the_account_even_against_the_right_password(
    database: Database,
) -> None:
    user_id = make_user(database)
    for _ in range(4):
        refused_login(database)
    assert fetch(database, user_id).locked_until is None
    refused_login(database)
    user = fetch(database, user_id)
    assert user.failed_login_count == 5
    assert user.locked_until is not None
    assert user.locked_until - utcnow() > database.settings.lockout_period - dt.timedelta(minutes=1)
    refused_login(database, password=PASSWORD)
    assert fetch(database, user_id).failed_login_count == 5  # attempts while locked do not count


def test_the_lockout_threshold_and_period_come_from_the_settings(database: Database) -> None:
    strict = with_settings(database, lockout_threshold=2, lockout_period=dt.timedelta(hours=3))
    user_id = make_user(strict)
    refused_login(strict)
    refused_login(strict)
    locked_until = fetch(strict, user_id).locked_until
    assert locked_until is not None and locked_until - utcnow() > dt.timedelta(hours=2, minutes=59)


def test_unlock_lets_the_user_in_again(database: Database) -> None:
    user_id = make_user(database)
    for _ in range(5):
        refused_login(database)
    with database.unit_of_work() as uow:
        uow.users.unlock(user_id)
    assert login(database).id == user_id
    assert fetch(database, user_id).failed_login_count == 0


def test_an_expired_lock_admits_the_right_password(database: Database) -> None:
    user_id = make_user(database)
    for _ in range(5):
        refused_login(database)
    lock_for(database, user_id, -dt.timedelta(seconds=1))
    assert login(database).id == user_id
    user = fetch(database, user_id)
    assert (user.failed_login_count, user.locked_until) == (0, None)


def test_the_first_failure_after_an_expired_lock_starts_a_new_count(database: Database) -> None:
    user_id = make_user(database)
    for _ in range(5):
        refused_login(database)
    lock_for(database, user_id, -dt.timedelta(seconds=1))
    refused_login(database)
    user = fetch(database, user_id)
    assert (user.failed_login_count, user.locked_until) == (1, None)


def test_a_password_reset_unlocks_the_account(database: Database) -> None:
    user_id = make_user(database)
    for _ in range(5):
        refused_login(database)
    raw = issue(database, user_id, "password_reset")
    with database.unit_of_work() as uow:
        uow.users.reset_password(raw, OTHER_PASSWORD)
    assert login(database, password=OTHER_PASSWORD).id == user_id
    refused_login(database, password=PASSWORD)


def test_logins_leave_the_version_and_updated_at_alone(database: Database) -> None:
    user_id = make_user(database)
    before = fetch(database, user_id)
    refused_login(database)
    login(database)
    after = fetch(database, user_id)
    assert (after.version, after.updated_at) == (before.version, before.updated_at)


def test_a_hash_with_old_parameters_is_rehashed_at_the_next_successful_login(database: Database) -> None:
    user_id = make_user(database)
    old_hash = fetch(database, user_id).password_hash
    assert old_hash is not None and ",t=1," in old_hash
    stronger = with_settings(database, password_time_cost=2)
    refused_login(stronger)
    assert fetch(database, user_id).password_hash == old_hash  # a failure never rehashes
    login(stronger)
    new_hash = fetch(database, user_id).password_hash
    assert new_hash is not None and new_hash != old_hash and ",t=2," in new_hash
    assert passwords.verify_password(PASSWORD, new_hash)
    assert not passwords.needs_rehash(new_hash, stronger.settings)
    login(stronger)
    assert fetch(database, user_id).password_hash == new_hash


def test_logins_record_their_events(database: Database, events: list[tuple[str, dict[str, Any]]]) -> None:
    strict = with_settings(database, lockout_threshold=2)
    user_id = make_user(strict)
    with strict.unit_of_work() as uow:
        uow.users.authenticate(EMAIL, PASSWORD)
        for _ in range(2):
            with pytest.raises(AuthenticationError):
                uow.users.authenticate(EMAIL, OTHER_PASSWORD)
        with pytest.raises(AuthenticationError):
            uow.users.authenticate("nobody@example.com", PASSWORD)
    logins = [(action, kw.get("user_id"), (kw.get("data") or {}).get("reason")) for action, kw in events
              if action.startswith(("login.", "user."))]
    assert logins == [
        ("login.success", user_id, None),
        ("login.failure", user_id, "bad_password"),
        ("login.failure", user_id, "bad_password"),
        ("user.locked", user_id, None),
        ("login.failure", None, "unknown_email"),
    ]


def audit_trail(database: Database) -> list[tuple[str, str]]:
    """(action, data) of every audit entry, oldest first."""
    with database.unit_of_work() as uow:
        rows = uow.session.execute(select(AuditEntry.action, AuditEntry.data, AuditEntry.changes)
                                   .order_by(AuditEntry.seq))
        return [(action, f"{data} {changes}") for action, data, changes in rows]


def test_the_events_of_a_refused_login_reach_the_audit_log_despite_the_rollback(database: Database) -> None:
    strict = with_settings(database, lockout_threshold=1)
    user_id = make_user(strict)
    refused_login(strict)
    refused_login(strict, "nobody@example.com")
    trail = [(action, data) for action, data in audit_trail(database) if action.startswith(("login.", "user.l"))]
    assert [action for action, _ in trail] == ["login.failure", "user.locked", "login.failure"]
    assert str(user_id) in trail[0][1] and "bad_password" in trail[0][1]
    assert "unknown_email" in trail[2][1] and "nobody" not in trail[2][1]


# --- passwords -----------------------------------------------------------------------------------------------


def test_change_password_needs_the_current_one_and_revokes_reset_tokens(database: Database) -> None:
    user_id = make_user(database)
    raw = issue(database, user_id, "password_reset")
    with database.unit_of_work() as uow:
        uow.users.change_password(user_id, PASSWORD, OTHER_PASSWORD)
    assert login(database, password=OTHER_PASSWORD).id == user_id
    refused_login(database, password=PASSWORD)
    with pytest.raises(TokenError):
        consume(database, raw, "password_reset")


def test_change_password_with_a_wrong_current_password_is_refused_and_counted(
    database: Database, verifications: list[str]
) -> None:
    user_id = make_user(database)
    verifications.clear()
    with pytest.raises(AuthenticationError), database.unit_of_work() as uow:
        uow.users.change_password(user_id, OTHER_PASSWORD, "brand-New-99-secret")
    assert len(verifications) == 1
    assert fetch(database, user_id).failed_login_count == 1
    assert login(database).id == user_id


def test_change_password_applies_the_policy_to_the_new_one(database: Database) -> None:
    user_id = make_user(database)
    for weak, rule in (("short", "min_length"), ("qwerty123", "common"), (PASSWORD, "unchanged"),
                       ("ada@example.com-x", "contains_email")):
        with pytest.raises(ValidationError) as caught, database.unit_of_work() as uow:
            uow.users.change_password(user_id, PASSWORD, weak)
        assert caught.value.rule == rule


def test_a_password_change_sets_password_changed_at_and_clears_must_change(database: Database) -> None:
    user_id = make_user(database, must_change_password=True)
    before = fetch(database, user_id).password_changed_at
    with database.unit_of_work() as uow:
        uow.users.change_password(user_id, PASSWORD, OTHER_PASSWORD)
    user = fetch(database, user_id)
    assert before is not None and user.password_changed_at is not None and user.password_changed_at > before
    assert user.must_change_password is False


# --- tokens --------------------------------------------------------------------------------------------------


def test_tokens_are_stored_only_as_their_sha256(database: Database) -> None:
    user_id = make_user(database)
    raw = issue(database, user_id, "verify_email")
    assert len(raw) >= 43
    with database.unit_of_work() as uow:
        rows = [tuple(row) for row in uow.session.execute(select(UserToken.__table__))]
        users = [tuple(row) for row in uow.session.execute(select(User.__table__))]
    assert len(rows) == 1
    assert not any(raw in str(value) for row in rows + users for value in row)
    assert hashlib.sha256(raw.encode()).hexdigest() in rows[0]


def test_a_token_works_once(database: Database) -> None:
    user_id = make_user(database)
    raw = issue(database, user_id, "verify_email")
    assert consume(database, raw, "verify_email").id == user_id
    with pytest.raises(TokenError):
        consume(database, raw, "verify_email")


def test_a_verify_email_token_marks_the_user_verified(database: Database) -> None:
    user_id = make_user(database)
    consume(database, issue(database, user_id, "verify_email"), "verify_email")
    assert fetch(database, user_id).is_verified is True


def test_an_expired_token_is_refused(database: Database) -> None:
    user_id = make_user(database)
    raw = issue(database, user_id, "verify_email")
    with database.unit_of_work() as uow:
        uow.session.execute(update(UserToken).values(expires_at=utcnow() - dt.timedelta(seconds=1)))
    with pytest.raises(TokenError):
        consume(database, raw, "verify_email")


def test_the_token_lifetime_comes_from_the_settings(database: Database) -> None:
    brief = with_settings(database, token_ttl={"verify_email": dt.timedelta(minutes=5),
                                               "password_reset": dt.timedelta(minutes=1)})
    issue(brief, make_user(brief), "password_reset")
    with database.unit_of_work() as uow:
        expires_at = uow.session.scalar(select(UserToken.expires_at))
    assert expires_at is not None
    assert dt.timedelta(seconds=50) < expires_at - utcnow() <= dt.timedelta(minutes=1)


def test_bad_tokens_all_raise_the_same_token_error(database: Database) -> None:
    user_id = make_user(database)
    raw = issue(database, user_id, "verify_email")
    messages = set()
    hostile = ["not-a-token", "", "x" * 10_000, raw[:-1] + "\udc80", "\ud800", raw + "\x00", raw[:-1] + "\u00e9",
               None, 42, b"bytes"]
    for candidate, purpose in [(raw, "password_reset"), *((bad, "verify_email") for bad in hostile)]:
        with pytest.raises(TokenError) as caught:
            consume(database, candidate, purpose)  # type: ignore[arg-type]
        messages.add(str(caught.value))
        with pytest.raises(TokenError), database.unit_of_work() as uow:
            uow.users.reset_password(candidate, OTHER_PASSWORD)  # type: ignore[arg-type]
    assert messages == {"invalid or expired token"}
    assert consume(database, raw, "verify_email").id == user_id  # the wrong-purpose attempt did not use it


def test_an_unknown_token_purpose_is_a_validation_error(database: Database) -> None:
    user_id = make_user(database)
    with pytest.raises(ValidationError) as caught, database.unit_of_work() as uow:
        uow.users.issue_token(user_id, "login")
    assert (caught.value.field, caught.value.rule) == ("purpose", "unknown")
    with pytest.raises(ValidationError):
        consume(database, "whatever", "login")


def test_issuing_a_token_revokes_the_older_unused_one_of_that_purpose_only(database: Database) -> None:
    user_id = make_user(database)
    first_reset = issue(database, user_id, "password_reset")
    verify = issue(database, user_id, "verify_email")
    second_reset = issue(database, user_id, "password_reset")
    with pytest.raises(TokenError):
        consume(database, first_reset, "password_reset")
    assert consume(database, second_reset, "password_reset").id == user_id
    assert consume(database, verify, "verify_email").id == user_id


def test_reset_password_sets_the_password_and_revokes_every_reset_token(database: Database) -> None:
    user_id = make_user(database)
    raw = issue(database, user_id, "password_reset")
    with database.unit_of_work() as uow:
        user = uow.users.reset_password(raw, OTHER_PASSWORD)
        assert user.id == user_id
    assert login(database, password=OTHER_PASSWORD).id == user_id
    with pytest.raises(TokenError), database.unit_of_work() as uow:
        uow.users.reset_password(raw, "yet-Another-55-phrase")
    assert outstanding_tokens(database) == 0


def test_a_password_refused_by_the_policy_leaves_the_reset_token_usable(database: Database) -> None:
    user_id = make_user(database)
    raw = issue(database, user_id, "password_reset")
    with database.unit_of_work() as uow:
        with pytest.raises(ValidationError, match="common"):
            uow.users.reset_password(raw, "password123")
        uow.users.reset_password(raw, OTHER_PASSWORD)
    assert login(database, password=OTHER_PASSWORD).id == user_id


def test_require_password_reset_marks_the_user_and_returns_a_working_token(database: Database) -> None:
    user_id = make_user(database)
    older = issue(database, user_id, "password_reset")
    with database.unit_of_work() as uow:
        raw = uow.users.require_password_reset(user_id)
    assert fetch(database, user_id).must_change_password is True
    with pytest.raises(TokenError):
        consume(database, older, "password_reset")
    with database.unit_of_work() as uow:
        uow.users.reset_password(raw, OTHER_PASSWORD)
    assert fetch(database, user_id).must_change_password is False


def test_revoke_tokens_revokes_outstanding_tokens_and_says_how_many(database: Database) -> None:
    user_id = make_user(database)
    used = issue(database, user_id, "verify_email")
    consume(database, used, "verify_email")
    reset = issue(database, user_id, "password_reset")
    issue(database, user_id, "verify_email")
    with database.unit_of_work() as uow:
        assert uow.users.revoke_tokens(user_id, "verify_email") == 1
        assert uow.users.revoke_tokens(user_id) == 1
        assert uow.users.revoke_tokens(user_id) == 0
    with pytest.raises(TokenError):
        consume(database, reset, "password_reset")


def test_tokens_of_a_soft_deleted_user_are_refused(database: Database) -> None:
    user_id = make_user(database)
    raw = issue(database, user_id, "verify_email")
    with database.unit_of_work() as uow:
        uow.users.delete(user_id)
    with pytest.raises(TokenError):
        consume(database, raw, "verify_email")
    refused_login(database, password=PASSWORD)


def test_token_events_never_carry_the_token(database: Database, events: list[tuple[str, dict[str, Any]]]) -> None:
    user_id = make_user(database)
    raw = issue(database, user_id, "verify_email")
    consume(database, raw, "verify_email")
    actions = [action for action, _ in events if action.startswith("token.")]
    assert actions == ["token.issued", "token.consumed"]
    digest = hashlib.sha256(raw.encode()).hexdigest()
    assert not any(raw in repr(kwargs) or digest in repr(kwargs) for _, kwargs in events)


# --- secrets -------------------------------------------------------------------------------------------------


def test_secrets_are_absent_from_reprs_error_messages_and_the_audit_log(database: Database) -> None:
    user_id = make_user(database)
    raw = issue(database, user_id, "password_reset")
    with database.unit_of_work() as uow:
        user = uow.users.get_by_id(user_id)
        token = uow.session.scalars(select(UserToken)).one()
    assert user is not None and user.password_hash is not None
    shown = [repr(user), str(user), repr(token)]
    with pytest.raises(Conflict) as conflict, database.unit_of_work() as uow:
        uow.users.create(email=EMAIL, password=PASSWORD)
    shown.append(str(conflict.value))
    shown.append(str(refused_login(database, password=PASSWORD + "x")))
    with pytest.raises(TokenError) as token_error:
        consume(database, raw, "verify_email")
    shown.append(str(token_error.value))
    with pytest.raises(ValidationError) as policy, database.unit_of_work() as uow:
        uow.users.change_password(user_id, PASSWORD, "ab")
    shown.append(str(policy.value))
    shown += [data for _, data in audit_trail(database)]
    for text in shown:
        for secret in (PASSWORD, user.password_hash, raw, token.token_hash):
            assert secret not in text


# --- concurrency (committed data, several connections) --------------------------------------------------------


@pytest.fixture(scope="module")
def committed(engine_name: str, test_databases: TestDatabases) -> Iterator[Database]:
    """A database of its own, committed to for real (see ``TestDatabases.own``)."""
    with test_databases.own(engine_name, "dblayer_users") as database:
        yield database


@pytest.fixture
def race_tag() -> str:
    return f"race-{uuid.uuid4().hex[:8]}"


def run_together(fn: Callable[[Any], Any], arguments: list[Any]) -> list[Any]:
    start = threading.Barrier(len(arguments))

    def call(argument: Any) -> Any:
        start.wait(120)
        try:
            return fn(argument)
        except (Conflict, TokenError) as error:
            return error

    with ThreadPoolExecutor(len(arguments)) as pool:
        return list(pool.map(call, arguments))


def test_concurrent_registrations_of_one_email_in_different_cases_make_one_user(
    committed: Database, race_tag: str
) -> None:
    variants = [f"{race_tag}@example.com", f"{race_tag.upper()}@example.com", f"{race_tag}@EXAMPLE.com",
                f"{race_tag.capitalize()}@Example.COM"]

    def register(email: str) -> uuid.UUID:
        return committed.run_in_transaction(lambda uow: uow.users.create(email=email, password=PASSWORD).id)

    results = run_together(register, variants)
    assert sum(isinstance(result, uuid.UUID) for result in results) == 1
    assert {str(r) for r in results if not isinstance(r, uuid.UUID)} == {"user.email already exists"}
    with committed.unit_of_work() as uow:
        assert uow.users.count({"email_key__startswith": race_tag}) == 1


def test_a_token_consumed_concurrently_succeeds_exactly_once(committed: Database, race_tag: str) -> None:
    user_id = make_user(committed, email=f"{race_tag}@example.com")
    raw = issue(committed, user_id, "password_reset")

    def use(_: int) -> uuid.UUID:
        return committed.run_in_transaction(lambda uow: uow.users.consume_token(raw, "password_reset").id)

    results = run_together(use, list(range(4)))
    assert results.count(user_id) == 1
    assert all(isinstance(result, TokenError) for result in results if result != user_id)
