"""No import cycle among the package's modules (the layers contract in pyproject.toml, run by
`lint-imports` in CI, keeps higher layers out of lower ones; this keeps modules of one layer
from importing each other in a circle)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import grimp

import ccfcache


def import_cycles(package: str) -> list[list[str]]:
    """For each direct import a -> b inside `package` with a chain back b -> ... -> a, that
    cycle (a, b, ..., a)."""
    graph = grimp.build_graph(package)
    cycles = []
    for importer in sorted(graph.modules):
        for imported in sorted(graph.find_modules_directly_imported_by(importer)):
            back = graph.find_shortest_chain(importer=imported, imported=importer)
            if back:
                cycles.append([importer, *back])
    return cycles


def test_no_import_cycles() -> None:
    cycles = import_cycles("ccfcache")
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


ROOT = Path(ccfcache.__file__).parent


def _modules() -> set[str]:
    """The package's modules and subpackages (`cli`, `demo`), by name."""
    return {p.relative_to(ROOT).parts[0].removesuffix(".py")
            for p in ROOT.glob("*") if (p.suffix == ".py" or (p / "__init__.py").exists())
            and p.name != "__init__.py"}


def _contract_layers() -> list[set[str]]:
    config = tomllib.loads((ROOT.parent / "pyproject.toml").read_text(encoding="utf-8"))
    return [{name.strip().removeprefix("ccfcache.") for name in layer.split(":")}
            for contract in config["tool"]["importlinter"]["contracts"]
            for layer in contract.get("layers", [])]


def _documented_layers() -> list[set[str]]:
    """The modules of each row of docs/layout.md's layer table, top layer first."""
    text = (ROOT.parent / "docs" / "layout.md").read_text(encoding="utf-8")
    section = text.split("## Layers of the code", 1)[1].split("\n## ", 1)[0]
    layers = []
    for line in section.splitlines():
        cells = line.split("|")
        if len(cells) < 4 or not cells[2].strip().startswith("`"):
            continue
        names = set()
        for name in re.findall(r"`([a-z_0-9]+)(\*|/)?`", cells[2]):
            stem, suffix = name
            names |= {m for m in _modules() if m.startswith(stem)} if suffix == "*" else {stem}
        layers.append(names)
    return layers


def test_every_module_has_a_layer() -> None:
    """A new module must be placed in the layers contract, or lint-imports ignores it."""
    layered = set().union(*_contract_layers())
    assert _modules() - layered == set(), "add these modules to a layer in pyproject.toml"


def test_docs_describe_the_layers_as_configured() -> None:
    """docs/layout.md's table lists each layer of the contract, in order, module for module."""
    assert _documented_layers() == _contract_layers()
