"""`python -m db cleanup`."""
