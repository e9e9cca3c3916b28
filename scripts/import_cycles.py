"""Fail when any module of the project imports itself through others (an import circle).

    python scripts/import_cycles.py

`make lint` runs it beside `lint-imports` (the layer contract in pyproject.toml): the
layers forbid upward imports between packages, this forbids circles inside one. Imports
under `if TYPE_CHECKING:` do not count (they never run).
"""

from __future__ import annotations

import sys

import grimp

PACKAGES = ("api", "workers", "workflows", "activities", "helpdesk", "models")


def cycles() -> list[list[str]]:
    graph = grimp.build_graph(*PACKAGES, exclude_type_checking_imports=True)
    modules = sorted(graph.modules)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0

    def visit(start: str) -> None:
        # Tarjan's strongly connected components, iteratively (deep graphs).
        nonlocal counter
        work = [(start, iter(sorted(graph.find_modules_directly_imported_by(start))))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append(
                        (child, iter(sorted(graph.find_modules_directly_imported_by(child))))
                    )
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
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

    for module in modules:
        if module not in index:
            visit(module)
    return found


def main() -> int:
    found = cycles()
    for component in found:
        print("import circle: " + " <-> ".join(component))
    if found:
        return 1
    print("no import circle")
    return 0


if __name__ == "__main__":
    sys.exit(main())
