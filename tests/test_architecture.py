"""The package's import graph keeps its rules (issue 21), read with grimp from the source:

* no import cycle between modules, counting imports inside functions too (they only hide a
  cycle from the interpreter);
* the science packages never import the edges: the executive, the archive, the CLI, the
  benchmarks and the simulator;
* no module imports a private name (``_x``) of another package.

The few known exceptions are listed with the reason each is still there; the lists may only
shrink: a new violation fails, and so does an exception that has gone (remove it here).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

grimp = pytest.importorskip("grimp")

#: Edge layers: orchestration, serving, command line, benchmarks, the camera/sky simulator,
#: the evaluation harnesses that run the pipeline on simulations.
EDGES = ("zsds.executive", "zsds.archive", "zsds.cli", "zsds.bench", "zsds.sim",
         "zsds.evaluation")
#: Science and data layers, which must not depend on the edges.
SCIENCE = ("core", "io", "db", "sky", "split", "calib", "ingest", "instcal", "refs", "diffim",
           "streaks", "realbogus", "alerts", "lightcurves", "moving", "solar")
#: (importer, imported) edges still crossing the layer rule, and why.
LAYER_EXCEPTIONS = {
    # Simulation harnesses that live beside the stage they train or evaluate (to move to an
    # evaluation layer of their own).
    ("zsds.realbogus.drb_data", "zsds.sim.run"),
    ("zsds.realbogus.drb_data", "zsds.sim.camera"),
    ("zsds.streaks.simulate", "zsds.sim.render"),
}
#: (importer, imported module, name): private names still imported from another package.
PRIVATE_EXCEPTIONS: set[tuple[str, str, str]] = set()
SRC = Path(__file__).resolve().parents[1] / "src" / "zsds"


@pytest.fixture(scope="module")
def graph():
    return grimp.build_graph("zsds", cache_dir=None)


def _package(module: str) -> str:
    return ".".join(module.split(".")[:2])


def _cycles(graph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    modules = sorted(graph.modules)
    adj = {m: sorted(graph.find_modules_directly_imported_by(m)) for m in modules}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out = []
    for root in modules:
        if root in index:
            continue
        work = [(root, 0)]
        while work:
            v, i = work.pop()
            if i == 0:
                index[v] = low[v] = len(index)
                stack.append(v)
                on.add(v)
            if i < len(adj[v]):
                work.append((v, i + 1))
                w = adj[v][i]
                if w not in index:
                    work.append((w, 0))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            for w in adj[v]:
                if w in on:
                    low[v] = min(low[v], low[w])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def test_no_import_cycle_between_modules(graph) -> None:
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    class Fake:
        modules = frozenset({"a", "b", "c"})

        @staticmethod
        def find_modules_directly_imported_by(m):
            return {"a": {"b"}, "b": {"a"}, "c": {"a"}}[m]

    assert _cycles(Fake()) == [["a", "b"]]


def test_science_layers_never_import_the_edges(graph) -> None:
    found = set()
    for m in graph.modules:
        if _package(m).split(".")[-1] not in SCIENCE:
            continue
        for n in graph.find_modules_directly_imported_by(m):
            if n.startswith(EDGES):
                found.add((m, _package(n) if n.startswith("zsds.executive") else n))
    assert found - LAYER_EXCEPTIONS == set(), "new layer violations"
    assert LAYER_EXCEPTIONS - found == set(), "exceptions that have gone: remove them"


def _private_imports(root: Path = SRC) -> set[tuple[str, str, str]]:
    """(importer, module, name) of every ``from zsds.x import _name`` across packages, read
    from the syntax trees (imports inside functions and over several lines included)."""
    found = set()
    for path in root.rglob("*.py"):
        importer = ".".join(("zsds", *path.relative_to(root).with_suffix("").parts))
        importer = importer.removesuffix(".__init__")
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not (isinstance(node, ast.ImportFrom) and node.level == 0 and node.module
                    and node.module.startswith("zsds.")
                    and _package(node.module) != _package(importer)):
                continue
            found |= {(importer, node.module, a.name) for a in node.names
                      if a.name.startswith("_") and not a.name.startswith("__")}
    return found


def test_the_private_import_reader_sees_multiline_and_nested_imports(tmp_path) -> None:
    (tmp_path / "realbogus").mkdir()
    (tmp_path / "realbogus" / "data.py").write_text(
        "from zsds.realbogus.model import _own\n"  # same package: allowed
        "def f():\n    from zsds.diffim.run import (\n        SubtractRunConfig,\n"
        "        _context,\n    )\n")
    assert _private_imports(tmp_path) == {("zsds.realbogus.data", "zsds.diffim.run",
                                           "_context")}


def test_no_module_imports_another_packages_private_names() -> None:
    found = _private_imports()
    assert found - PRIVATE_EXCEPTIONS == set(), "new private imports"
    assert PRIVATE_EXCEPTIONS - found == set(), "exceptions that have gone: remove them"
