"""Backup and restore as a library; ``db.scripts.backup_db`` and ``db.scripts.restore_db`` are their commands.

- ``leftovers``: what killed backups and restores leave, listed and removed

Nothing is imported here, so that importing one module (``leftovers`` for ``check``) loads only what it needs.
"""
