"""Password hashing (argon2id) and the password policy.

    password_hash = hash_password(password, settings)
    verify_password(password, password_hash)       # True or False, never raises on a mismatch
    needs_rehash(password_hash, settings)          # stored with older parameters: hash again at the next login
    verify_evenly(password, stored_or_None, settings)  # as long as a current verification takes, whatever is stored
    check_password(password, settings, email=...)  # ValidationError(field="password", rule=...) if refused

Every verification of a password in the layer goes through ``verify_password``: one place to count them (the
tests do) and to change them. Passwords are NFKC-normalised before hashing and verifying (NIST SP 800-63B
5.1.1.2), so the same characters typed on different keyboards give the same hash. No function here ever puts
a password or a hash in an error message.
"""

from __future__ import annotations

import functools
import itertools
import secrets
import threading
import time
import unicodedata
from importlib import resources

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError

from db.errors import ValidationError
from db.settings import Settings

COMMON_PASSWORDS_FILE = "data_files/common_passwords.txt"


def hash_password(password: str, settings: Settings) -> str:
    """An argon2id hash (``$argon2id$v=19$m=...,t=...,p=...$salt$hash``) with the settings' parameters."""
    return hasher(settings).hash(_normalised(password))


def verify_password(password: str, password_hash: str) -> bool:
    """Whether ``password`` matches ``password_hash``. A mismatch or a malformed hash is False, not an error.

    The parameters are read from the hash itself, so hashes made with older settings still verify.
    """
    if not isinstance(password, str) or not isinstance(password_hash, str):
        return False
    try:
        return _VERIFIER.verify(password_hash, _normalised(password))
    except (VerificationError, InvalidHashError, ValueError):  # ValueError: a hash that is not even ASCII
        return False


def needs_rehash(password_hash: str, settings: Settings) -> bool:
    """Whether the hash was made with parameters (or an algorithm) other than the settings' current ones."""
    try:
        return hasher(settings).check_needs_rehash(password_hash)
    except (InvalidHashError, ValueError):
        return True


def verify_evenly(password: str, stored_hash: str | None, settings: Settings) -> bool:
    """Whether ``password`` matches ``stored_hash``, in the time a verification with the current parameters takes.

    ``stored_hash`` None (unknown email, locked or inactive user, no password) verifies against the dummy hash and
    is False. A hash made with other parameters than the current ones costs what *its* parameters cost: a wrong
    password for a user whose hash predates stronger settings would answer in a few milliseconds, against a
    full verification for an unknown email. So a refusal is padded up to the measured time of a current
    verification (a running average, per parameter set; until one has been measured, a dummy verification
    is spent instead). A stored hash *stronger* than the current parameters still takes longer; that happens only
    if the parameters were lowered, and such hashes are re-made at the next successful login.
    """
    started = time.perf_counter()
    if stored_hash is None or not needs_rehash(stored_hash, settings):
        matches = verify_password(password, stored_hash or dummy_hash(settings))
        _CURRENT_COST.observe(_parameters(settings), time.perf_counter() - started)
        return matches and stored_hash is not None
    matches = verify_password(password, stored_hash)
    if not matches:
        _pad_to_current_cost(password, settings, started)
    return matches


def dummy_hash(settings: Settings) -> str:
    """A hash of a random password with the current parameters, made once per parameter set.

    Verifying against it costs what verifying a real password costs: a login for an unknown email spends it, so
    the response time does not tell whether the email is registered.
    """
    return _dummy_hash(*_parameters(settings))


def hasher(settings: Settings) -> PasswordHasher:
    """The argon2id hasher for the settings' parameters (cached per parameter set)."""
    return _hasher(*_parameters(settings))


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_password(password: str, settings: Settings, *, email: str | None = None) -> None:
    """Refuse a password that breaks the policy: ``ValidationError(field="password", rule=...)``.

    Rules, in order: ``type`` (not a string), ``encoding`` (a lone surrogate), ``min_length``, ``max_length``
    (characters, after NFKC),
    ``common`` (in the bundled list of common passwords, case-insensitively), ``contains_email`` (holds the
    email address or its local part), ``repetitive`` (one repeated character, or a run such as "abcdefgh" or
    "98765432"). The message names the rule and never repeats the password.
    """
    if not isinstance(password, str):
        raise _refused("type", "password must be a string")
    if not password.isascii() and not _encodable(password):
        raise _refused("encoding", "password must be valid Unicode text (it holds a lone surrogate)")
    candidate = _normalised(password)
    if len(candidate) < settings.password_min_length:
        raise _refused("min_length", f"password must be at least {settings.password_min_length} characters")
    if len(candidate) > settings.password_max_length:
        raise _refused("max_length", f"password must be at most {settings.password_max_length} characters")
    folded = candidate.lower()
    if folded in common_passwords():
        raise _refused("common", "password is too common: it appears in a list of frequently used passwords")
    if email and _contains_email(folded, email):
        raise _refused("contains_email", "password must not contain the email address")
    if _is_repetitive(folded):
        raise _refused("repetitive", "password must not be one repeated character or a simple sequence")


@functools.cache
def common_passwords() -> frozenset[str]:
    """The bundled list (``db/data_files/common_passwords.txt``), read on first use."""
    text = resources.files("db").joinpath(COMMON_PASSWORDS_FILE).read_text(encoding="utf-8")
    return frozenset(
        line.strip().lower() for line in text.splitlines() if line.strip() and not line.startswith("#")
    )


def _normalised(password: str) -> str:
    return unicodedata.normalize("NFKC", password)


def _refused(rule: str, message: str) -> ValidationError:
    return ValidationError(f"{message} (rule: {rule})", field="password", rule=rule)


def _contains_email(folded: str, email: str) -> bool:
    address = unicodedata.normalize("NFKC", email.strip()).lower()
    local = address.partition("@")[0]
    return address in folded or (len(local) >= 4 and local in folded)


def _is_repetitive(folded: str) -> bool:
    if len(set(folded)) == 1:
        return True
    steps = {ord(b) - ord(a) for a, b in itertools.pairwise(folded)}
    return steps in ({1}, {-1})


def _parameters(settings: Settings) -> tuple[int, int, int]:
    return settings.password_time_cost, settings.password_memory_cost_kib, settings.password_parallelism


@functools.lru_cache(maxsize=16)
def _hasher(time_cost: int, memory_cost: int, parallelism: int) -> PasswordHasher:
    return PasswordHasher(time_cost=time_cost, memory_cost=memory_cost, parallelism=parallelism, type=Type.ID)


@functools.lru_cache(maxsize=16)
def _dummy_hash(time_cost: int, memory_cost: int, parallelism: int) -> str:
    return _hasher(time_cost, memory_cost, parallelism).hash(secrets.token_urlsafe(32))


class _RunningCost:
    """A running average of how long a verification with each parameter set takes (thread-safe)."""

    def __init__(self, weight: float = 0.2) -> None:
        self._weight = weight
        self._seconds: dict[tuple[int, int, int], float] = {}
        self._lock = threading.Lock()

    def observe(self, parameters: tuple[int, int, int], seconds: float) -> None:
        with self._lock:
            previous = self._seconds.get(parameters)
            self._seconds[parameters] = seconds if previous is None else previous + self._weight * (seconds - previous)

    def estimate(self, parameters: tuple[int, int, int]) -> float | None:
        return self._seconds.get(parameters)


_CURRENT_COST = _RunningCost()


def _pad_to_current_cost(password: str, settings: Settings, started: float) -> None:
    target = _CURRENT_COST.estimate(_parameters(settings))
    if target is None:
        verify_evenly(password, None, settings)  # measures the current cost for the next time
        return
    remaining = target - (time.perf_counter() - started)
    if remaining > 0:
        time.sleep(remaining)


_VERIFIER = PasswordHasher()  # verification reads the parameters from the hash; these defaults are unused

__all__ = [
    "check_password",
    "common_passwords",
    "dummy_hash",
    "hash_password",
    "hasher",
    "needs_rehash",
    "verify_evenly",
    "verify_password",
]
