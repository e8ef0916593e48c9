"""`python -m db backup`."""
