"""The pipeline's one direction: a later stage never reaches back into an earlier one's modules."""

from __future__ import annotations

import ast

from conftest import REPO

PACKAGE = REPO / "src" / "qualcode"


def _imported_modules(folder) -> dict[str, set[str]]:
    """For each module under ``folder``, every qualcode module it imports (anywhere in it)."""
    found = {}
    for path in sorted(folder.rglob("*.py")):
        names = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module:
                names.add(node.module)
            elif isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
        found[str(path.relative_to(folder))] = {
            name for name in names if name.startswith("qualcode")
        }
    return found


def test_export_never_imports_ingest():
    modules = _imported_modules(PACKAGE / "export")
    assert "guard.py" in modules and "qualcode.workbooks" in modules["guard.py"]
    reaching_back = {
        module: sorted(name for name in names if name.startswith("qualcode.ingest"))
        for module, names in modules.items()
    }
    assert {module: names for module, names in reaching_back.items() if names} == {}
