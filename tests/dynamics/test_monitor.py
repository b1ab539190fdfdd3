"""The Monitor protocol belongs to the training loop: dynamics never imports diagnostics, and
diagnostics implement monitors without importing the loop."""

from __future__ import annotations

import ast
from pathlib import Path

import widenet

SOURCE = Path(widenet.__file__).parent


def imported_modules(package: str) -> dict[str, set[str]]:
    """{file: the widenet modules it imports} for every file of ``package``."""
    found = {}
    for path in sorted((SOURCE / package).rglob("*.py")):
        names = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                names.add(node.module)
                names.update(f"{node.module}.{alias.name}" for alias in node.names)
            elif isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
        found[path.name] = {name for name in names if name.startswith("widenet")}
    return found


def test_training_does_not_import_diagnostics() -> None:
    modules = imported_modules("dynamics")
    assert {"monitor.py", "train.py"} <= set(modules)
    for path, names in modules.items():
        assert not any(name.startswith("widenet.diagnostics") for name in names), path


def test_diagnostics_do_not_import_the_training_loop() -> None:
    modules = imported_modules("diagnostics")
    assert "builtin.py" in modules
    for path, names in modules.items():
        assert not any(name.startswith("widenet.dynamics.train") for name in names), path
    assert "widenet.dynamics.monitor" in modules["builtin.py"]
