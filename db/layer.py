"""The layer's own domain plugged into the generic core: ``db.Database`` and ``db.UnitOfWork``.

``db.session`` is the core (engine, sessions, units of work, retries) and knows no entity. This module gives its
units of work the layer's services by name, each built on first use as any repository is (``uow.repository``):
``uow.users``, ``uow.accounts``, ``uow.admin``, ``uow.audit``, ``uow.files``, ``uow.reports``. They stay the
public spelling because they are what an application calls on every request, and a typed attribute reads better
than a class lookup at each call site; an application's own repositories are reached with ``uow.repository(...)``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from db import session as core
from db.repositories.account_repository import AccountRepository
from db.repositories.admin_repository import AdminRepository
from db.repositories.audit_repository import AuditRepository
from db.repositories.report_repository import ReportRepository
from db.repositories.user_repository import UserRepository
from db.services.files import FileService


class UnitOfWork(core.UnitOfWork):
    """A unit of work with the layer's services as attributes, built on first use."""

    @property
    def users(self) -> UserRepository:
        return self.repository(UserRepository)

    @property
    def accounts(self) -> AccountRepository:
        return self.repository(AccountRepository)

    @property
    def admin(self) -> AdminRepository:
        return self.repository(AdminRepository)

    @property
    def audit(self) -> AuditRepository:
        return self.repository(AuditRepository)

    @property
    def files(self) -> FileService:
        return self.repository(FileService)

    @property
    def reports(self) -> ReportRepository:
        return self.repository(ReportRepository)


class Database(core.Database[UnitOfWork]):
    """The core ``Database`` whose units of work are the layer's (``UnitOfWork`` above)."""

    def _new_unit_of_work(self, session: Session, actor: Any) -> UnitOfWork:
        return UnitOfWork(session, actor=actor, settings=self.settings)


__all__ = ["Database", "UnitOfWork"]
