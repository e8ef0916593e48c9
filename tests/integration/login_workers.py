"""Code run in child processes by the login race tests (importable, so 'spawn' can find it)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from db import AuthenticationError, Database, passwords
from db.settings import Settings

# Slow enough (tens of milliseconds) that concurrent attempts overlap while one is verifying.
SLOW_HASHING = {"password_time_cost": 2, "password_memory_cost_kib": 16 * 1024, "password_parallelism": 1}


def slow_settings(**overrides: Any) -> Settings:
    return Settings.for_tests(**{**SLOW_HASHING, "lockout_period": dt.timedelta(minutes=15), **overrides})


def login(url: str, email: str, password: str, role: str, sync: dict[str, Any],
          first: str = "nothing") -> tuple[str, int]:
    """One login: ("ok" or "refused", how many verifications against a real hash it made).

    ``role``: "free" starts with the others (``sync["start"]``, a barrier); a "leader" stops in the middle of its
    password verification until the "follower" has made its whole attempt, which begins only then. ``first``: what
    the unit of work does before it authenticates: "nothing", "read" (a query) or "write" (an audited insert).
    """
    settings = slow_settings()
    dummy = passwords.dummy_hash(settings)
    real: list[str] = []
    verify = passwords.verify_password

    def counting(candidate: str, password_hash: str) -> bool:
        if password_hash != dummy:
            real.append(password_hash)
        if role == "leader":
            sync["verifying"].set()
            sync["resume"].wait(120)
        return verify(candidate, password_hash)

    passwords.verify_password = counting  # type: ignore[assignment]  # this child process only
    database = Database(url, settings=settings)
    try:
        if role == "free":
            sync["start"].wait(120)
        if role == "follower":
            sync["verifying"].wait(120)
        with database.unit_of_work() as uow:
            if first == "read":
                uow.users.count()
            elif first == "write":
                uow.users.create(email=f"{uuid.uuid4().hex}@example.com", password=password + "-other")
            uow.users.authenticate(email, password)
        return "ok", len(real)
    except AuthenticationError:
        return "refused", len(real)
    finally:
        if role == "follower":
            sync["resume"].set()
        database.dispose()
