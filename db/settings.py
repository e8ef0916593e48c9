"""Settings of the layer's own behaviour (password hashing, lockout, tokens, audit, file storage), per Database.

    Database(url, settings=Settings(lockout_threshold=10))
    Database(url, settings=Settings.for_tests())      # fast password hashing for test suites

A unit of work hands its Database's settings to every repository (``repository.settings``).

``audit_key`` (default: the environment variable ``DBLAYER_AUDIT_KEY``) makes the audit chain keyed (HMAC-SHA256,
see ``db.audit``): at least 32 characters, kept outside the database. It is never shown: not in the repr, a log or
an error message.
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

from db.errors import ValidationError

AUDIT_KEY_ENV = "DBLAYER_AUDIT_KEY"
AUDIT_KEY_MIN_LENGTH = 32
DEFAULT_STORAGE_ROOT = Path(__file__).resolve().parent / "data" / "files"


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
    audit_key: str | None = field(default_factory=lambda: os.environ.get(AUDIT_KEY_ENV) or None, repr=False)

    def __post_init__(self) -> None:
        key = self.audit_key
        if key is not None and (not isinstance(key, str) or len(key) < AUDIT_KEY_MIN_LENGTH):
            raise ValidationError(
                f"the audit key ({AUDIT_KEY_ENV}) must be text of at least {AUDIT_KEY_MIN_LENGTH} characters, e.g. "
                "python -c 'import secrets; print(secrets.token_hex(32))'", field="audit_key", rule="length",
            )

    @classmethod
    def for_tests(cls, **overrides: object) -> Settings:
        """The cheapest argon2 parameters and a throwaway storage root: for test suites only, never for real use."""
        scratch = Path(tempfile.gettempdir()) / f"dblayer-test-files-{os.getpid()}"
        # No audit key from the environment either: a test asks for one explicitly.
        fast = cls(password_time_cost=1, password_memory_cost_kib=8, password_parallelism=1, storage_root=scratch,
                   audit_key=None)
        return replace(fast, **overrides)  # type: ignore[arg-type]
