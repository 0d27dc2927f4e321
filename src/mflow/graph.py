"""The dependency graph of a flow: dependents, cycles, descendants, and text/DOT/Mermaid output."""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Iterable, Mapping, Sequence


class Graph:
    """Tasks in file order, each with the ids it depends on (all known, no cycle assumed)."""

    def __init__(self, depends: Mapping[str, Sequence[str]]):
        self.depends = depends
        self.dependents: dict[str, list[str]] = {task: [] for task in depends}
        for task, deps in depends.items():
            for dep in dict.fromkeys(deps):  # a repeated dependency is one edge
                if dep in self.dependents:
                    self.dependents[dep].append(task)

    def _known_dependency_counts(self) -> dict[str, int]:
        """Distinct dependencies per task, leaving out unknown ids (reported elsewhere)."""
        return {
            task: len({d for d in deps if d in self.dependents})
            for task, deps in self.depends.items()
        }

    @property
    def edge_count(self) -> int:
        return sum(len(deps) for deps in self.dependents.values())

    def descendants(self, roots: Iterable[str]) -> list[str]:
        """Every task reachable from `roots` through dependents (roots excluded), BFS order."""
        seen = set(roots)
        queue = deque(seen)
        found = []
        while queue:
            for child in self.dependents[queue.popleft()]:
                if child not in seen:
                    seen.add(child)
                    found.append(child)
                    queue.append(child)
        return found

    def layers(self) -> list[list[str]]:
        """Tasks grouped by depth: layer 0 has no dependencies. Raises if there is a cycle."""
        remaining = self._known_dependency_counts()
        current = [task for task, count in remaining.items() if count == 0]
        layers = []
        while current:
            layers.append(current)
            following = []
            for task in current:
                for child in self.dependents[task]:
                    remaining[child] -= 1
                    if remaining[child] == 0:
                        following.append(child)
            current = following
        if sum(map(len, layers)) != len(self.depends):
            raise ValueError("the graph has a cycle")
        return layers

    def cycles(self) -> list[list[str]]:
        """One path per cycle, written as 'a depends on b depends on ... a'."""
        remaining = self._known_dependency_counts()
        queue = deque(task for task, count in remaining.items() if count == 0)
        while queue:
            for child in self.dependents[queue.popleft()]:
                remaining[child] -= 1
                if remaining[child] == 0:
                    queue.append(child)
        stuck = {task for task, count in remaining.items() if count > 0}
        visited: set[str] = set()
        found = []
        for start in self.depends:  # file order, so the report is stable
            if start not in stuck or start in visited:
                continue
            path: list[str] = []
            on_path: dict[str, int] = {}
            node = start
            while node not in visited:
                visited.add(node)
                on_path[node] = len(path)
                path.append(node)
                node = next(dep for dep in self.depends[node] if dep in stuck)
            if node in on_path:  # closed a new cycle (else it leads into one already found)
                found.append([*path[on_path[node] :], node])
        return found


def render_text(graph: Graph) -> str:
    lines = []
    for depth, layer in enumerate(graph.layers()):
        lines.append(f"layer {depth}:")
        for task in layer:
            deps = graph.depends[task]
            lines.append(f"  {task}" + (f"  <- {', '.join(deps)}" if deps else ""))
    return "\n".join(lines)


def render_dot(graph: Graph) -> str:
    lines = ["digraph mflow {", "  rankdir=LR;", "  node [shape=box];"]
    lines += [f"  {json.dumps(task)};" for task in graph.depends]
    for task, deps in graph.depends.items():
        lines += [f"  {json.dumps(dep)} -> {json.dumps(task)};" for dep in dict.fromkeys(deps)]
    lines.append("}")
    return "\n".join(lines)


def render_mermaid(graph: Graph) -> str:
    # Mermaid ids must be simple words; the task id is shown as the label.
    ident = {task: f"t{index}" for index, task in enumerate(graph.depends)}
    lines = ["flowchart LR"]
    lines += [f'  {ident[task]}["{task.replace(chr(34), "#quot;")}"]' for task in graph.depends]
    for task, deps in graph.depends.items():
        lines += [f"  {ident[dep]} --> {ident[task]}" for dep in dict.fromkeys(deps)]
    return "\n".join(lines)


RENDERERS = {"text": render_text, "dot": render_dot, "mermaid": render_mermaid}
