"""Dependencies point one way: protocols → kernel → backends (STYLE.md).

Each subsystem may import only the subsystems listed for it; a protocol never
imports another protocol.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

SOURCE = pathlib.Path(__file__).resolve().parents[1] / "src" / "tier0"

#: subsystem → the tier0 subsystems it may import (besides itself and tier0.errors).
ALLOWED = {
    "meta": set(),
    "identity": {"meta"},
    "catalog": {"meta"},
    "store": {"meta", "identity"},
    "db": {"meta", "identity", "store", "catalog"},
    # The engine runs functions against the whole platform: principals for them, the
    # kernel's types, the embedding model for its built-in, and (only at run time, in a
    # worker) the client a function is given.
    "engine": {"meta", "identity", "store", "catalog", "db", "_client"},
    "protocols": {"meta", "identity", "catalog", "db", "engine", "store", "_client"},
    "server": {"meta", "identity", "catalog", "db", "engine", "store", "_client", "protocols"},
    "cli": {
        "meta",
        "identity",
        "catalog",
        "db",
        "engine",
        "store",
        "_client",
        "server",
        "protocols",
    },
}


def _imports(path: pathlib.Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return {name for name in names if name == "tier0" or name.startswith("tier0.")}


def _modules(subsystem: str) -> list[pathlib.Path]:
    return sorted((SOURCE / subsystem).rglob("*.py"))


@pytest.mark.parametrize("subsystem", sorted(ALLOWED))
def test_subsystem_imports_only_what_lies_beneath_it(subsystem: str) -> None:
    assert _modules(subsystem), f"no modules found for {subsystem}"
    for path in _modules(subsystem):
        for name in _imports(path):
            parts = name.split(".")
            # `import tier0` is the package facade, which is tier0._client.
            target = parts[1] if len(parts) > 1 else "_client"
            if target in (subsystem, "errors"):
                continue
            assert target in ALLOWED[subsystem], f"{path.relative_to(SOURCE)} imports {name}"


def test_protocols_do_not_import_each_other() -> None:
    for protocol in (p for p in (SOURCE / "protocols").iterdir() if p.is_dir()):
        for path in protocol.rglob("*.py"):
            for name in _imports(path):
                parts = name.split(".")
                if parts[1:2] == ["protocols"] and len(parts) > 2:
                    assert parts[2] == protocol.name, f"{path.relative_to(SOURCE)} imports {name}"
