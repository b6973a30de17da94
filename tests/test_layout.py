"""The layout's rules: pipelines are independent, nothing under mirflow but its CLI
imports Prefect, flows or tasks (and the CLI loads a flow only when it runs one), and
no module imports itself back through others."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("mirflow", "tasks", "flows")


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for package in PACKAGES for p in (REPO / package).rglob("*.py")}


def _imports(path: Path, known: set[str]) -> set[str]:
    """Every module ``path`` imports, at module level or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names if f"{node.module}.{alias.name}" in known}
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(path, set(modules)) for name, path in modules.items()}


def _under(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def test_pipelines_never_import_each_other():
    for module, imported in _graph().items():
        if _under(module, "mirflow.pipelines") and module.count(".") >= 2:
            own = ".".join(module.split(".")[:3])
            others = {m for m in imported if _under(m, "mirflow.pipelines") and not _under(m, own)}
            assert not others, f"{module} imports another pipeline: {sorted(others)}"


def test_only_the_cli_imports_prefect_flows_or_tasks():
    for module, imported in _graph().items():
        if _under(module, "mirflow") and not _under(module, "mirflow.cli"):
            bad = {m for m in imported if any(_under(m, p) for p in ("prefect", "prefect_dask", "flows", "tasks"))}
            assert not bad, f"{module} imports {sorted(bad)}: stage logic stays plain (only mirflow.cli may)"


def test_no_import_cycles():
    graph = {module: {m for m in imported if m in _modules()} for module, imported in _graph().items()}
    # A package importing its own submodules is how packages work, not a cycle.
    edges = {m: {i for i in imported if not _under(i, m)} for m, imported in graph.items()}
    state: dict[str, int] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(edges[module]):
            assert state.get(target) != 1, "import cycle: " + " -> ".join([*path[path.index(target):], target])
            if target not in state:
                visit(target, [*path, target])
        state[module] = 2

    for module in sorted(edges):
        if module not in state:
            visit(module, [module])


def test_the_cli_loads_no_flow_and_no_prefect_until_a_flow_runs():
    check = ("import sys\nfrom mirflow.cli import build_parser\nbuild_parser()\n"
             "print(sorted(m for m in sys.modules if m.split('.')[0] in ('prefect', 'tasks') or m.startswith('flows.')))")
    result = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, cwd=REPO, check=True)
    assert result.stdout.strip() == "[]"
