"""`python -m db check`."""
