"""Code run in child processes by the file storage tests (importable, so 'spawn' and ``python -m`` can find it).

``python -m tests.integration.storage_workers URL ROOT ACCOUNT_ID SIGNAL MODE`` stores a file into the database
at URL (blobs under ROOT) and stops for good at a point the parent then kills it at with SIGKILL:

- ``reading``: 1 MiB of the upload has been read (it is in a temporary file, nothing else exists yet);
- ``placed``: the bytes are under their key and the blob row is written, nothing is committed.

It writes SIGNAL when it gets there.
"""

from __future__ import annotations

import io
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from db import Database, StorageMismatch
from db.settings import Settings
from db.storage import LocalStaged

MIB = 2**20


def open_database(url: str, root: str) -> Database:
    return Database(url, settings=Settings.for_tests(storage_root=Path(root)), attempts=20)


def new_account(database: Database, tag: str) -> str:
    def create(uow: Any) -> str:
        owner = uow.users.create(email=f"{tag}@example.com", password="correct horse battery staple")
        return str(uow.accounts.create(name=tag, slug=tag, owner=owner).id)

    return database.run_in_transaction(create)  # concurrent writers may deadlock on the audit chain head: retried


def store_one(url: str, root: str, tag: str, start: Any) -> str:
    """Make an account, wait for the others, store a file: "stored", or "refused" (the root is not this one's)."""
    database = open_database(url, root)
    account_id = new_account(database, tag)
    start.wait(120)  # a racer that failed before here breaks the barrier for all instead of hanging them
    try:  # retried as concurrent writers should be (deadlocks on the audit chain head)
        database.run_in_transaction(lambda uow: uow.files.store(
            account=account_id, owner=None, filename=f"{tag}.txt", stream=f"{tag} bytes".encode()))
    except StorageMismatch:
        return "refused"
    finally:
        database.dispose()
    return "stored"


class StallingStream(io.RawIOBase):
    """1 MiB of bytes, then a signal file and no more progress, ever."""

    def __init__(self, signal: Path) -> None:
        self.signal, self.sent = signal, 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if self.sent >= MIB:
            self.signal.write_text("reading")
            while True:
                time.sleep(60)
        count = min(MIB - self.sent, size if size and size > 0 else MIB)
        self.sent += count
        return b"k" * count


def main(url: str, root: str, account_id: str, signal: str, mode: str) -> None:
    database = open_database(url, root)
    placed_bytes = b"placed, never committed " + uuid.uuid4().bytes
    stream: Any = StallingStream(Path(signal)) if mode == "reading" else placed_bytes
    if mode == "placed":
        commit = LocalStaged.commit

        def commit_then_stall(staged: LocalStaged) -> bool:
            placed = commit(staged)
            Path(signal).write_text("placed")
            while True:
                time.sleep(60)
            return placed  # pragma: no cover - never reached

        LocalStaged.commit = commit_then_stall  # type: ignore[method-assign]
    with database.unit_of_work() as uow:
        uow.files.store(account=account_id, owner=None, filename="killed.bin", stream=stream)


if __name__ == "__main__":
    main(*sys.argv[1:6])
