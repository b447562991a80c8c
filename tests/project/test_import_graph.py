"""hp_core's modules import each other without a circle.

The graph is read from the source (ast over hp_core/**/*.py): every ``import hp_core.x`` and ``from .x import``
/ ``from hp_core.x import``, at module level and inside functions alike (a lazy import hides a circle, it
does not remove it). ``from pkg import name`` points at the submodule ``pkg.name`` when there is one, else
at ``pkg`` itself.
"""

from __future__ import annotations

import ast
from pathlib import Path


ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "hp_core"

# Edges that close a circle on purpose, each with the reason and when it goes. Keep this empty.


def _modules() -> dict[str, tuple[Path, bool]]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        found[".".join(parts)] = (path, is_package)
    return found


def _targets(module: str, is_package: bool, node: ast.AST, modules) -> set[str]:
    out = set()
    if isinstance(node, ast.Import):
        for alias in node.names:
            name = alias.name
            while name and name not in modules:  # import hp_core.a.b.c where c is a name: its module
                name = name.rpartition(".")[0]
            if name.startswith("hp_core"):
                out.add(name)
        return out
    if node.level:
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[:len(base) - (node.level - 1)]
        target = ".".join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ""
    if not target.startswith("hp_core"):
        return out
    for alias in node.names:
        sub = f"{target}.{alias.name}"
        out.add(sub if sub in modules else target)
    return {t for t in out if t in modules}


def import_graph() -> dict[str, dict[str, int]]:
    """{module: {imported module: first line}} over every hp_core module, imports inside functions included."""
    modules = _modules()
    graph = {}
    for module, (path, is_package) in modules.items():
        edges: dict[str, int] = {}
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for target in _targets(module, is_package, node, modules):
                    if target != module:
                        edges.setdefault(target, node.lineno)
        graph[module] = edges
    return graph


def cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_graph_sees_lazy_and_absolute_imports():
    graph = import_graph()
    assert len(graph) > 40 and "hp_core.weights.structure" in graph
    assert "hp_core.errors" in graph["hp_core.video"]                     # module level, relative
    assert "hp_core.preprocess.yolo_face" in graph["hp_core.weights.structure"]  # inside a function
    assert "hp_core.weights.manifest" in graph["hp_core.weights.cache"]   # from . import manifest as M


def test_no_import_cycles():
    graph = import_graph()
    found = cycles(graph)
    described = []
    for component in found:
        edges = [f"{a} -> {b} (line {graph[a][b]})" for a in component for b in graph[a] if b in component]
        described.append("; ".join(edges))
    assert not found, "import cycles: " + " | ".join(described)


def test_a_cycle_would_be_found():
    assert cycles({"a": {"b": 1}, "b": {"c": 1}, "c": {"a": 1}, "d": {"a": 1}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b": 1}, "b": {}}) == []


def test_format_modules_import_no_weights_code_and_image_video_stay_apart():
    graph = import_graph()
    assert not {t for t in graph["hp_core.svd_vae"] if t.startswith("hp_core.weights")}
    assert "hp_core.video" not in graph["hp_core.preprocess.image"]
    assert not {t for t in graph["hp_core.video"] if t.startswith("hp_core.preprocess")}


def function_imports_without_a_reason(paths, root: Path = ROOT) -> list[str]:
    """Imports inside functions with no comment on their line or the line above (the reason they are late);
    a run of imports right under such a comment shares it."""
    found = []
    for path in paths:
        lines = path.read_text(encoding="utf-8").splitlines()
        late = set()
        for node in ast.walk(ast.parse("\n".join(lines))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                late |= {inner.lineno for inner in ast.walk(node) if isinstance(inner, (ast.Import, ast.ImportFrom))}
        explained = set()
        for number in sorted(late):
            line, above = lines[number - 1], lines[number - 2].strip()
            if "#" in line or above.startswith("#") or number - 1 in explained:
                explained.add(number)
            else:
                found.append(f"{path.relative_to(root)}:{number}: {line.strip()}")
    return sorted(set(found))


def test_imports_sit_at_the_top_unless_a_comment_says_why_not():
    """A late import hides a dependency; the pack keeps one only to guard an optional or broken package or
    to reach code through a path set at run time, and says so beside it."""
    paths = [*sorted((ROOT / "hp_core").rglob("*.py")), *sorted((ROOT / "nodes").glob("*.py")),
             *sorted((ROOT / "workflows").glob("*.py")), ROOT / "__init__.py"]
    assert function_imports_without_a_reason(paths) == []


def test_a_late_import_without_a_reason_would_be_found(tmp_path):
    probe = tmp_path / "late.py"
    probe.write_text("def f():\n    import json\n\n    import os  # a reason\n    # a reason\n    import re\n"
                     "    import io\n\n    import csv\n    return json, os, re, io, csv\n")
    assert function_imports_without_a_reason([probe], tmp_path) == ["late.py:2: import json", "late.py:9: import csv"]
