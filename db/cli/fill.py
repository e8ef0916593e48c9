"""`python -m db fill`."""
