"""`python -m db admin`."""
