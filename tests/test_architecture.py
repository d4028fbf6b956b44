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

import re

import pytest

grimp = pytest.importorskip("grimp")

#: Edge layers: orchestration, serving, command line, benchmarks, the camera/sky simulator.
EDGES = ("zsds.executive", "zsds.archive", "zsds.cli", "zsds.bench", "zsds.sim")
#: Science and data layers, which must not depend on the edges.
SCIENCE = ("core", "io", "db", "sky", "split", "calib", "ingest", "instcal", "refs", "diffim",
           "streaks", "realbogus", "alerts", "lightcurves", "moving", "solar")
#: (importer, imported) edges still crossing the layer rule, and why.
LAYER_EXCEPTIONS = {
    # Simulation harnesses that live beside the stage they train or evaluate (to move to an
    # evaluation layer of their own).
    ("zsds.lightcurves.survey", "zsds.executive"),
    ("zsds.lightcurves.survey", "zsds.sim.run"),
    ("zsds.lightcurves.survey", "zsds.sim.observing"),
    ("zsds.lightcurves.survey", "zsds.sim.camera"),
    ("zsds.realbogus.drb_data", "zsds.sim.run"),
    ("zsds.realbogus.drb_data", "zsds.sim.camera"),
    ("zsds.streaks.simulate", "zsds.sim.render"),
}
#: Modules still importing another package's private names, and the names.
PRIVATE_EXCEPTIONS = {
    ("zsds.cli.diffim_cmd", "zsds.realbogus.model"),  # _jsonable
    ("zsds.cli.moving_cmd", "zsds.moving.run"),  # _fit
    ("zsds.lightcurves.survey", "zsds.sim.run"),  # _write_night_truth
    ("zsds.realbogus.drb_data", "zsds.diffim.evaluate"),  # _truth
}
_PRIVATE = re.compile(r"import\s+(\(?\s*)?([\w\s,]*\b_[a-z]\w*)")


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


def test_no_module_imports_another_packages_private_names(graph) -> None:
    found = set()
    for m in graph.modules:
        for n in graph.find_modules_directly_imported_by(m):
            if _package(m) == _package(n):
                continue
            for d in graph.get_import_details(importer=m, imported=n):
                if _PRIVATE.search(d["line_contents"]):
                    found.add((m, n))
    assert found - PRIVATE_EXCEPTIONS == set(), "new private imports"
    assert PRIVATE_EXCEPTIONS - found == set(), "exceptions that have gone: remove them"
