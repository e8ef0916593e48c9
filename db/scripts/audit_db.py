"""The audit chain for operators: the work of ``python -m db audit head|verify|seal``.

    from db.scripts.audit_db import head, seal, verify

    exported = head(database)            # ExportedHead(seq, hash, created_at, key_id): copy exported.token away
    report = verify(database, expected_head=ExportedHead.parse("1234:9f86…"), archive_dir=Path("/backups/audit"))
    report.ok                            # ChainReport: the first problem in report.problem
    seal(database)                       # appends an ``audit.sealed`` event and returns the new head

Decisions:

- **Export heads.** Without the audit key, someone who can rewrite the whole log (and its head) can make it verify
  again; a head copied out of the database from time to time (a ticket, another machine, a signed e-mail) cannot
  be rewritten with it. ``verify --head`` checks that the chain still holds that head unchanged and that the
  current head extends it; with a keyed chain it is what catches a chain cut back to an older head that was copied
  from the database itself.
- ``head`` prints what is stored, after one cheap check: the entry at the head's seq has the head's hash (else
  ``CheckFailed``, so that a head that does not match its own log is never exported). Run ``verify`` for the rest.
- ``verify`` reads in a plain session (no write lock on SQLite) and looks for purge archives in ``archive_dir``
  (default ``db/data/audit_archive``): an archive that is there is checked, one that is not is a warning.
- ``seal`` appends an event as the ``system`` actor. After an audit key is configured, the chain becomes keyed at
  its next audited write; ``seal`` makes that write now, so that verification with the key passes at once.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from db import audit
from db.admin_catalog import SYSTEM
from db.audit import ChainReport, ExportedHead
from db.errors import CheckFailed, ValidationError
from db.layer import Database
from db.models.log_audit import GENESIS_HASH, AuditEntry
from db.repositories.audit_repository import DEFAULT_ARCHIVE_DIR, AuditRepository
from db.session import require_existing

MAX_HEAD_FILE = 64 * 1024


def head(database: Database) -> ExportedHead:
    """The chain head to export; ``CheckFailed`` if the entry at its seq does not carry its hash."""
    require_existing(database)
    with database.session() as session:
        exported = AuditRepository(session).head()
        stored = session.scalar(select(AuditEntry.hash).where(AuditEntry.seq == exported.seq))
    if (exported.seq, exported.hash) != (0, GENESIS_HASH) and stored != exported.hash:
        raise CheckFailed(f"the chain head (seq {exported.seq}) does not match the entry at its seq: not exporting "
                          "it; run python -m db audit verify")
    return exported


def verify(
    database: Database, *, expected_head: ExportedHead | None = None, archive_dir: Path | None = DEFAULT_ARCHIVE_DIR
) -> ChainReport:
    """``AuditRepository.verify_chain`` with the Database's audit key, in a plain session."""
    require_existing(database)
    with database.session() as session:
        return AuditRepository(session).verify_chain(archive_dir=archive_dir, expected_head=expected_head)


def seal(database: Database) -> ExportedHead:
    """Append an ``audit.sealed`` event (keyed, when a key is configured) and return the new head."""
    require_existing(database)
    with database.unit_of_work(actor=SYSTEM) as uow:
        audit.record_event(uow.session, "audit.sealed", data={"keyed": uow.settings.audit_key is not None})
    return head(database)


def exported_head(value: str) -> ExportedHead:
    """An exported head given on the command line: ``SEQ:HASH``, its JSON, or the path of a file holding either."""
    path = Path(value)
    try:
        is_file = path.is_file()
    except (OSError, ValueError):  # a name too long for the file system, a NUL byte
        is_file = False
    if not is_file:
        return ExportedHead.parse(value)
    with open(path, "rb") as stream:
        data = stream.read(MAX_HEAD_FILE + 1)
    if len(data) > MAX_HEAD_FILE:
        raise ValidationError(f"{path} is too large to be an exported audit head", field="head")
    try:
        return ExportedHead.parse(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise ValidationError(f"{path} is not an exported audit head (not UTF-8 text)", field="head") from None


if __name__ == "__main__":
    from db.cli import run_script

    run_script("audit")
