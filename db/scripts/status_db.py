"""The state of the database at a glance: what ``python -m db setup`` and ``python -m db status`` print.

Schema revision, row counts, sign-ups over the period the data covers, storage per account, and the audit chain's
verification (every row, not the purge archives: ``check`` reads those). Read in plain sessions: no write lock is
taken on SQLite.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import func, select

from db.audit import ChainReport
from db.layer import Database
from db.migrations import runner
from db.models.account import Account
from db.models.file_blob import FileBlob
from db.models.file_object import StoredFile
from db.models.log_audit import AuditEntry
from db.models.membership import Membership
from db.models.user import User
from db.repositories.audit_repository import AuditRepository
from db.scripts.create_db import require_head
from db.services.report_catalogue import AccountStorage, PeriodCount
from db.services.reports import ReportService
from db.session import require_existing

COUNTED = {"users": User, "accounts": Account, "memberships": Membership, "files": StoredFile,
           "blobs": FileBlob, "audit entries": AuditEntry}


@dataclass(frozen=True, slots=True)
class Overview:
    engine: str
    url: str  # without the password
    revision: str | None
    head: str | None
    counts: dict[str, int]
    stored_bytes: int
    signups: list[PeriodCount]
    signup_bucket: str
    storage: list[AccountStorage]  # the accounts holding the most bytes, most first
    chain: ChainReport


def overview(database: Database, *, top_accounts: int = 5) -> Overview:
    """Collect the overview; the schema must be at head (run ``create`` or ``migrate upgrade`` first)."""
    require_existing(database)
    require_head(database)
    revision = head = runner.head_revision()
    with database.session() as session:
        counts = {label: session.scalar(select(func.count()).select_from(model)) or 0
                  for label, model in COUNTED.items()}
        stored = session.scalar(select(func.coalesce(func.sum(StoredFile.size), 0))
                                .where(StoredFile.deleted_at.is_(None))) or 0
        first, last = session.execute(select(func.min(User.created_at), func.max(User.created_at))).one()
        reports = ReportService(session)
        bucket = _bucket(first, last)
        signups = reports.signups(start=first, end=last + dt.timedelta(seconds=1), bucket=bucket) if first else []
        storage = sorted(reports.storage_by_account(), key=lambda row: (-row.total_bytes, row.slug))[:top_accounts]
        chain = AuditRepository(session).verify_chain(archive_dir=None)  # check reads the purge archives too
    return Overview(
        engine=database.backend, url=database.url.render_as_string(hide_password=True), revision=revision,
        head=head, counts=counts, stored_bytes=int(stored), signups=signups, signup_bucket=bucket, storage=storage,
        chain=chain,
    )


def _bucket(first: dt.datetime | None, last: dt.datetime | None) -> str:
    """Days for a month of data, weeks for half a year, months beyond."""
    span = (last - first) if first and last else dt.timedelta(0)
    if span <= dt.timedelta(days=31):
        return "day"
    return "week" if span <= dt.timedelta(weeks=26) else "month"


if __name__ == "__main__":
    from db.cli import run_script

    run_script("status")
