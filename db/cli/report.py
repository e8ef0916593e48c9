"""`python -m db report`."""
