"""Data flows one way (DESIGN.md): file -> graph -> costs -> fused subgraphs -> schedules -> reports. The
lower layers never import the upper ones, and no import cycle runs through the package."""

import ast
import pathlib

import networkx as nx

PKG = pathlib.Path(__file__).resolve().parent.parent / "onnx_hwutil"
LOWER = ("loader", "bindings", "shapes", "rebatch", "graph", "dtypes", "limits", "errors", "contrib_shapes",
         "memory", "profile", "ops", "fusion", "units", "rescale", "skim", "shape_folding", "shape_readers",
         "shapes_ort")
UPPER = ("hardware", "analysis", "findings", "report", "cli", "study", "sweep", "diff", "gates", "validate",
         "calibrate", "llm")


def _imports(top_level_only: bool) -> nx.DiGraph:
    """module -> the package modules it imports by relative import ("" is the package itself); with
    `top_level_only`, only the imports a module runs when it is loaded (not those inside functions)."""
    g = nx.DiGraph()
    for path in PKG.rglob("*.py"):
        parts = list(path.relative_to(PKG).with_suffix("").parts)
        package = parts[:-1]  # the package a module (or an __init__) sits in
        mod = ".".join(package if parts[-1] == "__init__" else parts)
        g.add_node(mod)
        tree = ast.parse(path.read_text())
        for node in (tree.body if top_level_only else ast.walk(tree)):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = package[: len(package) - (node.level - 1)]
                target = ".".join([*base, *(node.module.split(".") if node.module else [])])
                if target != mod:
                    g.add_edge(mod, target)
    return g


def test_lower_layers_never_import_upper_ones():
    g = _imports(top_level_only=False)
    bad = [(a, b) for a, b in g.edges if a.split(".")[0] in LOWER and b.split(".")[0] in UPPER]
    assert bad == []
    assert ("hardware.mapping", "fusion") in g.edges  # the check sees real edges (mapping reads fusion)


def test_no_import_cycle_among_modules_loaded_together():
    # imports inside functions are how a command imports only what it uses; a cycle among the imports a
    # module runs on load is a design error even where Python happens to tolerate it
    assert list(nx.simple_cycles(_imports(top_level_only=True))) == []


def test_no_import_cycle_even_through_imports_inside_functions():
    # a lazy import keeps a command's start-up cheap; it is no licence for two modules to lean on each other
    # (spec.py once imported host.py, which imports spec.py: loading now sits in hardware/catalog.py)
    assert list(nx.simple_cycles(_imports(top_level_only=False))) == []
