"""Operations scripts: each module does one thing and is runnable as ``python -m db.scripts.<name>``."""
