"""Run every ```python block of a Markdown file, in order, in one namespace; report the block that fails.

A block fenced ```py is shown, not run here (the README's pytest module: tests/integration/test_readme_contract.py).

    python tests/readme_runner.py README.md
"""

from __future__ import annotations

import re
import sys
import traceback
import types
from pathlib import Path

BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def blocks(text: str) -> list[tuple[int, str]]:
    """(line of the opening fence, code) of every python block."""
    return [(text.count("\n", 0, match.start()) + 1, match.group(1)) for match in BLOCK.finditer(text)]


def main(path: str) -> int:
    text = Path(path).read_text(encoding="utf-8")
    module = types.ModuleType("readme")  # a real module: SQLAlchemy resolves Mapped[...] in the module's namespace
    sys.modules[module.__name__] = module
    namespace = module.__dict__
    found = blocks(text)
    for line, code in found:
        try:
            exec(compile(code, f"{path}:block@{line}", "exec"), namespace)
        except BaseException:
            print(f"the python block at {path}:{line} failed:", file=sys.stderr)
            traceback.print_exc()
            return 1
    print(f"{len(found)} blocks ran")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
