"""Check that the database and its blobs are sound: the work of ``python -m db check``.

    from db.scripts.check_db import check

    report = check(database)                   # CheckReport: one CheckResult per check
    report.ok                                  # False if any check failed
    [result.name for result in report.failed]

The checks, in order (each result has ``ok``: True, False, or None when the check does not apply or was not
asked for; ``summary``; ``problems``, the reasons it failed; ``warnings``, findings that do not fail it):

- ``integrity``: SQLite ``PRAGMA integrity_check`` (page-level damage, broken indexes). PostgreSQL and MariaDB
  look after their own pages: not applicable there.
- ``foreign keys``: SQLite ``PRAGMA foreign_key_check`` (rows naming a missing parent, possible when a file was
  written with foreign keys off). The servers enforce foreign keys on every write: not applicable there.
- ``revision``: the database's Alembic revision is the head.
- ``schema``: no drift between the models and the database (Alembic autogenerate's comparison: tables, columns,
  types, nullability, indexes, unique and foreign keys), and the audit log's triggers (append-only, seq guards).
  Not compared (None) when the revision is not the head: the drift would only restate that.
- ``audit chain``: ``AuditRepository.verify_chain``: every row of the audit tables accounted for, every hash
  recomputed (HMAC with the Database's audit key), the purge archives found in ``archive_dir`` (default
  ``db/data/audit_archive``; one that is not there is a warning) and, if given, the exported ``audit_head``.
- ``storage``: the storage root is this database's (``db.storage_binding``): bound to it, or not bound yet and
  holding nothing another database could miss (a warning says it is not bound yet). A root bound to another
  database, one without a marker that holds blobs this database does not name, and a database without its
  identity fail it.
- ``blobs``: every ``file_blob`` row's bytes are streamed through SHA-256 and compared with its key and size;
  missing and changed blobs fail it. Bytes on disk that no row names are a warning, not a failure: they harm
  nothing and ``python -m db cleanup`` removes them. ``blobs=False`` skips it (None), and so does a storage root
  bound to another database (the ``storage`` check fails).
- ``restore``: what interrupted restores into this database left (``db.backup.leftovers``). A restore whose swap
  was interrupted half-way (MariaDB: the new tables in place, their triggers not yet) fails it; a staging file or
  database left by a killed restore, whose target still holds its old data, is a warning (``cleanup --apply``
  removes it), and so is one a running restore is using.

A check that cannot run (a table missing in a database that was never migrated) fails with that reason; a
database that cannot be reached at all raises (``DatabaseUnavailable`` or the driver's error), as every command
does, and so does a SQLite file that does not exist (it is not created). Problems name tables, ids, seqs and blob
keys (SHA-256 of content), never a secret.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import exc, func, inspect, select

from db import storage_binding
from db.audit import ExportedHead
from db.backup import leftovers
from db.errors import DatabaseError, NotFound
from db.layer import Database
from db.migrations import runner
from db.models.database_identity import DatabaseIdentity
from db.models.file_blob import FileBlob
from db.progress import SILENT, Progress
from db.repositories.audit_repository import DEFAULT_ARCHIVE_DIR, AuditRepository
from db.session import require_existing
from db.storage import LocalStorage, hash_stream
from db.storage_binding import BindingState

MAX_PROBLEMS = 1_000  # listed per check; the summary still counts them all


@dataclass(frozen=True, slots=True)
class CheckResult:
    name: str
    ok: bool | None  # None: not applicable or not asked for
    summary: str
    problems: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class CheckReport:
    results: tuple[CheckResult, ...]
    seconds: float

    @property
    def ok(self) -> bool:
        return all(result.ok is not False for result in self.results)

    @property
    def failed(self) -> tuple[CheckResult, ...]:
        return tuple(result for result in self.results if result.ok is False)

    def result(self, name: str) -> CheckResult:
        return next(result for result in self.results if result.name == name)


def check(
    database: Database,
    *,
    blobs: bool = True,
    progress: Progress = SILENT,
    audit_head: ExportedHead | None = None,
    archive_dir: Path | None = DEFAULT_ARCHIVE_DIR,
) -> CheckReport:
    """Run every check (see the module docstring) and return their results; raises only if unreachable."""
    started = time.perf_counter()
    require_existing(database)
    current = runner.current_revision(database)  # reaches the database first: unreachable raises here
    head = runner.head_revision()
    at_head = current == head
    storage = _guarded("storage", lambda: _storage(database))
    foreign = storage.summary == _FOREIGN
    results = [
        _guarded("integrity", lambda: _integrity(database)),
        _guarded("foreign keys", lambda: _foreign_keys(database)),
        _revision(current, head),
        _guarded("schema", lambda: _schema(database, at_head)),
        _guarded("audit chain", lambda: _audit_chain(database, audit_head, archive_dir)),
        storage,
        _guarded("blobs", lambda: _skipped("blobs", "not asked for") if not blobs
                 else _skipped("blobs", "not checked: the storage root belongs to another database") if foreign
                 else _blobs(database, progress)),
        _guarded("restore", lambda: _restore_leftovers(database)),
    ]
    return CheckReport(tuple(results), time.perf_counter() - started)


def _guarded(name: str, run: Callable[[], CheckResult]) -> CheckResult:
    """The check's result, or a failure saying why it could not run (no traceback, no bound values)."""
    try:
        return run()
    except (DatabaseError, exc.SQLAlchemyError) as error:
        reason = error.orig if isinstance(error, exc.DBAPIError) else error
        text = " ".join(str(reason).split()) or type(reason).__name__
        return CheckResult(name, False, f"could not run: {text[:200]}", (f"could not run: {text[:200]}",))


def _skipped(name: str, why: str) -> CheckResult:
    return CheckResult(name, None, why)


def _verdict(name: str, problems: list[str], good: str, bad: str, warnings: list[str] | None = None) -> CheckResult:
    summary = good if not problems else f"{len(problems)} {bad}"
    return CheckResult(name, not problems, summary, tuple(problems[:MAX_PROBLEMS]), tuple(warnings or ()))


def _integrity(database: Database) -> CheckResult:
    with database.engine.connect() as connection:
        problems = database.dialect.integrity_problems(connection)
    if problems is None:
        return _skipped("integrity", "not applicable: the server checks its own pages")
    return _verdict("integrity", problems, "ok (PRAGMA integrity_check)", "problem(s) in the file")


def _foreign_keys(database: Database) -> CheckResult:
    with database.engine.connect() as connection:
        problems = database.dialect.foreign_key_problems(connection)
    if problems is None:
        return _skipped("foreign keys", "not applicable: the server enforces them on every write")
    return _verdict("foreign keys", problems, "every reference resolves", "row(s) refer to missing rows")


def _revision(current: str | None, head: str | None) -> CheckResult:
    if current == head:
        return CheckResult("revision", True, f"at head ({head})")
    problem = f"the database is at revision {current or 'none'}, the head is {head}: run python -m db migrate"
    return CheckResult("revision", False, f"at {current or 'none'}, head is {head}", (problem,))


def _schema(database: Database, at_head: bool) -> CheckResult:
    if not at_head:
        return _skipped("schema", "not compared: the revision is not the head")
    problems: list[str] = []
    try:
        runner.check(database)
    except runner.SchemaDriftError as drift:
        problems.extend(_describe_diff(diff) for diff in drift.diffs)
        problems = problems or [str(drift)]
    with database.engine.connect() as connection:
        missing = database.dialect.missing_audit_triggers(connection)
        problems.extend(f"missing trigger: {name}" for name in missing)
    return _verdict("schema", problems, "matches the models", "difference(s) from the models")


def _describe_diff(diff: object) -> str:
    """One of Alembic's diffs, e.g. ``remove_index ix_user_token_user_id_purpose``."""
    if isinstance(diff, list):  # column modifications come as a list of tuples
        return "; ".join(_describe_diff(part) for part in diff)
    if not isinstance(diff, tuple) or not diff:
        return str(diff)
    kind, *rest = diff
    objects = [part for part in rest if getattr(part, "name", None) is not None]  # an Index, a Column, a Table
    names = [_name_of(part) for part in objects] if objects else [part for part in rest if isinstance(part, str)]
    return " ".join([str(kind), *names])


def _name_of(part: object) -> str:
    table = getattr(part, "table", None)
    table_name = getattr(table, "name", None)
    return f"{table_name}.{part.name}" if table_name else str(part.name)  # type: ignore[attr-defined]


def _audit_chain(database: Database, audit_head: ExportedHead | None, archive_dir: Path | None) -> CheckResult:
    with database.session() as session:  # a plain session: on SQLite a unit of work would hold the write lock
        report = AuditRepository(session).verify_chain(archive_dir=archive_dir, expected_head=audit_head)
    if not report.ok:
        where = "" if report.first_bad_seq is None else f" at seq {report.first_bad_seq}"
        row = f" (entry {report.first_bad_id})" if report.first_bad_id else ""
        problem = f"broken{where}{row}: {report.reason}"
        return CheckResult("audit chain", False, f"broken{where}", (problem,), report.warnings)
    details = [f"{report.checked:,} entries verified", f"keyed (key id {report.key_id})" if report.key_id else "",
               f"{report.archives_checked:,} archive(s) checked" if report.archives_checked else "",
               f"holds the exported head at seq {audit_head.seq:,}" if audit_head else ""]
    return CheckResult("audit chain", True, "; ".join(filter(None, details)), warnings=report.warnings)


_FOREIGN = "bound to another database"


def _storage(database: Database) -> CheckResult:
    storage = storage_binding.local_storage(database)
    with database.engine.connect() as connection:
        if not inspect(connection).has_table(DatabaseIdentity.__tablename__):
            problem = "not checked: the database has no identity table (its schema is old: run python -m db migrate)"
            return CheckResult("storage", False, "not checked: no identity table", (problem,))
        binding = storage_binding.inspect_binding(connection, storage)
    state = binding.state
    if state is BindingState.BOUND:
        return CheckResult("storage", True, f"{storage.location}: bound to this database ({binding.database_id})")
    if state is BindingState.FREE:
        return CheckResult("storage", True, f"{storage.location}: empty, bound at the first upload")
    if state is BindingState.ADOPTABLE:
        warning = (f"{storage.location} has no marker; it holds only this database's blobs and is bound to it at the "
                   "next upload or cleanup (or now: python -m db storage --bind)")
        return CheckResult("storage", True, f"{storage.location}: not bound yet", (), (warning,))
    summary = _FOREIGN if state is BindingState.FOREIGN else binding.describe()
    return CheckResult("storage", False, summary, (str(binding.refusal()),))


def _blobs(database: Database, progress: Progress) -> CheckResult:
    storage = storage_binding.local_storage(database)
    problems: list[str] = []
    known: set[str] = set()
    with database.session() as session:
        total = int(session.scalar(select(func.count()).select_from(FileBlob)) or 0)
        rows = session.execute(select(FileBlob.sha256, FileBlob.size).order_by(FileBlob.sha256))
        with progress.track("blobs", total=total) as advance:
            for sha256, size in rows:
                known.add(sha256)
                problem = _blob_problem(storage, sha256, size)
                if problem:
                    problems.append(problem)
                advance(1)
    on_disk = storage.keys()
    loose = [f"{key}: bytes on disk that no row names (cleanup removes them)" for key in on_disk if key not in known]
    good = f"{total:,} blobs match their SHA-256" + (f"; {len(loose):,} unnamed on disk" if loose else "")
    return _verdict("blobs", problems, good, "blob(s) missing or changed", loose)


def _restore_leftovers(database: Database) -> CheckResult:
    found = leftovers.restore_leftovers(database)
    unfinished = [leftover.describe() for leftover in found if leftover.state == leftovers.UNFINISHED]
    others = [leftover.describe() for leftover in found if leftover.state != leftovers.UNFINISHED]
    if unfinished:
        return CheckResult("restore", False, f"{len(unfinished)} restore(s) interrupted during the swap",
                           tuple(unfinished), tuple(others))
    summary = f"no interrupted restore; {len(others)} staging area(s) left" if others else "no interrupted restore"
    return CheckResult("restore", True, summary, (), tuple(others))


def _blob_problem(storage: LocalStorage, sha256: str, size: int) -> str | None:
    try:
        with storage.open(sha256) as stream:
            actual, actual_size = hash_stream(stream, storage.chunk_size)
    except NotFound:
        return f"{sha256}: missing"
    if actual != sha256:
        return f"{sha256}: changed (its bytes hash to {actual})"
    if actual_size != size:
        return f"{sha256}: {actual_size} bytes, the row says {size}"
    return None


if __name__ == "__main__":
    from db.cli import run_script

    run_script("check")
