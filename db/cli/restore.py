"""`python -m db restore`."""
