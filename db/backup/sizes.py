"""The sizes an archive is written and read in, and the largest it accepts (``reader.Limits`` builds on them).

``CHUNK`` is read where it is used (``sizes.CHUNK``), not copied at import, so a test can make frames small.
"""

from __future__ import annotations

# Level 1: a SQLite file shrinks ~3.8x; level -1 is ~15 % faster but leaves the archive 1.5x larger
# (bench/bench_backup.py, RESULTS.md).
COMPRESSION_LEVEL = 1
CHUNK = 16 << 20  # input per zstd frame: large enough for a good ratio, small enough to spread over the cores
COPY_CHUNK = 1 << 20
MAX_MANIFEST_BYTES = 256 << 20
MAX_EXPANSION_RATIO = 100.0  # a compressed part may decompress to this many times its stored size ...
EXPANSION_ALLOWANCE = 1 << 20  # ... plus this much (small parts, e.g. a nearly empty SQLite file, expand ~40x)
MAX_ROW_BYTES = 64 << 20  # one row: a JSON line, or a row of a SQLite snapshot; backups refuse larger rows
MAX_WINDOW = 1 << 24  # the largest zstd window accepted: a frame never needs more than its input (CHUNK)
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"

__all__ = [
    "CHUNK", "COMPRESSION_LEVEL", "COPY_CHUNK", "EXPANSION_ALLOWANCE", "MAX_EXPANSION_RATIO", "MAX_MANIFEST_BYTES",
    "MAX_ROW_BYTES", "MAX_WINDOW", "ZSTD_MAGIC",
]
