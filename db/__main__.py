"""``python -m db``: the command line (``python -m db --help``)."""

import sys

from db.cli import main

if __name__ == "__main__":
    sys.exit(main())
