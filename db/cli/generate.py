"""`python -m db generate`."""
