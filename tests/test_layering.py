"""The package's import structure (docs/architecture.md): imports only go down the layers, and no
module sits in an import loop."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parent.parent / "src" / "widenet"

#: Top-level modules and subpackages of widenet, from the bottom layer to the top. A module may
#: import from its own entry and from entries of lower layers; entries of one layer never import
#: each other. ``widenet`` itself (the public API) re-exports and sits above everything.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("errors",),
    ("deferred", "validation", "devices", "checks", "files", "memory", "activation_names",
     "seeds"),
    ("activations", "widths", "parametrizations"),
    ("nn",),
    ("models",),
    ("kernels",),
    ("dynamics",),
    ("diagnostics", "solvers"),
    ("data", "figures"),
    ("studies",),
    ("store",),
    ("report",),
    ("runner",),
    ("sweeps",),
    ("cli",),
)
RANK = {entry: rank for rank, layer in enumerate(LAYERS) for entry in layer}
TOP = "widenet"


def module_name(path: Path, source: Path = SOURCE) -> str:
    """``widenet.kernels.infinite`` for src/widenet/kernels/infinite.py (packages by folder)."""
    parts = list(path.relative_to(source.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(path: Path, source: Path = SOURCE) -> Iterator[tuple[int, str]]:
    """(line, absolute module name) of every widenet import in the file, relative ones resolved,
    ``from X import y`` counted as an import of X.y when that is a module, else of X."""
    name = module_name(path, source)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == TOP:
                    yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            if target.split(".")[0] != TOP:
                continue
            for alias in node.names:
                yield node.lineno, resolve(f"{target}.{alias.name}")


def resolve(name: str) -> str:
    """The longest prefix of ``name`` that is a module of the package."""
    while name not in MODULES and "." in name:
        name = name.rpartition(".")[0]
    return name


def entry(module: str) -> str:
    """The layer entry a module belongs to: widenet.kernels.maps.conv -> "kernels"."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else TOP


MODULES = {module_name(path): path for path in SOURCE.rglob("*.py")}
IMPORTS = {name: sorted(set(imported_modules(path))) for name, path in MODULES.items()}


def test_every_entry_has_a_layer() -> None:
    """A new subpackage or top-level module must be placed in LAYERS (and docs/architecture.md)."""
    unplaced = sorted({entry(name) for name in MODULES} - set(RANK) - {TOP})
    assert not unplaced, f"place these in LAYERS and in docs/architecture.md: {unplaced}"


def test_imports_only_go_down() -> None:
    upward = []
    for name, imports in IMPORTS.items():
        own = entry(name)
        if own not in RANK:
            continue  # reported by test_every_entry_has_a_layer
        for line, target in imports:
            other = entry(target)
            if other != own and RANK.get(other, len(LAYERS)) >= RANK[own]:
                upward.append(f"{MODULES[name].relative_to(SOURCE.parent)}:{line} imports {target}")
    assert not upward, "imports that do not go down the layers:\n" + "\n".join(upward)


def test_no_import_loops() -> None:
    graph = {name: {target for _, target in imports if target != name and target != TOP}
             for name, imports in IMPORTS.items()}
    loops = []
    for start in graph:
        stack, seen = [start], set()
        while stack:
            for target in graph.get(stack.pop(), ()):
                if target == start:
                    loops.append(start)
                    stack.clear()
                    break
                if target not in seen:
                    seen.add(target)
                    stack.append(target)
    assert not loops, f"modules in import loops: {sorted(loops)}"


@pytest.mark.parametrize("bad", ["from widenet.cli import main", "import widenet.sweeps",
                                 "from ..report import html"])
def test_the_check_sees_an_upward_import(bad: str, tmp_path: Path) -> None:
    """The layering check can fail: an upward import written into a low module is found."""
    low = tmp_path / "widenet" / "kernels" / "low.py"
    low.parent.mkdir(parents=True)
    low.write_text(bad + "\n")
    found = [target for _, target in imported_modules(low, tmp_path / "widenet")]
    assert found
    assert all(RANK[entry(target)] > RANK["kernels"] for target in found)
