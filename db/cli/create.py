"""`python -m db create`."""
