"""The layers of docs/architecture.md, kept true: each folder imports only the layers below it, no import
circles between files, no private names imported across modules, no library file pointing outside the
package's clone.

Run as a script (``python tests/test_architecture.py``) to print lines per folder and the longest import chain.
"""

from __future__ import annotations

import ast
from collections import Counter
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "essence"

#: Layer of each top-level part of the package, lowest first; a module may import its own layer and below.
LAYERS = {
    "version": 0,
    "core": 0,
    "weights": 1,
    "testing": 1,
    "__init__": 1,  # the public API: the kernel and the weights manager (the method only lazily, by name)
    "method": 2,
    "workflows": 3,
    "commands": 4,
    "ui": 4,  # the web page: beside the commands, called by commands/ui.py
    "cli": 5,
    "__main__": 6,
}
#: Folders of plugins by kind; every other folder under plugins/ is one plugin (the toy world).
PLUGIN_KINDS = {"generators", "encoders", "losses", "metrics", "aligners", "inverters"}
#: What a plugin may import besides itself: the public API and the layers under it.
PLUGIN_MAY_IMPORT = {"__init__", "version", "core", "weights", "testing"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports(path: Path, modules: set[str]) -> list[tuple[str, list[str]]]:
    """(imported module, names taken from it) for every import in the file, at module level or inside
    functions; imports under ``if TYPE_CHECKING:`` are annotations only and do not count. ``from pkg import
    sub`` counts as an import of the submodule."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: list[tuple[str, list[str]]] = []

    class Visitor(ast.NodeVisitor):
        def visit_If(self, node: ast.If) -> None:
            if _is_type_checking(node.test):
                for child in node.orelse:
                    self.visit(child)
                return
            self.generic_visit(node)

        def visit_Import(self, node: ast.Import) -> None:
            found.extend((alias.name, []) for alias in node.names)

        def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            names = [a.name for a in node.names]
            subs = [f"{mod}.{n}" for n in names if f"{mod}.{n}" in modules]
            found.extend((s, []) for s in subs)
            rest = [n for n in names if f"{mod}.{n}" not in modules]
            if rest:
                found.append((mod, rest))

    Visitor().visit(ast.parse(path.read_text(encoding="utf-8")))
    return found


def package_graph() -> tuple[dict[str, Path], dict[str, set[str]], dict[str, list[tuple[str, list[str]]]]]:
    files = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
    modules = set(files)
    raw = {m: imports(p, modules) for m, p in files.items()}
    edges = {m: {t for t, _ in found if t in modules and t != m} for m, found in raw.items()}
    return files, edges, raw


FILES, EDGES, RAW = package_graph()


def part(module: str) -> str:
    """The top-level part of the package a module belongs to: core, method, ..., or ``essence`` itself."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def plugin_of(module: str) -> str | None:
    parts = module.split(".")
    if len(parts) < 3 or parts[1] != "plugins":
        return None
    return ".".join(parts[:4] if parts[2] in PLUGIN_KINDS and len(parts) >= 4 else parts[:3])


def upward_imports(edges: dict[str, set[str]]) -> list[str]:
    bad = []
    for m, targets in edges.items():
        plugin = plugin_of(m)
        for t in sorted(targets):
            if plugin is not None or part(m) == "plugins":
                own = plugin is not None and (t == plugin or t.startswith(plugin + "."))
                if not own and part(t) not in PLUGIN_MAY_IMPORT and t != "essence.plugins":
                    bad.append(f"{m} -> {t} (a plugin uses the public API and the kernel, not {part(t)}/)")
                continue
            if part(t) == "plugins":
                bad.append(f"{m} -> {t} (only the plugin host loads plugins, by name)")
            elif LAYERS[part(t)] > LAYERS[part(m)]:
                bad.append(f"{m} -> {t} ({part(m)} is below {part(t)})")
    return bad


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
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

    for v in edges:
        if v not in index:
            visit(v)
    return found


def longest_chain(edges: dict[str, set[str]]) -> list[str]:
    memo: dict[str, list[str]] = {}

    def chain(m: str) -> list[str]:
        if m not in memo:
            memo[m] = [m] + max((chain(t) for t in edges[m]), key=len, default=[])
        return memo[m]

    return max((chain(m) for m in edges), key=len)


def test_every_module_has_a_layer():
    unknown = sorted({part(m) for m in FILES} - set(LAYERS) - {"plugins"})
    assert not unknown, f"add these folders to docs/architecture.md and LAYERS: {unknown}"


def test_no_layer_imports_a_higher_one():
    bad = upward_imports(EDGES)
    assert not bad, "imports against the layers (docs/architecture.md):\n" + "\n".join(bad)


def test_no_import_circles_between_files():
    assert cycles(EDGES) == []


def test_the_checks_catch_what_they_look_for():
    edges = {k: set(v) for k, v in EDGES.items()}
    edges["essence.core.registry"].add("essence.method.engine")
    edges["essence.plugins.losses.paper"].add("essence.workflows.apply")
    edges["essence.method.runner"].add("essence.plugins.toy")
    assert {"essence.core.registry", "essence.method.engine"} <= {m for c in cycles(edges) for m in c}
    bad = upward_imports(edges)
    assert any(b.startswith("essence.core.registry -> essence.method.engine") for b in bad)
    assert any(b.startswith("essence.plugins.losses.paper -> essence.workflows.apply") for b in bad)
    assert any(b.startswith("essence.method.runner -> essence.plugins.toy") for b in bad)


def test_private_names_stay_in_their_module():
    bad = [
        f"{m} imports {t}.{n}"
        for m, found in RAW.items()
        for t, names in found
        if t.startswith("essence") and t != m
        for n in names
        if n.startswith("_") and not n.startswith("__")
    ]
    assert not bad, "make what is shared public in its layer:\n" + "\n".join(bad)


def test_no_library_file_points_outside_the_clone():
    bad = [str(p) for p in PACKAGE.rglob("*") if p.is_file() and p.suffix in (".py", ".json") and "../shared" in p.read_text()]
    assert not bad


@pytest.mark.parametrize("name", ["essence.core", "essence.method", "essence.workflows", "essence.weights"])
def test_layer_packages_import_no_torch(name):
    import subprocess
    import sys

    code = f"import sys, {name}; assert 'torch' not in sys.modules, 'torch imported by {name}'"
    subprocess.run([sys.executable, "-c", code], check=True)


if __name__ == "__main__":
    lines: Counter[str] = Counter()
    for m, p in FILES.items():
        lines[str(p.parent.relative_to(PACKAGE.parent))] += len(p.read_text(encoding="utf-8").splitlines())
    for folder in sorted(lines):
        print(f"{lines[folder]:6d}  {folder}")
    chain = longest_chain({m: {t for t in ts if t != "essence"} for m, ts in EDGES.items() if m != "essence"})
    print(f"longest import chain ({len(chain) - 1} imports): " + " -> ".join(chain))
    print(f"circles: {cycles(EDGES) or 'none'}")
