"""The ``python -m db`` command line (also installed as ``dblayer``): Typer commands over ``db.scripts``.

Each command parses its arguments, calls one script function and shows the result; the work is in the scripts.
"""

from db.cli.app import app, main, run_library, run_script

__all__ = ["app", "main", "run_library", "run_script"]
