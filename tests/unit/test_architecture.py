"""The structure ARCHITECTURE.md describes, checked on the source: which way imports point, and where engines differ.

Layers, lowest first: core ← domain ← backup ← scripts ← command line. A module imports only from its own layer or
below. Imports only a type checker sees (``if TYPE_CHECKING:``) and a script's entry point (``if __name__ ==
"__main__":``, which hands the command line to ``db.cli``) are not dependencies of the module.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "db"

CORE = ("db.errors", "db.settings", "db.base", "db.models.base", "db.models.log_audit", "db.dialects", "db.session",
        "db.repositories.base_repository", "db.repositories.query_spec", "db.repositories.rules",
        "db.repositories.values", "db.repositories.bulk", "db.audit", "db.audit_verify", "db.autonomous",
        "db.testing", "db.progress", "db.services.base")
CORE_MODULES = ("db.repositories", "db.services")  # the packages themselves, not the entities' modules in them
LAYERS = {"core": 0, "domain": 1, "backup": 2, "scripts": 3, "cli": 4}
ENGINE_NAMES = frozenset({"sqlite", "postgresql", "postgres", "mysql", "mariadb"})


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> int:
    if module == "db" or module.startswith(("db.cli", "db.__main__")):
        return LAYERS["cli"]
    if module.startswith("db.scripts"):
        return LAYERS["scripts"]
    if module.startswith("db.backup"):
        return LAYERS["backup"]
    if module in CORE_MODULES or any(module == core or module.startswith(core + ".") for core in CORE):
        return LAYERS["core"]
    return LAYERS["domain"]


def sources() -> list[Path]:
    return sorted(path for path in ROOT.rglob("*.py") if "versions" not in path.parts)


def runtime_imports(tree: ast.Module) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement except those under ``if TYPE_CHECKING:`` or ``if __name__ == "__main__":``."""
    def visit(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_excluded_block(child.test):
                yield from (n for branch in child.orelse for n in visit_one(branch))
                continue
            if isinstance(child, ast.Import | ast.ImportFrom):
                yield child
            yield from visit(child)

    def visit_one(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        yield from visit(node)

    return visit(tree)


def _is_excluded_block(test: ast.expr) -> bool:
    text = ast.unparse(test)
    return text in ("TYPE_CHECKING", "typing.TYPE_CHECKING") or text.replace("'", '"') == '__name__ == "__main__"'


def imported_modules(node: ast.Import | ast.ImportFrom) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    return [base, *(f"{base}.{alias.name}" for alias in node.names)]


def test_imports_point_down_the_layers_only() -> None:
    wrong = []
    for path in sources():
        module, tree = module_name(path), ast.parse(path.read_text())
        for node in runtime_imports(tree):
            targets = [name for name in imported_modules(node) if name.startswith("db.") and _exists(name)]
            wrong += [f"{module} ({_layer_name(module)}) imports {target} ({_layer_name(target)})"
                      for target in targets if layer_of(target) > layer_of(module)]
    assert wrong == []


def _exists(module: str) -> bool:
    relative = Path(*module.split("."))
    return (ROOT.parent / relative).with_suffix(".py").exists() or (ROOT.parent / relative / "__init__.py").exists()


def _layer_name(module: str) -> str:
    return next(name for name, level in LAYERS.items() if level == layer_of(module))


def engine_branches(tree: ast.Module) -> Iterator[str]:
    """Where code asks which engine it is on: a comparison with an engine's name, ``dialect.name``,
    ``get_backend_name()``, or an import of SQLAlchemy's engine-specific constructs."""
    for node in ast.walk(tree):
        if _asks_engine(node):
            yield f"line {getattr(node, 'lineno', '?')}: {ast.unparse(node)[:80]}"


def _asks_engine(node: ast.AST) -> bool:
    if isinstance(node, ast.Compare):
        return any(isinstance(c, ast.Constant) and c.value in ENGINE_NAMES for c in ast.walk(node))
    if isinstance(node, ast.Attribute):
        return node.attr == "get_backend_name" or (node.attr == "name" and ast.unparse(node.value).endswith("dialect"))
    return isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sqlalchemy.dialects")


@pytest.mark.parametrize("path", [path for path in sources() if "dialects" not in path.parts],
                         ids=module_name)
def test_no_code_outside_the_dialect_package_asks_which_engine_it_runs_on(path: Path) -> None:
    assert list(engine_branches(ast.parse(path.read_text()))) == []
