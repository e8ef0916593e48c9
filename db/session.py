"""``Database``: the engine, sessions, units of work and retried transactions.

Nothing here connects or creates anything at import time: the engine is built on first use.
"""

from __future__ import annotations

import copy
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cached_property
from typing import Any, Generic, Self, TypeVar, cast

from sqlalchemy import Engine, create_engine, exc
from sqlalchemy.engine import URL, Connection
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.orm import exc as orm_exc
from typing_extensions import TypeVar as DefaultedTypeVar

from db import audit, dialects, errors
from db.settings import Settings

T = TypeVar("T")
BuiltT = TypeVar("BuiltT")
UoW_co = DefaultedTypeVar("UoW_co", bound="UnitOfWork", covariant=True, default="UnitOfWork")

DEFAULT_ATTEMPTS = 5


class UnitOfWork:
    """One session, one transaction, and the repositories and services that share them.

    ``uow.repository(SomeRepository)`` is the one way to reach a repository, or a service (anything built from the
    session alone, such as a ``db.services.Service``): built on first use from the unit of work's session, one
    instance per class per unit of work. (The layer's own unit of work, ``db.UnitOfWork``, names its services as
    attributes built the same way: ``uow.users`` and so on.) ``actor`` and ``context`` (IP address, user agent,
    request id) describe who acts and from where, for the audit trail.
    """

    def __init__(self, session: Session, *, actor: Any = None, settings: Settings | None = None) -> None:
        self.session = session
        self._built: dict[Callable[[Session], Any], Any] = {}
        # Repositories and the audit hooks read these from the session: they are built from the session alone.
        session.info["actor"] = actor
        session.info["context"] = {}
        session.info["settings"] = settings or Settings()

    @property
    def actor(self) -> Any:
        """Who acts in this unit of work (a user, or a label such as ``"system"``): recorded in the audit log."""
        return self.session.info["actor"]

    @property
    def context(self) -> dict[str, Any]:
        """Where the request came from, for the audit log: set ``ip``, ``user_agent`` and ``request_id``."""
        return self.session.info["context"]  # type: ignore[no-any-return]

    @property
    def settings(self) -> Settings:
        return self.session.info["settings"]  # type: ignore[no-any-return]

    def repository(self, kind: Callable[[Session], BuiltT]) -> BuiltT:
        """The unit of work's instance of ``kind`` (a repository or service class), created on first use."""
        if kind not in self._built:
            self._built[kind] = kind(self.session)
        return self._built[kind]  # type: ignore[no-any-return]

    def flush(self) -> None:
        self.session.flush()


class Database(Generic[UoW_co]):
    """A database: ``Database()`` uses ``DATABASE_URL`` or, failing that, the SQLite file ``db/data/app.db``.

    ``options`` are passed to ``sqlalchemy.create_engine`` (``echo=True``, ``pool_size=...``), except
    ``busy_timeout`` (seconds a SQLite writer waits for the lock, default 30), ``attempts`` (the default
    number of tries of ``run_in_transaction``) and ``settings`` (``db.settings.Settings``: password hashing,
    lockout, tokens, file storage; default ``Settings.from_env()``, which reads ``DBLAYER_STORAGE_ROOT`` as the
    command line does).

    This is the generic core: its units of work know no repository of the layer's own domain. ``db.Database``
    (``db.layer``) is the same class with the layer's units of work, whose services are named (``uow.users``).
    """

    def __init__(self, url: str | URL | None = None, **options: Any) -> None:
        self.url = dialects.resolve_url(url)
        self.attempts: int = options.pop("attempts", DEFAULT_ATTEMPTS)
        self.settings: Settings = options.pop("settings", None) or Settings.from_env()
        self._options = options
        self._bound_connection: Connection | None = None

    def __repr__(self) -> str:
        return f"Database({self.url.render_as_string(hide_password=True)!r})"

    @property
    def backend(self) -> str:
        """``sqlite``, ``postgresql`` or ``mariadb``/``mysql``."""
        return dialects.backend_name(self.url)

    @cached_property
    def dialect(self) -> dialects.Dialect:
        """What this database's engine does its own way (``db.dialects``)."""
        return dialects.dialect_of(self.url)

    @cached_property
    def engine(self) -> Engine:
        self.dialect.prepare(self.url)
        engine = create_engine(self.url, **self.dialect.engine_options(self.url, self._options))
        self.dialect.install(engine, self._options)
        return engine

    @cached_property
    def sessions(self) -> sessionmaker[Session]:
        """The session factory behind ``session()`` and ``unit_of_work()``, for code that runs a session's life
        itself (``with database.sessions() as session: ...; session.commit()``). Its sessions carry the settings
        (the audit key) and are audited; in ``isolated()`` they join the outer transaction. Their own commit raises
        SQLAlchemy's errors untranslated."""
        info = {"settings": self.settings}  # the audit key, for changes audited through a plain session
        if self._bound_connection is not None:
            return sessionmaker(bind=self._bound_connection, class_=audit.AuditedSession, info=info,
                                join_transaction_mode="create_savepoint", expire_on_commit=False)
        # this layer's sessions record audited changes; an application's own are left alone
        return sessionmaker(bind=self.engine, class_=audit.AuditedSession, info=info, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session: commit when the block ends, rollback and re-raise on an exception, always close."""
        with self.sessions() as session, _translated("session"):
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    def _new_unit_of_work(self, session: Session, actor: Any) -> UoW_co:
        """The unit of work of this kind of database (a subclass gives its own)."""
        return cast(UoW_co, UnitOfWork(session, actor=actor, settings=self.settings))

    @contextmanager
    def unit_of_work(self, actor: Any = None) -> Iterator[UoW_co]:
        """A unit of work: commit when the block ends, rollback and re-raise on an exception.

        On SQLite its reads take no lock; its first write (or locking read) takes the write lock, waiting on the
        busy timeout, so a read-then-write never fails half-way with "database is locked" (see
        ``db.dialects.sqlite.install_transactions``).
        """
        with self.sessions() as session:
            uow = self._new_unit_of_work(session, actor)
            with _translated("unit of work"):
                try:
                    yield uow
                    session.commit()
                except BaseException:
                    session.rollback()
                    raise

    def run_in_transaction(self, fn: Callable[[UoW_co], T], *, attempts: int | None = None, actor: Any = None) -> T:
        """Call ``fn(uow)`` in a fresh unit of work, retrying transient failures with backoff and jitter.

        Serialization failures, deadlocks, lock timeouts and a busy SQLite file are retried, each time in a new
        unit of work, up to ``attempts`` tries; then ``TransientError`` is raised from the last failure.
        Any other error propagates at once. ``fn`` may run more than once: keep side effects outside the
        database (emails, HTTP calls) out of it.
        """
        tries = attempts if attempts is not None else self.attempts
        if tries < 1:
            raise errors.ValidationError("attempts must be at least 1", field="attempts")
        last: BaseException | None = None
        for attempt in range(tries):
            try:
                with self.unit_of_work(actor=actor) as uow:
                    return fn(uow)
            except errors.TransientError as error:  # the unit of work has already translated driver errors
                last = error
                if attempt + 1 < tries:
                    time.sleep(_backoff(attempt))
        raise errors.TransientError(f"gave up after {tries} attempts: {last}") from last

    @contextmanager
    def isolated(self) -> Iterator[Self]:
        """A ``Database`` whose every session joins one outer transaction, rolled back at the end.

        For test suites: the code under test may commit freely (commits become SAVEPOINT releases) and
        nothing it writes survives the block.
        """
        with self.engine.connect() as connection:
            outer = connection.begin()
            try:
                yield self._bound_to(connection)
            finally:
                outer.rollback()

    def _bound_to(self, connection: Connection) -> Self:
        bound = copy.copy(self)
        bound.__dict__.pop("sessions", None)
        bound._bound_connection = connection
        return bound

    def dispose(self) -> None:
        """Close every pooled connection. The Database can still be used: it reconnects on demand."""
        if "engine" in self.__dict__:
            self.engine.dispose()


def require_existing(database: Database[Any]) -> None:
    """Refuse a database file that does not exist, rather than create an empty one by connecting to it."""
    file = database.dialect.local_file(database.url)
    if file is not None and not file.is_file():
        raise errors.DatabaseUnavailable(f"no SQLite database at {database.url.database}")


def _backoff(attempt: int, base: float = 0.02, cap: float = 1.0) -> float:
    """Exponential backoff with full jitter: uniform in [0, min(cap, base * 2**attempt)]."""
    return random.uniform(0, min(cap, base * 2**attempt))


@contextmanager
def _translated(entity: str) -> Iterator[None]:
    """SQLAlchemy and driver errors raised in the block (or at commit) leave it as ``db.errors`` errors."""
    try:
        yield
    except (exc.SQLAlchemyError, orm_exc.StaleDataError) as error:
        translated = dialects.domain_error(error, entity=entity)
        raise (translated or error) from None
