"""The architecture, checked from the code itself (docs/architecture.md describes it):

- no import circle between fusion_bench's modules (module-level imports; an import inside a function runs when the
  function is called and an `if TYPE_CHECKING:` import never runs, so neither can make a circle at import time);
- the layers import downwards only (imports at any level count): the error types and the sample vocabulary import
  nothing; data, metrics, ops, base, evaluators and the registry never import the benchmark, the report or the
  command line; the benchmark never imports the report or the command line; nothing in the library imports the
  command line (only the console entry point starts it);
- methods/ and datamodules/ use the package's lower layers only (never the benchmark, the report or the CLI);
- every module of fusion_bench says what it owns (a module docstring);
- no module of the library (fusion_bench, methods, datamodules) is longer than one sitting's read.

Importing a submodule also imports its parent packages; those implicit edges are not counted (a package's
__init__ importing its own submodules is how packages work).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "fusion_bench"

MAX_LINES = 600
LONG_MODULES: dict[str, str] = {
    # "methods/<name>/model.py": "mirrors the authors' <file> (keeps their structure for diffs against it)",
}
"""Modules allowed above MAX_LINES, each with the reason: only a file that mirrors one authors' network file."""

LOW_LAYERS = ("errors", "types", "numerics", "registry", "interventions", "ops", "metrics", "data", "base",
              "weights", "evaluators")
FORBIDDEN: dict[tuple[str, ...], tuple[str, ...]] = {
    # importing group(s) -> groups they must never import
    ("errors",): ("*",),
    ("types",): ("*",),
    LOW_LAYERS: ("benchmark", "report", "cli"),
    ("benchmark",): ("report", "cli"),
    ("report",): ("cli",),
}
CLI_STARTERS = ("fusion_bench.launcher", "fusion_bench.__main__")  # the console entry point, above the CLI


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def group(module: str) -> str:
    """fusion_bench.<group>...: the layer a module belongs to."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _resolve(name: str) -> str | None:
    """The fusion_bench module an imported name refers to (a module, or the module that defines the name)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _is_type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def imports(module: str, top_level: bool) -> set[str]:
    """The fusion_bench modules `module` imports: at module level only (not inside functions or TYPE_CHECKING
    blocks), or anywhere."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(), str(path))
    if top_level:
        nodes: list[ast.AST] = []
        pending = list(tree.body)
        while pending:
            node = pending.pop()
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) or _is_type_checking(node):
                continue
            nodes.append(node)
            pending += [child for child in ast.iter_child_nodes(node) if isinstance(child, ast.stmt)]
    else:
        nodes = list(ast.walk(tree))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in nodes:
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            names = [f"{base}.{alias.name}" for alias in node.names]
        for name in names:
            if name.startswith("fusion_bench"):
                target = _resolve(name)
                if target is not None and target != module:
                    found.add(target)
    return found


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of `graph` as [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            cycle = visit(start)
            if cycle:
                return cycle
    return None


def test_the_cycle_finder_finds_a_circle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_no_import_circle_between_modules():
    graph = {module: imports(module, top_level=True) for module in MODULES}
    cycle = find_cycle(graph)
    assert cycle is None, "import circle: " + " -> ".join(cycle or [])


def test_layers_import_downwards_only():
    problems = []
    for module in MODULES:
        for importers, forbidden in FORBIDDEN.items():
            if group(module) not in importers:
                continue
            for target in imports(module, top_level=False):
                if "*" in forbidden or group(target) in forbidden:
                    problems.append(f"{module} imports {target}")
    assert not problems, "layering: " + "; ".join(sorted(problems))


def test_the_library_never_imports_the_command_line():
    importers = [module for module in MODULES if group(module) != "cli" and module not in CLI_STARTERS
                 and any(group(target) == "cli" for target in imports(module, top_level=False))]
    assert not importers, f"the library imports fusion_bench.cli: {importers}"


def test_methods_and_datamodules_use_the_lower_layers_only():
    problems = []
    for path in sorted([*(ROOT / "methods").rglob("*.py"), *(ROOT / "datamodules").rglob("*.py")]):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            problems += [f"{path.relative_to(ROOT)} imports {name}" for name in names
                         if group(name) in ("benchmark", "report", "cli") and name.startswith("fusion_bench.")]
    assert not problems, "; ".join(problems)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_every_module_says_what_it_owns(module):
    assert ast.get_docstring(ast.parse(MODULES[module].read_text())), f"{MODULES[module]} has no module docstring"


def test_no_module_is_longer_than_one_sitting():
    paths = [p for tree in ("fusion_bench", "methods", "datamodules") for p in sorted((ROOT / tree).rglob("*.py"))]
    long = {str(p.relative_to(ROOT)): len(p.read_text().splitlines()) for p in paths}
    too_long = {p: n for p, n in long.items() if n > MAX_LINES and p not in LONG_MODULES}
    assert not too_long, f"modules above {MAX_LINES} lines (split them by concern, or list one that mirrors an " \
                         f"authors' network file in LONG_MODULES): {too_long}"
    stale = [p for p in LONG_MODULES if long.get(p, 0) <= MAX_LINES]
    assert not stale, f"LONG_MODULES entries that are no longer long (or gone): {stale}"
