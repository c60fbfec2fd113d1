"""No import circle in ``automl``, counting every import a module names: at module level, inside functions
(lazy) and under ``if TYPE_CHECKING:`` (annotations). The import-linter contracts (pyproject.toml) see what
a module loads; this sees what it depends on, so that a part of the run (its config, plan, records, state
file, ladder) never needs the context that holds it, and a mode's declarations never need the run."""
from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import automl

ROOT = Path(automl.__file__).parent


def _modules() -> dict[str, Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _graph(mods: dict[str, Path]) -> dict[str, set[str]]:
    def known(name: str) -> str | None:  # the module itself, else the package that holds the name
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                deps |= {known(a.name) for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                deps |= {known(f"{node.module}.{a.name}") if f"{node.module}.{a.name}" in mods else known(node.module)
                         for a in node.names}
        graph[name] = {d for d in deps if d is not None and d != name}
    return graph


def test_the_module_graph_finds_what_it_should():
    """Known edges: a TYPE_CHECKING import (ladder_run -> scheduler), a lazy one (mode_run -> pbt) and a
    submodule named in ``from package import module`` (driver -> mode_run)."""
    graph = _graph(_modules())
    assert "automl.run.scheduler" in graph["automl.run.ladder_run"]
    assert "automl.run.pbt" in graph["automl.run.mode_run"]
    assert "automl.run.mode_run" in graph["automl.run.driver"]


def test_no_import_circle_counting_lazy_and_annotation_imports():
    try:
        graphlib.TopologicalSorter(_graph(_modules())).prepare()
    except graphlib.CycleError as exc:
        raise AssertionError(f"import circle: {' -> '.join(exc.args[1])}") from None
