"""What ``db.scripts.sample_generator`` generates: ``GeneratorOptions`` and its defaults.

Apart from the generator so that the command line can show the defaults in its help without loading the database
layer.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

DEFAULT_START = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)


@dataclass(frozen=True, slots=True)
class GeneratorOptions:
    """What to generate; see the module docstring for how the counts follow from each other."""

    rows: int | None = None
    users: int | None = None
    accounts: int | None = None
    users_per_account: int = 10
    members_per_account: float = 6.0
    files_per_account: float = 10.0
    events_per_user: float = 20.0
    blobs: int | None = None
    seed: int = 42
    batch_size: int = 50_000  # rows per transaction (see the module docstring)
    write_blobs: bool = True
    start: dt.datetime = DEFAULT_START
    days: int = 730


if __name__ == "__main__":
    from db.cli import run_library

    run_library(__spec__.name if __spec__ else __name__)
