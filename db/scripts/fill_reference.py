"""Reference data: the built-in permissions and roles, and a first administrator. Idempotent.

    DBLAYER_ADMIN_EMAIL=ada@example.com DBLAYER_ADMIN_PASSWORD=... python -m db.scripts.fill_reference
    python -m db fill                                   # the same; asks for the administrator on a terminal

The roles come from ``db.admin_catalog`` (the single source of truth). The administrator is created if no user has
that email, and granted ``superadmin`` if they lack it. An existing user's password is never changed: running the
script twice, or with another password, changes nothing. The password never reaches the output, a log or the audit
trail (only its argon2 hash is stored).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from db import settings
from db.admin_catalog import SYSTEM, seed_builtin_roles
from db.layer import Database
from db.scripts.admin_db import ensure_admin
from db.scripts.create_db import require_head
from db.services.admin import AdminService

ADMIN_EMAIL_ENV = settings.ADMIN_EMAIL_ENV
ADMIN_PASSWORD_ENV = settings.ADMIN_PASSWORD_ENV
ADMIN_ROLE = "superadmin"
GRANT_REASON = "fill_reference: first administrator"


@dataclass(frozen=True, slots=True)
class AdminCredentials:
    email: str
    password: str = field(repr=False)

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> AdminCredentials | None:
        """From ``DBLAYER_ADMIN_EMAIL`` and ``DBLAYER_ADMIN_PASSWORD``; None unless both are set."""
        email, password = environ.get(ADMIN_EMAIL_ENV, "").strip(), environ.get(ADMIN_PASSWORD_ENV, "")
        return cls(email, password) if email and password else None


@dataclass(frozen=True, slots=True)
class ReferenceResult:
    reference_changes: Mapping[str, int]  # rows changed by kind: permissions, roles, grants_added, grants_removed
    admin_email: str | None = None
    admin_created: bool = False
    admin_granted: bool = False

    @property
    def changed(self) -> bool:
        return any(self.reference_changes.values()) or self.admin_created or self.admin_granted


def fill_reference(database: Database, admin: AdminCredentials | None = None) -> ReferenceResult:
    """Seed the built-in roles and, given ``admin``, make sure that user exists and is a superadmin.

    One transaction: a refused password (``ValidationError``: too short, too common...) leaves nothing written.
    """
    require_head(database)
    with database.unit_of_work(actor=SYSTEM) as uow:
        changes = seed_builtin_roles(uow.session)
        if admin is None:
            return ReferenceResult(changes)
        user, created, granted = ensure_admin(uow, admin.email, admin.password, role=ADMIN_ROLE,
                                              reason=GRANT_REASON, display_name="Administrator")
        return ReferenceResult(changes, user.email, created, granted)


def administrators(database: Database) -> list[str]:
    """The emails of the users who hold ``superadmin``."""
    with database.session() as session:  # a plain read: no write lock on SQLite
        return [user.email for user in AdminService(session).holders(ADMIN_ROLE)]


if __name__ == "__main__":
    from db.cli import run_script

    run_script("fill")
