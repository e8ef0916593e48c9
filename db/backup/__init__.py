"""Backup and restore as a library; ``db.scripts.backup_db`` and ``db.scripts.restore_db`` are their commands.

The archive (its format is described in ``manifest``):

- ``sizes``: frame and row sizes, and the largest a reader accepts (``reader.Limits``)
- ``codec``: column tags and the engine-neutral encoding of rows
- ``manifest``: member names, ``Part``, ``TableDump`` and ``Manifest``
- ``writer``: ``ArchiveWriter``, parts compressed on every core
- ``reader``: ``open_archive``, ``verify_archive``, ``unpack``, ``Limits``: verified first, then streamed
  (``streams``)
- ``disk``: free space and a full disk

Backup and restore:

- ``create``: ``create_backup``, the archive's name, retention
- ``snapshot``: a consistent snapshot of the database written into the archive
- ``blobs``: file blobs into and out of the archive
- ``restore``: ``restore_backup`` and ``verify_backup``
- ``staging``: where a restore builds the new data on each engine, and its swap
- ``load``: rows into the staging area (a SQLite snapshot's read back by ``sqlite_part``)
- ``leftovers``: what killed backups and restores leave, listed and removed

Nothing is imported here, so that importing one module (``leftovers`` for ``check``) loads only what it needs.
"""
