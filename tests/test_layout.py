"""The direction of imports that docs/development.md states, read from the source files (nothing is imported).

ingest → warehouse_db and training → warehouse_db; all three may import command_line.py, ingest and training
market_calendar.py too; warehouse_db imports neither ingest nor training, and the two root modules import no
project package; ingest and training never import each other; and no product module imports the test double
(gateway_simulator) or the dev tools (devtools). An import by name in a string
(importlib) is not seen; the product code has none.
"""

from __future__ import annotations

import ast
from pathlib import Path

from warehouse_db.settings import REPO_ROOT

# For each product package or module: the first-party top-level names it may import (besides itself).
ALLOWED = {
    "ingest": {"warehouse_db", "market_calendar", "command_line"},
    "training": {"warehouse_db", "market_calendar", "command_line"},
    "warehouse_db": {"command_line"},
    "market_calendar": set(),
    "command_line": set(),
}


def first_party() -> set[str]:
    """Every top-level package (a folder with __init__.py) and module (a .py file) at the repository root."""
    packages = {path.parent.name for path in REPO_ROOT.glob("*/__init__.py")}
    return packages | {path.stem for path in REPO_ROOT.glob("*.py")}


def source_files(name: str) -> list[Path]:
    module = REPO_ROOT / f"{name}.py"
    return [module] if module.is_file() else sorted((REPO_ROOT / name).rglob("*.py"))


def imported_top_levels(path: Path, own: str) -> set[str]:
    """The top-level names `path` imports anywhere in it (functions and TYPE_CHECKING blocks included)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            names.add(own if node.level else node.module.split(".")[0])
    return names


def first_party_imports(name: str) -> dict[str, set[str]]:
    """{file relative to the repository: the other first-party top-level names it imports} for package `name`."""
    others = first_party() - {name}
    return {str(path.relative_to(REPO_ROOT)): imported_top_levels(path, name) & others for path in source_files(name)}


def test_product_code_imports_only_in_the_documented_direction() -> None:
    wrong = [
        f"{file} imports {', '.join(sorted(names - ALLOWED[package]))}"
        for package in ALLOWED
        for file, names in first_party_imports(package).items()
        if names - ALLOWED[package]
    ]
    assert not wrong, "imports against docs/development.md's direction:\n" + "\n".join(wrong)


def test_the_check_sees_the_packages_and_their_imports() -> None:
    """The test above cannot pass by reading nothing: every product package is found, and the imports that do exist
    are seen."""
    assert set(ALLOWED) | {"gateway_simulator", "devtools"} <= first_party()
    for package in ("ingest", "training"):
        assert "warehouse_db" in set().union(*first_party_imports(package).values())
