"""Schema migrations (Alembic): ``env.py``, the revision files in ``versions/``, and ``runner`` to run them.

From Python: ``db.migrations.runner``. From a shell: ``python -m db``, or ``alembic upgrade head``
(configured by ``alembic.ini``).
"""
