"""Cache keys: what a stage's output depends on, hashed.

A key covers (1) the input data's content, (2) the stage parameters and (3) the code
of the stage function *and of every project function it calls*. Prefect's own
input-based cache hashes path strings and ignores code edits; these keys do not.

Hand-written on purpose: the libraries that key on code hash the decorated function's
own source only — Prefect's ``TASK_SOURCE`` policy says so, and ``joblib.Memory`` checks
the cached function's code, not what it calls — so editing a helper such as
``features.extract_clip`` would silently reuse stale artifacts. Input files are
fingerprinted by size+mtime or content, never by path.

A project module that a function imports in its body (heavy ones, such as the torch
models, are imported where they are used so that importing the flows stays fast) is
covered as a whole file, with the project modules it imports in turn: its objects are
not at hand until it is imported, and hashing must not import it.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import hashlib
import importlib.util
import inspect
import json
import os
import textwrap
import threading
import types
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Literal

PROJECT_PACKAGES = ("mirflow",)
FingerprintMode = Literal["stat", "content"]


def stable_hash(obj: Any) -> str:
    """sha256 of a canonical JSON form (dataclasses and pydantic models included)."""
    return hashlib.sha256(json.dumps(_canonical(obj), sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _canonical(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return _canonical(dataclasses.asdict(obj))
    if hasattr(obj, "model_dump"):
        return _canonical(obj.model_dump(mode="json"))
    if isinstance(obj, dict):
        return {str(k): _canonical(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_canonical(v) for v in obj]
    if isinstance(obj, (set, frozenset)):
        return sorted(_canonical(v) for v in obj)
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, float) and obj != obj:
        return "NaN"
    return obj


def file_fingerprint(path: str | Path, root: str | Path, mode: FingerprintMode = "stat") -> tuple[str, str]:
    """(path relative to ``root``, fingerprint). ``stat`` = size+mtime (fast, the default);
    ``content`` = sha256 of the bytes (survives copies and touch)."""
    path = Path(path)
    rel = os.path.relpath(path, root)
    if mode == "content":
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        return rel, "sha256:" + digest.hexdigest()
    st = path.stat()
    return rel, f"stat:{st.st_size}:{st.st_mtime_ns}"


_PARSE_LOCK = threading.Lock()


def code_hash(func: Callable, packages: Iterable[str] = PROJECT_PACKAGES) -> str:
    """Hash the source of ``func`` and, transitively, of the project functions and
    classes it refers to (``features.extract_clip`` included), so editing any of them
    changes every key that depends on it."""
    # inspect.getsource parses with ast, and CPython 3.11 can fail ("AST constructor
    # recursion depth mismatch") when threads parse at once: task threads take turns.
    with _PARSE_LOCK:
        return _code_hash(func, tuple(packages))


def _code_hash(func: Callable, packages: tuple[str, ...]) -> str:
    # The stage function itself always counts, wherever it is defined.
    packages = (*tuple(packages), func.__module__)
    sources: dict[str, str] = {}
    _collect(func, packages, sources)
    return hashlib.sha256("\n".join(f"{k}\n{v}" for k, v in sorted(sources.items())).encode()).hexdigest()


def _is_project(obj: Any, packages: tuple[str, ...]) -> bool:
    module = getattr(obj, "__module__", None) or getattr(obj, "__name__", "")
    return isinstance(module, str) and _in_packages(module, packages)


def _in_packages(module: str, packages: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def _collect(obj: Any, packages: tuple[str, ...], sources: dict[str, str]) -> None:
    obj = inspect.unwrap(obj) if callable(obj) else obj
    name = f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"
    if name in sources or not _is_project(obj, packages):
        return
    sources[name] = _source(obj)
    for module in _imports(sources[name], obj.__module__, packages):
        _collect_module(module, packages, sources)
    if isinstance(obj, type):
        for member in vars(obj).values():
            member = getattr(member, "__func__", member)
            if isinstance(member, types.FunctionType):
                _follow_names(member, packages, sources)
    elif isinstance(obj, types.FunctionType):
        _follow_names(obj, packages, sources)


@functools.lru_cache(maxsize=4096)
def _source(obj: Any) -> str:
    """Source text of a function or class object. Cached per object: a module edited
    and reloaded yields new objects, so edits are still seen, while every task of a
    run no longer re-reads and re-parses the same files."""
    try:
        return inspect.getsource(obj)
    except (OSError, TypeError):
        return repr(obj)


def _code_names(code: types.CodeType) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _code_names(const)
    return names


def _follow_names(func: types.FunctionType, packages: tuple[str, ...], sources: dict[str, str]) -> None:
    names = _code_names(func.__code__)
    scope = dict(func.__globals__)
    if func.__closure__:
        scope.update({n: c.cell_contents for n, c in zip(func.__code__.co_freevars, func.__closure__) if _filled(c)})
    for name in names:
        target = scope.get(name)
        if isinstance(target, types.ModuleType):
            if _is_project(target, packages):
                # module.attr access: follow the attributes this function names
                for attr in names:
                    member = getattr(target, attr, None)
                    if member is not None and (inspect.isfunction(member) or inspect.isclass(member)):
                        _collect(member, packages, sources)
        elif inspect.isfunction(target) or inspect.isclass(target):
            _collect(target, packages, sources)


def _collect_module(name: str, packages: tuple[str, ...], sources: dict[str, str]) -> None:
    """A project module's whole source and, transitively, that of the project modules it imports."""
    key = f"module {name}"
    if key in sources:
        return
    spec = importlib.util.find_spec(name)  # imports the parent packages only
    if spec is None or not (spec.origin or "").endswith(".py"):
        return
    with open(spec.origin, encoding="utf-8") as f:
        text = f.read()
    sources[key] = text
    package = name if spec.submodule_search_locations is not None else name.rpartition(".")[0]
    for module in _imports(text, package, packages, is_package=True):
        _collect_module(module, packages, sources)


@functools.lru_cache(maxsize=4096)
def _imports(source: str, context: str, packages: tuple[str, ...], is_package: bool = False) -> frozenset[str]:
    """The project modules that ``import`` statements in ``source`` may load: for
    ``from package import name``, the submodule ``package.name`` when there is one.
    ``context`` is the module the code lies in (or, with ``is_package``, its package),
    for relative imports. Cached: the same source always imports the same modules."""
    try:
        tree = ast.parse(textwrap.dedent(source))
    except SyntaxError:  # a repr() standing in for source that could not be found
        return frozenset()
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if _in_packages(alias.name, packages))
        elif isinstance(node, ast.ImportFrom):
            package = context if is_package else context.rpartition(".")[0]
            base = importlib.util.resolve_name("." * node.level + (node.module or ""), package) if node.level else node.module
            if _in_packages(base, packages):
                found.add(base)
                found.update(f"{base}.{alias.name}" for alias in node.names if _is_submodule(base, alias.name))
    return frozenset(found)


def _is_submodule(package: str, name: str) -> bool:
    """Whether ``package.name`` is a module, found without importing ``package``."""
    spec = importlib.util.find_spec(package)  # imports the parents of ``package`` only
    folders = (spec and spec.submodule_search_locations) or ()
    return any(Path(folder, f"{name}.py").is_file() or Path(folder, name, "__init__.py").is_file() for folder in folders)


def _filled(cell: types.CellType) -> bool:
    try:
        cell.cell_contents
    except ValueError:
        return False
    return True


def stage_key(stage: str, func: Callable, params: Any, inputs: Any) -> str:
    """The content address of a stage output."""
    return stable_hash({"stage": stage, "code": code_hash(func), "params": params, "inputs": inputs})
