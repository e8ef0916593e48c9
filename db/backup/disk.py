"""Files on local disks: reading in chunks, room to write, and a full disk as ``DiskFull``."""

from __future__ import annotations

import contextlib
import errno
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO

from db.backup.sizes import COPY_CHUNK
from db.errors import DiskFull


def read_chunks(source: IO[bytes], size: int = COPY_CHUNK) -> Iterator[bytes]:
    while chunk := source.read(size):
        yield chunk


def check_free_space(needs: Mapping[Path, int]) -> None:
    """``DiskFull`` unless every file system can take what is to be written on it: ``needs`` maps a path (which
    need not exist yet) to the bytes to be written there; paths on one file system add up."""
    by_device: dict[int, tuple[Path, int]] = {}
    for path, size in needs.items():
        where = _nearest_existing(path)
        device = where.stat().st_dev
        known, total = by_device.get(device, (where, 0))
        by_device[device] = (known, total + size)
    for where, size in by_device.values():
        free = shutil.disk_usage(where).free
        if size > free:
            raise DiskFull(f"the restore needs {_mib(size)} on the file system of {where}, which has {_mib(free)} "
                           "free: free some space and try again (nothing was changed)")


def _nearest_existing(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path.parent != path:
        path = path.parent
    return path


def _mib(size: int) -> str:
    return f"{size / 2**20:,.1f} MiB"


def is_disk_full(error: BaseException) -> bool:
    """An ``OSError`` saying that the disk (or the user's quota) is full."""
    return isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT)


@contextlib.contextmanager
def disk_full_as_error(where: str) -> Iterator[None]:
    """A full disk while writing in the block becomes ``DiskFull`` naming ``where``."""
    try:
        yield
    except OSError as error:
        if not is_disk_full(error):
            raise
        raise DiskFull(f"the disk holding {where} is full: free some space and try again") from None


__all__ = ["check_free_space", "disk_full_as_error", "is_disk_full", "read_chunks"]
