"""Password hashing and the password policy, without a database."""

from __future__ import annotations

import pytest
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError

from db import ValidationError, passwords
from db.models.user import User, email_key
from db.settings import Settings
from tests.argon2_clock import SimulatedArgon2Clock

FAST = Settings.for_tests()
GOOD = "violet-Harbor-42-lantern"


def rule_of(password: object, *, email: str | None = None, settings: Settings = FAST) -> str | None:
    """The rule a password breaks (None if it passes); checks the message names it and hides the password."""
    try:
        passwords.check_password(password, settings, email=email)  # type: ignore[arg-type]
    except ValidationError as error:
        assert error.field == "password"
        assert f"rule: {error.rule}" in str(error)
        assert not isinstance(password, str) or password not in str(error)
        return error.rule
    return None


# --- hashing -------------------------------------------------------------------------------------------------


def test_production_parameters_meet_the_owasp_minimum_for_argon2id() -> None:
    settings = Settings()
    assert settings.password_memory_cost_kib >= 19 * 1024
    assert settings.password_time_cost >= 2
    assert settings.password_parallelism >= 1
    assert passwords.hash_password(GOOD, settings).startswith(
        f"$argon2id$v=19$m={settings.password_memory_cost_kib},t={settings.password_time_cost},"
        f"p={settings.password_parallelism}$"
    )


def test_the_test_settings_are_cheap_and_only_change_the_hashing_cost() -> None:
    assert (FAST.password_time_cost, FAST.password_memory_cost_kib, FAST.password_parallelism) == (1, 8, 1)
    assert FAST.lockout_threshold == Settings().lockout_threshold


def test_a_hash_verifies_its_password_and_nothing_else() -> None:
    stored = passwords.hash_password(GOOD, FAST)
    assert stored.startswith("$argon2id$v=19$m=8,t=1,p=1$")
    assert passwords.verify_password(GOOD, stored)
    assert not passwords.verify_password(GOOD + "x", stored)
    assert not passwords.verify_password(GOOD.upper(), stored)


def test_the_same_password_hashes_differently_each_time() -> None:
    assert passwords.hash_password(GOOD, FAST) != passwords.hash_password(GOOD, FAST)


@pytest.mark.parametrize("stored", ["", "not a hash", "$argon2id$v=19$m=8,t=1,p=1$broken", "$2b$12$bcrypt", "ĥash"])
def test_a_malformed_hash_is_a_mismatch_not_an_error(stored: str) -> None:
    assert passwords.verify_password(GOOD, stored) is False


def test_a_password_that_is_not_a_string_is_a_mismatch() -> None:
    stored = passwords.hash_password(GOOD, FAST)
    assert passwords.verify_password(None, stored) is False  # type: ignore[arg-type]


def test_passwords_are_compared_after_nfkc_normalisation() -> None:
    full_width = "".join(chr(ord(c) + 0xFEE0) if c.isalpha() else c for c in "pass-Word-42-lantern")
    stored = passwords.hash_password(full_width, FAST)
    assert passwords.verify_password("pass-Word-42-lantern", stored)


def test_a_hash_made_with_other_parameters_needs_a_rehash() -> None:
    stored = passwords.hash_password(GOOD, FAST)
    assert not passwords.needs_rehash(stored, FAST)
    assert passwords.needs_rehash(stored, Settings.for_tests(password_time_cost=2))
    assert passwords.needs_rehash(stored, Settings.for_tests(password_memory_cost_kib=16))
    assert passwords.needs_rehash("not a hash", FAST)


def test_an_old_hash_still_verifies_after_the_parameters_change() -> None:
    stored = passwords.hash_password(GOOD, FAST)
    assert passwords.verify_password(GOOD, stored)
    assert passwords.hasher(Settings.for_tests(password_time_cost=2)).verify(stored, GOOD)


def test_the_hasher_uses_argon2id_with_the_settings_parameters() -> None:
    hasher = passwords.hasher(Settings.for_tests(password_time_cost=2))
    assert isinstance(hasher, PasswordHasher)
    assert hasher.hash(GOOD).startswith("$argon2id$v=19$m=8,t=2,p=1$")


def test_the_dummy_hash_is_made_once_per_parameter_set_with_the_current_parameters() -> None:
    dummy = passwords.dummy_hash(FAST)
    assert dummy is passwords.dummy_hash(Settings.for_tests())
    assert not passwords.needs_rehash(dummy, FAST)
    assert passwords.dummy_hash(Settings.for_tests(password_time_cost=2)) != dummy
    assert not passwords.verify_password("", dummy)


def test_the_verifier_reads_the_hash_type_from_the_hash() -> None:
    with pytest.raises(InvalidHashError):
        PasswordHasher().verify("nonsense", GOOD)
    assert passwords.verify_password("x", "nonsense") is False


# --- the policy ----------------------------------------------------------------------------------------------


def test_a_long_uncommon_password_passes() -> None:
    assert rule_of(GOOD) is None
    assert rule_of("correct horse battery staple") is None


@pytest.mark.parametrize(
    ("password", "rule"),
    [
        (12345678, "type"),
        ("Sh0rt!", "min_length"),
        ("x" * 6 + "Y", "min_length"),
        ("a1" * 65, "max_length"),
        ("123456789", "common"),
        ("Password1", "common"),
        ("QWERTY123", "common"),
        ("iloveyou", "common"),
        ("1q2w3e4r", "common"),
        ("michael2024", "common"),
        ("zzzzzzzzzzz", "repetitive"),
        ("mnopqrstuv", "repetitive"),
        ("zyxwvutsrq", "repetitive"),
    ],
)
def test_each_rule_refuses_with_a_validation_error_naming_it(password: object, rule: str) -> None:
    assert rule_of(password) == rule


def test_length_limits_come_from_the_settings_and_count_characters() -> None:
    assert rule_of(GOOD, settings=Settings.for_tests(password_min_length=30)) == "min_length"
    assert rule_of(GOOD, settings=Settings.for_tests(password_max_length=10)) == "max_length"
    assert rule_of("ünïcödé-pässwörd", settings=Settings.for_tests(password_max_length=16)) is None


def test_a_password_holding_the_email_address_or_its_local_part_is_refused() -> None:
    assert rule_of("lovelace-is-my-name", email="Lovelace@example.com") == "contains_email"
    assert rule_of("x-ada@example.com-y", email="ada@example.com") == "contains_email"
    assert rule_of(GOOD, email="ada@example.com") is None


def test_the_common_list_is_bundled_package_data_of_a_few_thousand_entries() -> None:
    common = passwords.common_passwords()
    assert 1_000 < len(common) < 100_000
    assert {"123456", "password", "qwerty", "letmein", "iloveyou", "admin"} <= common
    assert all(entry == entry.lower() and not entry.startswith("#") for entry in common)


# --- email normalisation (the model's field checks) -------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "key"),
    [("Ada@Example.COM", "ada@example.com"), ("  ada@example.com\t", "ada@example.com"),
     ("\uff21da@example.com", "ada@example.com"), ("a.da+tag@example.com", "a.da+tag@example.com"),
     ("STRASSE@example.de", "strasse@example.de"), ("straße@example.de", "straße@example.de")],
)
def test_the_email_key_strips_normalises_and_lower_cases(given: str, key: str) -> None:
    assert email_key(given) == key
    assert User(email=given).email_key == key


def test_setting_an_email_or_username_keeps_the_keys_in_step() -> None:
    user = User(email="Ada@Example.com", username="Ada_L")
    assert (user.email_key, user.username_key) == ("ada@example.com", "ada_l")
    user.username = None
    assert user.username_key is None


@pytest.mark.parametrize("bad", ["", "ada", "ada@", "@example.com", "a b@example.com", "a@b@example.com",
                                 "ada@example..com", "ada@\x00example.com", "x" * 65 + "@example.com",
                                 "ada@" + "d" * 320])
def test_a_malformed_email_is_refused_without_being_echoed(bad: str) -> None:
    with pytest.raises(ValidationError) as caught:
        User(email=bad)
    assert (caught.value.field, caught.value.rule) == ("email", "format")
    assert not bad or bad not in str(caught.value)


# --- every refusal costs what a current verification costs ---------------------------------------------------


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> SimulatedArgon2Clock:
    return SimulatedArgon2Clock(monkeypatch)


CURRENT = Settings.for_tests(password_time_cost=3, password_memory_cost_kib=64)


def test_refusals_take_the_time_of_a_current_verification_whatever_the_stored_hash(
    clock: SimulatedArgon2Clock,
) -> None:
    current_hash = passwords.hash_password(GOOD, CURRENT)
    outdated_hash = passwords.hash_password(GOOD, FAST)  # t=1, m=8: a fraction of the current cost
    weaker_memory = passwords.hash_password(GOOD, Settings.for_tests(password_time_cost=3, password_memory_cost_kib=16))
    clock.elapsed(lambda: passwords.verify_evenly("wrong", None, CURRENT))  # the first measurement
    unknown = clock.elapsed(lambda: passwords.verify_evenly("wrong", None, CURRENT))
    assert unknown == clock.cost(passwords.dummy_hash(CURRENT)) > 0
    for stored in (current_hash, outdated_hash, weaker_memory, "not a hash at all"):
        refusal = clock.elapsed(lambda stored=stored: passwords.verify_evenly("wrong", stored, CURRENT))
        assert refusal == pytest.approx(unknown, rel=1e-9)


def test_before_any_measurement_a_refusal_spends_a_whole_dummy_verification(clock: SimulatedArgon2Clock) -> None:
    outdated_hash = passwords.hash_password(GOOD, FAST)
    spent = clock.elapsed(lambda: passwords.verify_evenly("wrong", outdated_hash, CURRENT))
    assert spent >= clock.cost(passwords.dummy_hash(CURRENT))


def test_verify_evenly_tells_right_from_wrong_and_never_accepts_the_dummy(clock: SimulatedArgon2Clock) -> None:
    outdated_hash = passwords.hash_password(GOOD, FAST)
    assert passwords.verify_evenly(GOOD, outdated_hash, CURRENT)
    assert passwords.verify_evenly(GOOD, passwords.hash_password(GOOD, CURRENT), CURRENT)
    assert not passwords.verify_evenly(GOOD, None, CURRENT)
    assert not passwords.verify_evenly(GOOD + "x", outdated_hash, CURRENT)
    assert clock.slept > 0  # the refusal of the outdated hash was padded


def test_a_password_with_a_lone_surrogate_is_refused_as_a_rule_not_a_crash() -> None:
    assert rule_of("correct horse \ud800 battery") == "encoding"
