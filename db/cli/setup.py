"""`python -m db setup`."""
