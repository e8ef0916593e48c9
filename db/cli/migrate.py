"""`python -m db migrate`."""
