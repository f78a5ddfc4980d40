"""Check that faceprior's packages import downward only, and that no import cycle joins two modules.

    python tools/check_layers.py          # prints each violation; exit status 1 if there is any

The layers, bottom to top (a module may import from its own group and from any lower layer):

    0  errors                               the one base class of user errors
    1  paths, hardware, progress, version   atomic writes, CPU flags and devices, progress bars, the version
    2  imaging                              pixels, image files, resizing, listing images
    3  weights                              checkpoint files, downloads, the weight catalogue
    4  models                               networks, the architecture table, resolve_model
    5  face                                 detection, alignment, paste-back, parsing
    6  inference                            the fast CPU path, ONNX export
    7  restoration                          FaceRestorer, batch runs, background upsampling
    8  metrics                              PSNR ... FID, identity, LMD
    9  training                             degradations, data, losses, trainers
   10  evaluation                           test sets, the evaluation runner, ablations
   11  service, archive                     the HTTP API and web page (faceprior serve); Ray at archive scale
   12  cli                                  the command line, one module per group of subcommands
   13  __main__, the package root           ``python -m faceprior``; ``faceprior.load_model`` ...

Every ``import`` and ``from ... import`` of a faceprior module is read from the source (module level
and inside functions alike) without importing anything.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path
from typing import Iterator, Mapping

#: Layer of each top-level group of the package ("" is the package root, faceprior/__init__.py).
LAYERS: dict[str, int] = {
    "errors": 0,
    "paths": 1, "hardware": 1, "progress": 1, "version": 1,
    "imaging": 2,
    "weights": 3,
    "models": 4,
    "face": 5,
    "inference": 6,
    "restoration": 7,
    "metrics": 8,
    "training": 9,
    "evaluation": 10,
    "service": 11, "archive": 11,
    "cli": 12,
    "__main__": 13, "": 13,
}


def module_name(path: Path, root: Path, package: str) -> str:
    """``faceprior.models.loading`` for ``<root>/faceprior/models/loading.py`` (packages: their __init__)."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports_of(path: Path, name: str, package: str, modules: set[str]) -> Iterator[tuple[str, int]]:
    """(imported faceprior module, line) for every import in ``path``; ``from a import b`` counts as an
    import of ``a.b`` when that is a module, else of ``a``. Relative imports are resolved."""
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == package or alias.name.startswith(package + "."):
                    yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".") if is_package else name.split(".")[:-1]
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            if base != package and not base.startswith(package + "."):
                continue
            for alias in node.names:
                target = f"{base}.{alias.name}"
                yield (target if target in modules else base), node.lineno


def group_of(module: str, package: str) -> str:
    """The top-level group of a module: ``faceprior.models.loading`` -> "models", ``faceprior`` -> ""."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def find_violations(root: Path, package: str = "faceprior", layers: Mapping[str, int] = LAYERS) -> list[str]:
    """Every upward import, import of an unlisted group, and import cycle in ``root/package``, as messages."""
    files = sorted((root / package).rglob("*.py"))
    names = {path: module_name(path, root, package) for path in files}
    modules = set(names.values())
    graph: dict[str, set[str]] = {name: set() for name in modules}
    problems = []
    for path, name in names.items():
        source_group = group_of(name, package)
        if source_group not in layers:
            problems.append(f"{path.relative_to(root)}: group {source_group!r} has no layer (add it to LAYERS)")
            continue
        for target, line in imports_of(path, name, package, modules):
            if target in graph:
                graph[name].add(target)
            target_group = group_of(target, package)
            if target_group not in layers:
                problems.append(f"{path.relative_to(root)}:{line}: imports {target}, whose group has no layer")
            elif target_group != source_group and layers[target_group] >= layers[source_group]:
                problems.append(f"{path.relative_to(root)}:{line}: {source_group or package} (layer {layers[source_group]}) "
                                f"imports {target} ({target_group or package}, layer {layers[target_group]}): not downward")
    problems += [f"import cycle: {' -> '.join(cycle)}" for cycle in find_cycles(graph)]
    return problems


def find_cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """One cycle (as a closed path of module names) per strongly connected group of two or more modules."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's algorithm
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for child in sorted(graph.get(node, ())):
            if child not in index:
                visit(child)
                low[node] = min(low[node], low[child])
            elif child in on_stack:
                low[node] = min(low[node], index[child])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(component)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_closed_path(graph, sorted(component)) for component in components]


def _closed_path(graph: Mapping[str, set[str]], component: list[str]) -> list[str]:
    """A shortest path start -> ... -> start inside ``component`` (breadth-first search)."""
    members, start = set(component), component[0]
    previous: dict[str, str | None] = {start: None}
    queue = [start]
    for node in queue:  # the queue grows while it is read
        for child in sorted(graph.get(node, ())):
            if child == start:
                path = [node]
                while previous[path[-1]] is not None:
                    path.append(previous[path[-1]])
                return path[::-1] + [start]
            if child in members and child not in previous:
                previous[child] = node
                queue.append(child)
    return component + [start]


def main() -> int:
    problems = find_violations(Path(__file__).resolve().parent.parent)
    for problem in problems:
        print(problem)
    print(f"{len(problems)} layering problem(s)" if problems else "faceprior imports downward only, no cycles")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
