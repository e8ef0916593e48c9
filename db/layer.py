"""The layer's own domain plugged into the generic core: ``db.Database`` and ``db.UnitOfWork``.

``db.session`` is the core (engine, sessions, units of work, retries) and knows no entity. This module gives its
units of work the layer's services by name, each built on first use as any repository is (``uow.repository``):
``uow.users``, ``uow.accounts``, ``uow.admin``, ``uow.audit``, ``uow.files``, ``uow.reports``. They stay the
public spelling because they are what an application calls on every request, and a typed attribute reads better
than a class lookup at each call site; an application's own repositories are reached with ``uow.repository(...)``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session

from db import session as core

if TYPE_CHECKING:  # each service is imported on first use: a command pays only for those it reaches
    from db.repositories.audit_repository import AuditRepository
    from db.services.accounts import AccountService
    from db.services.admin import AdminService
    from db.services.files import FileService
    from db.services.reports import ReportService
    from db.services.users import UserService


class UnitOfWork(core.UnitOfWork):
    """A unit of work with the layer's services as attributes, built on first use."""

    @property
    def users(self) -> UserService:
        from db.services.users import UserService

        return self.repository(UserService)

    @property
    def accounts(self) -> AccountService:
        from db.services.accounts import AccountService

        return self.repository(AccountService)

    @property
    def admin(self) -> AdminService:
        from db.services.admin import AdminService

        return self.repository(AdminService)

    @property
    def audit(self) -> AuditRepository:
        from db.repositories.audit_repository import AuditRepository

        return self.repository(AuditRepository)

    @property
    def files(self) -> FileService:
        from db.services.files import FileService

        return self.repository(FileService)

    @property
    def reports(self) -> ReportService:
        from db.services.reports import ReportService

        return self.repository(ReportService)


class Database(core.Database[UnitOfWork]):
    """The core ``Database`` whose units of work are the layer's (``UnitOfWork`` above)."""

    def _new_unit_of_work(self, session: Session, actor: Any) -> UnitOfWork:
        return UnitOfWork(session, actor=actor, settings=self.settings)


__all__ = ["Database", "UnitOfWork"]
