"""No import cycle among the package's modules (the layers contract in pyproject.toml, run by
`lint-imports` in CI, keeps higher layers out of lower ones; this keeps modules of one layer
from importing each other in a circle)."""

from __future__ import annotations

import grimp


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


def test_every_module_has_a_layer() -> None:
    """A new module must be placed in the layers contract, or lint-imports ignores it."""
    import tomllib
    from pathlib import Path

    import ccfcache

    root = Path(ccfcache.__file__).parent
    config = tomllib.loads((root.parent / "pyproject.toml").read_text(encoding="utf-8"))
    layered = {name.strip().removeprefix("ccfcache.")
               for contract in config["tool"]["importlinter"]["contracts"]
               for layer in contract.get("layers", []) for name in layer.split(":")}
    modules = {p.relative_to(root).parts[0].removesuffix(".py")
               for p in root.glob("*") if (p.suffix == ".py" or (p / "__init__.py").exists())
               and p.name != "__init__.py"}
    assert modules - layered == set(), "add these modules to a layer in pyproject.toml"
