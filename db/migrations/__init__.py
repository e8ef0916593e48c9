"""Schema migrations (Alembic): ``env.py``, the revision files in ``versions/``, and ``runner`` to run them from
Python. From a shell: ``alembic upgrade head`` (see ``alembic.ini``) or ``python -m db``."""
