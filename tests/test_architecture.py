"""The project's layers (README.md, "Architecture"), read from the source with ast: no import points up a layer, and
no modules import each other in a circle. Every import counts, the ones inside functions too."""

from __future__ import annotations

import ast
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: The layers, lowest first: a module may import its own package and the layers below its own.
LAYERS = [
    ("utils",),
    ("environment", "replay_memory", "neural_network"),
    ("agent",),
    ("conversion_based_snn",),
    ("plotting",),
    ("sweeping",),
]
#: The programs: the top, they may import any library module, but no program imports another.
PROGRAMS = ("run", "sweep", "utils.plot", "utils.export_nir", "conversion_based_snn.convert", "bench")
TOP = {name for layer in LAYERS for name in layer} | {"run", "sweep", "bench"}


def module_files() -> dict[str, str]:
    modules = {}
    for folder, dirs, files in os.walk(ROOT):
        rel = os.path.relpath(folder, ROOT)
        top = rel.split(os.sep)[0]
        if rel != "." and top not in TOP:
            dirs[:] = []
            continue
        for file in files:
            if not file.endswith(".py") or (rel == "." and file[:-3] not in TOP):
                continue
            parts = [] if rel == "." else rel.split(os.sep)
            if file != "__init__.py":
                parts.append(file[:-3])
            modules[".".join(parts)] = os.path.join(folder, file)
    return modules


def imports(modules: dict[str, str]) -> dict[str, dict[str, int]]:
    """{module: {imported project module: line}}, every import statement anywhere in the file."""

    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph = {}
    for module, path in modules.items():
        package = module if path.endswith("__init__.py") else module.rpartition(".")[0]
        with open(path, encoding="utf-8") as file:
            tree = ast.parse(file.read(), path)
        edges = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*parts, base] if base else parts)
                names = [base] + [f"{base}.{alias.name}" for alias in node.names]
            else:
                continue
            for name in names:
                target = resolve(name) if name.split(".")[0] in TOP else None
                if target and target != module:
                    edges.setdefault(target, node.lineno)
        graph[module] = edges
    return graph


def is_program(module: str) -> bool:
    return any(module == program or module.startswith(program + ".") for program in PROGRAMS)


def rank(module: str) -> int:
    if is_program(module):
        return len(LAYERS)
    top = module.split(".")[0]
    return next(index for index, layer in enumerate(LAYERS) if top in layer)


def allowed(source: str, target: str) -> bool:
    if is_program(target):  # a program imports no other program (within its own package it may)
        return is_program(source) and source.split(".")[0] == target.split(".")[0] == "bench"
    if source.split(".")[0] == target.split(".")[0]:
        return True
    return rank(target) < rank(source)


def cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found, counter = {}, {}, [], set(), [], [0]

    def visit(node):
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, {}):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


GRAPH = imports(module_files())


def test_the_map_sees_the_project():
    # the programs and a module of every layer are read, with imports inside functions
    assert {"run", "sweep", "utils.plot", "agent.training", "plotting.cli", "sweeping.driver"} <= set(GRAPH)
    assert "agent.evaluation" in GRAPH["run"]  # run.py imports it inside a function
    assert "neural_network.networks" in GRAPH["agent.config"]


def test_no_import_points_up_a_layer():
    back = [f"{source} -> {target} (line {line})" for source, edges in sorted(GRAPH.items())
            for target, line in sorted(edges.items()) if not allowed(source, target)]
    assert not back, "imports pointing up the layers:\n" + "\n".join(back)


def test_no_import_circle():
    assert not cycles(GRAPH), f"modules that import each other in a circle: {cycles(GRAPH)}"


def test_the_checks_catch_a_back_edge_and_a_circle():
    assert not allowed("neural_network.checkpoint", "agent.config")
    assert not allowed("utils.files", "utils.plot")
    assert not allowed("sweeping.plan", "run")
    assert allowed("utils.export_nir", "conversion_based_snn.snn.simulate")
    assert cycles({"a": {"b": 1}, "b": {"c": 1}, "c": {"a": 1}}) == [["a", "b", "c"]]
