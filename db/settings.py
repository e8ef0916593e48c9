"""Settings of the layer's own behaviour (password hashing, lockout, tokens, audit, file storage), per Database.

    Database(url)                                      # Settings.from_env(): the defaults and the environment
    Database(url, settings=Settings.from_env(lockout_threshold=10))   # the environment, and this
    Database(url, settings=Settings(storage_root=path))   # exactly these (the environment is not read)
    Database(url, settings=Settings.for_tests())      # fast password hashing for test suites

The library and the command line read the environment in one place, ``Settings.from_env`` (``ENVIRONMENT`` lists
the variables); an explicit value wins over the environment. A unit of work hands its Database's settings to every
repository (``repository.settings``).

``audit_key`` (the environment variable ``DBLAYER_AUDIT_KEY``) makes the audit chain keyed (HMAC-SHA256, see
``db.audit``): at least 32 characters, kept outside the database. It is never shown: not in the repr, a log or an
error message.
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from db.errors import ValidationError

AUDIT_KEY_ENV = "DBLAYER_AUDIT_KEY"
AUDIT_KEY_MIN_LENGTH = 32
DATA_DIR = Path(__file__).resolve().parent / "data"
DEFAULT_STORAGE_ROOT = DATA_DIR / "files"
DEFAULT_BACKUP_DIR = DATA_DIR / "backups"
DEFAULT_AUDIT_ARCHIVE_DIR = DATA_DIR / "audit_archive"
# The first administrator, for ``python -m db setup`` and ``fill`` (``db.scripts.fill_reference``).
ADMIN_EMAIL_ENV = "DBLAYER_ADMIN_EMAIL"
ADMIN_PASSWORD_ENV = "DBLAYER_ADMIN_PASSWORD"
STORAGE_ROOT_ENV = "DBLAYER_STORAGE_ROOT"


@dataclass(frozen=True, slots=True)
class Settings:
    # argon2id. Defaults are above OWASP's minimum (m=19 MiB, t=2, p=1): 64 MiB, 3 passes, 4 lanes.
    password_time_cost: int = 3
    password_memory_cost_kib: int = 64 * 1024
    password_parallelism: int = 4
    password_min_length: int = 8
    password_max_length: int = 128
    lockout_threshold: int = 5
    lockout_period: dt.timedelta = dt.timedelta(minutes=15)
    token_ttl: dict[str, dt.timedelta] = field(
        default_factory=lambda: {
            "verify_email": dt.timedelta(days=2),
            "password_reset": dt.timedelta(hours=1),
        }
    )
    # File storage (``db.storage.LocalStorage``, ``uow.files``): where blobs live, the largest file accepted, and
    # how much of a stream is read, hashed and written at a time (memory use per upload stays near this).
    storage_root: Path = DEFAULT_STORAGE_ROOT
    max_file_size: int = 5 * 2**30
    storage_chunk_size: int = 2**20
    # The audit chain's HMAC key (``db.audit``); None: the chain is hashed with plain SHA-256. Not in the repr.
    audit_key: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        key = self.audit_key
        if key is not None and (not isinstance(key, str) or len(key) < AUDIT_KEY_MIN_LENGTH):
            raise ValidationError(
                f"the audit key ({AUDIT_KEY_ENV}) must be text of at least {AUDIT_KEY_MIN_LENGTH} characters, e.g. "
                "python -c 'import secrets; print(secrets.token_hex(32))'", field="audit_key", rule="length",
            )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """The defaults, then what the environment sets (``ENVIRONMENT``; an empty variable is unset), then
        ``overrides``: what ``Database()`` and every command use."""
        values: dict[str, Any] = {}
        for variable, (name, parse) in ENVIRONMENT.items():
            text = (os.environ if environ is None else environ).get(variable, "")
            if text.strip():
                values[name] = parse(variable, text)
        return cls(**{**values, **overrides})

    @classmethod
    def for_tests(cls, **overrides: object) -> Settings:
        """The cheapest argon2 parameters and a throwaway storage root of its own (a new directory name on each
        call, since a storage root serves one database): for test suites only, never for real use."""
        scratch = Path(tempfile.gettempdir()) / f"dblayer-test-files-{uuid.uuid4().hex}"
        fast = cls(password_time_cost=1, password_memory_cost_kib=8, password_parallelism=1, storage_root=scratch)
        return replace(fast, **overrides)  # type: ignore[arg-type]


def _path(variable: str, text: str) -> Path:
    if "\0" in text:
        raise ValidationError(f"{variable} must be a directory path", field=variable, rule="format")
    return Path(text).expanduser()


# Environment variable → (setting, parser). The parser gets the variable's name for its error message.
def _text(_variable: str, text: str) -> str:
    return text


ENVIRONMENT: dict[str, tuple[str, Callable[[str, str], Any]]] = {
    STORAGE_ROOT_ENV: ("storage_root", _path),
    AUDIT_KEY_ENV: ("audit_key", _text),
}
