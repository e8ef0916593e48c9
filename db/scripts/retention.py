"""The retention policy of ``python -m db cleanup`` and its ages (``7d``, ``12h``, ``never``).

Apart from ``db.scripts.cleanup_db`` so that the command line can show the defaults in its help without loading the
database layer.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from db.errors import ValidationError

NEVER = "never"
_AGE = re.compile(r"(\d{1,6})([smhdw])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
MAX_AGE = dt.timedelta(weeks=52_000)  # about 1,000 years: any longer reaches before the calendar (year 1)


def parse_age(text: str) -> dt.timedelta | None:
    """``"7d"``, ``"12h"``, ``"30m"``, ``"45s"``, ``"2w"`` or ``"0"`` as a timedelta; ``"never"`` as None. Longer
    than ``MAX_AGE``: ``ValidationError`` (keep for ever with ``"never"``)."""
    value = text.strip().lower()
    if value == NEVER:
        return None
    if value == "0":
        return dt.timedelta(0)
    match = _AGE.fullmatch(value)
    if match is None:
        raise ValidationError("an age is a number and a unit (s, m, h, d, w), e.g. 7d, 12h, 0 or never",
                              field="age", rule="format")
    age = dt.timedelta(**{_UNITS[match[2]]: int(match[1])})
    if age > MAX_AGE:
        raise ValidationError(_TOO_LONG, field="age", rule="range")
    return age


_TOO_LONG = f"an age is at most {MAX_AGE.days // 7:,}w (about 1,000 years); to keep for ever, use never"


def describe_age(age: dt.timedelta | None) -> str:
    if age is None:
        return NEVER
    seconds = int(age.total_seconds())
    for unit, size in (("w", 604_800), ("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s" if seconds else "0"


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """How old a finished token, a soft-deleted row and an audit entry must be to go; None keeps them forever."""

    tokens_after: dt.timedelta | None = dt.timedelta(days=7)
    deleted_after: dt.timedelta | None = dt.timedelta(days=30)
    audit_after: dt.timedelta | None = dt.timedelta(days=365)
    blobs: bool = True  # orphaned blobs go too

    def __post_init__(self) -> None:
        for name in ("tokens_after", "deleted_after", "audit_after"):
            age = getattr(self, name)
            if age is not None and (not isinstance(age, dt.timedelta) or age < dt.timedelta(0)):
                raise ValidationError(f"{name} must be a non-negative timedelta or None", field=name)
            if age is not None and age > MAX_AGE:
                raise ValidationError(f"{name}: {_TOO_LONG}", field=name, rule="range")


if __name__ == "__main__":
    from db.cli import run_library

    run_library(__spec__.name if __spec__ else __name__)
