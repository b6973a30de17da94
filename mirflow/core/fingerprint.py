"""Cache keys: what a stage's output depends on, hashed.

A key covers (1) the input data's content, (2) the stage parameters, (3) the code of
the stage function *and of every project function, class and constant it reaches* and
(4) the versions of the numeric libraries (``LIBRARIES``). Prefect's own input-based
cache hashes path strings and ignores code edits; these keys do not.

Hand-written on purpose: the libraries that key on code hash the decorated function's
own source only — Prefect's ``TASK_SOURCE`` policy says so, and ``joblib.Memory`` checks
the cached function's code, not what it calls — so editing a helper such as
``features.extract_clip`` would silently reuse stale artifacts. Input files are
fingerprinted by size+mtime or content, never by path.

What "reaches" means, from the stage function on:
- a name or ``module.attr`` bound to a project function or class: its source, and so on
  from there (a class's source has its defaults, bases and decorators);
- any other module-level name (a constant, a table, an instance, a decorated function, a
  library function imported under a name): every top-level statement of its module that
  mentions it, that module's bare top-level calls (they may update it), the import that
  brought it in, and what those statements name; project classes and functions held in
  it (a registry such as ``mirflow.models.MODELS``) are followed by value too. A name no
  statement binds falls back to the whole module file;
- a project module a function imports in its body (heavy ones, such as the torch models,
  are imported where they are used so that importing the flows stays fast): the whole
  file, with the project modules it imports in turn, found without importing anything.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import hashlib
import importlib.metadata
import importlib.util
import inspect
import json
import os
import sys
import textwrap
import threading
import types
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Literal

PROJECT_PACKAGES = ("mirflow",)
FingerprintMode = Literal["stat", "content"]
_JSON_SCALARS = frozenset({str, int, bool, type(None)})  # their canonical form is themselves


def stable_hash(obj: Any) -> str:
    """sha256 of a canonical JSON form (dataclasses and pydantic models included)."""
    return hashlib.sha256(json.dumps(_canonical(obj), sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _canonical(obj: Any) -> Any:
    if type(obj) in _JSON_SCALARS:  # first: keys hash every input file's record
        return obj
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

# The libraries that compute the numbers: every stage's key covers their versions (coarse,
# but a result computed under one librosa is then never served under another).
LIBRARIES = ("numpy", "scipy", "pandas", "librosa", "numba", "soundfile", "torch", "scikit-learn", "pyarrow", "h5py")


def code_hash(func: Callable, packages: Iterable[str] = PROJECT_PACKAGES) -> str:
    """Hash the source of ``func`` and, transitively, of the project code it refers to:
    functions and classes reached by name, classes held in registries, module-level
    constants and the statements that build them (see ``_collect``), so editing any of
    them changes every key that depends on it."""
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


@functools.cache
def library_versions() -> dict[str, str | None]:
    """The installed versions of ``LIBRARIES`` (None: not installed), read once per process."""
    return {name: _installed_version(name) for name in LIBRARIES}


def _installed_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def stage_parts(code: str, params: Any, inputs: Any) -> dict[str, str]:
    """What a stage's key covers, each part hashed: its code (``code_hash`` of the stage
    function), the library versions, its parameters and its inputs (data fingerprints,
    upstream keys)."""
    return {
        "code": code,
        "libraries": stable_hash(library_versions()),
        "params": stable_hash(params),
        "inputs": stable_hash(inputs),
    }


def stage_key(stage: str, parts: dict[str, str]) -> str:
    """The content address of a stage output, from its ``stage_parts``."""
    return stable_hash({"stage": stage, **parts})


def _is_project(obj: Any, packages: tuple[str, ...]) -> bool:
    module = getattr(obj, "__module__", None) or getattr(obj, "__name__", "")
    return isinstance(module, str) and _in_packages(module, packages)


def _in_packages(module: str, packages: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def _is_code(obj: Any) -> bool:
    return inspect.isfunction(obj) or inspect.isclass(obj)


def _collect(obj: Any, packages: tuple[str, ...], sources: dict[str, str]) -> None:
    """A project function or class: its source, then whatever its source names (module
    globals, ``module.attr``, closure variables, default values, base classes, decorators)."""
    obj = inspect.unwrap(obj) if callable(obj) else obj
    name = f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"
    if name in sources or not _is_project(obj, packages):
        return
    sources[name] = _source(obj)
    for module in _imports(sources[name], obj.__module__, packages):
        _collect_module(module, packages, sources)
    names = set(_names(sources[name]))
    module = sys.modules.get(obj.__module__)
    scope = obj.__globals__ if isinstance(obj, types.FunctionType) else vars(module) if module else {}
    if isinstance(obj, types.FunctionType):
        names |= _code_names(obj.__code__)
        for cell in obj.__closure__ or ():  # closure variables' values are in the enclosing source
            if _filled(cell) and _is_code(cell.cell_contents):
                _collect(cell.cell_contents, packages, sources)
    _follow_names(names, scope, obj.__module__, packages, sources)


@functools.lru_cache(maxsize=4096)
def _source(obj: Any) -> str:
    """Source text of a function or class object. Cached per object: a module edited
    and reloaded yields new objects, so edits are still seen, while every task of a
    run no longer re-reads and re-parses the same files."""
    found = _source_in_module(obj)
    if found is not None:
        return found
    try:
        return inspect.getsource(obj)
    except (OSError, TypeError):
        return repr(obj)


def _source_in_module(obj: Any) -> str | None:
    """The definition of ``obj`` in its module's file, from one parse of that file (what
    ``inspect.getsource`` finds, without its tokenizing and parsing per object); None
    where the object was not defined there (made by ``exec``, say)."""
    path = getattr(sys.modules.get(obj.__module__), "__file__", None)
    function = isinstance(obj, types.FunctionType)
    if not path or not path.endswith(".py") or (function and obj.__code__.co_filename != path):
        return None
    found = _definitions(_read(Path(path))).get(obj.__qualname__)
    if found is None or (function and obj.__code__.co_firstlineno != found[0]):
        return None
    return found[1]


@functools.lru_cache(maxsize=512)
def _module_tree(text: str) -> ast.Module:
    """One parse per module text, shared by ``_definitions``, ``_bindings`` and ``_imports``."""
    return ast.parse(text)


# The syntax tree of each function's or class's source, from its module's parse, so that
# ``_tree`` does not parse that source again (parsing was most of a fresh process's keys).
_DEFINITION_TREES: dict[str, ast.stmt] = {}


@functools.lru_cache(maxsize=512)
def _definitions(text: str) -> dict[str, tuple[int, str]]:
    """qualified name -> (first line, source) of every function and class in a module."""
    lines = text.splitlines(keepends=True)
    found: dict[str, tuple[int, str]] = {}

    def visit(body: list[ast.stmt], prefix: str) -> None:
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                first = _first_line(node)
                found[prefix + node.name] = (first, "".join(lines[first - 1 : node.end_lineno]))
                _DEFINITION_TREES.setdefault(found[prefix + node.name][1], node)
                inner = "." if isinstance(node, ast.ClassDef) else ".<locals>."
                visit(node.body, f"{prefix}{node.name}{inner}")

    visit(_module_tree(text).body, "")
    return found


def _first_line(node: ast.stmt) -> int:
    """A statement's first line, its decorators' included."""
    return min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", ())])


def _code_names(code: types.CodeType) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _code_names(const)
    return names


@functools.lru_cache(maxsize=4096)
def _names(source: str) -> frozenset[str]:
    """The names and attribute names in ``source``, but not in function signatures'
    annotations (never evaluated here: ``from __future__ import annotations``)."""
    tree = _tree(source)
    return frozenset(_walk_names(tree)) if tree else frozenset()


@functools.lru_cache(maxsize=4096)
def _tree(source: str) -> ast.AST | None:
    """The syntax tree of a function's or class's source; None for a repr() standing in
    for source that could not be found."""
    if source in _DEFINITION_TREES:
        return _DEFINITION_TREES[source]
    try:
        return _module_tree(textwrap.dedent(source))  # a whole module's text: its one parse
    except SyntaxError:
        return None


def _walk_names(node: ast.AST) -> Iterator[str]:
    if isinstance(node, ast.Name):
        yield node.id
    elif isinstance(node, ast.Attribute):
        yield node.attr
    elif isinstance(node, ast.alias):
        yield (node.asname or node.name).partition(".")[0]
    for field, value in ast.iter_fields(node):
        if field in ("annotation", "returns") and isinstance(node, (ast.arg, ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for child in value if isinstance(value, list) else [value]:
            if isinstance(child, ast.AST):
                yield from _walk_names(child)


def _follow_names(names: Iterable[str], scope: dict, module: str, packages: tuple[str, ...], sources: dict[str, str]) -> None:
    """Follow each of ``names`` bound in ``scope`` (the globals of project module ``module``)."""
    names = frozenset(names)
    seen: set[str] = set()
    for name in names:
        if name in scope and not (name.startswith("__") and name.endswith("__")):  # __name__, __file__, …
            _follow_value(module, name, scope[name], names, packages, sources, seen)


def _follow_value(module: str, name: str, value: Any, names: frozenset[str], packages: tuple[str, ...],
                  sources: dict[str, str], seen: set[str]) -> None:
    if isinstance(value, types.ModuleType):
        # module.attr access: follow the attributes the code names
        if _is_project(value, packages) and value.__name__ not in seen:
            seen.add(value.__name__)
            for attr in names:
                if attr in vars(value):
                    _follow_value(value.__name__, attr, vars(value)[attr], names, packages, sources, seen)
    elif _is_code(value) and _is_project(value, packages):
        _collect(value, packages, sources)
    else:  # a constant, an instance, a decorated function, a library's function
        _collect_binding(module, name, packages, sources)


def _collect_binding(module: str, name: str, packages: tuple[str, ...], sources: dict[str, str]) -> None:
    """A module-level name that is not a project function or class: the module's
    top-level statements that mention it (its assignment, later updates, the import
    that brought it in), with its module's bare top-level calls, and what those name in
    turn. A registry's project classes are also followed by value (a decorator may have
    put them there). A name no statement binds (``globals()[...] = ...``) falls back to
    the whole module file."""
    key = f"binding {module}:{name}"
    if key in sources:
        return
    located = _module_file(module)
    if located is None:
        return
    bindings = _bindings(_read(located[0]))
    if name not in bindings.statements and name not in bindings.imports:
        _collect_module(module, packages, sources)
        return
    statements = bindings.statements.get(name, ())
    if statements:
        statements += bindings.calls
    origin = bindings.imports.get(name)
    if origin:
        package = module if located[1] else module.rpartition(".")[0]
        origin = (importlib.util.resolve_name(origin[0], package), origin[1])
        statements += (f"from {origin[0]} import {origin[1]}",)
    sources[key] = "\n".join(statements)
    if origin and _in_packages(origin[0], packages):
        _collect_binding(*origin, packages, sources)
    live = sys.modules.get(module)
    if live is None:
        _collect_module(module, packages, sources)
        return
    scope = vars(live)
    _follow_names(set().union(*map(_names, statements)), scope, module, packages, sources)
    value = scope.get(name)
    for member in _registered(value) if isinstance(value, dict) else ():
        if _is_project(member, packages):
            _collect(member, packages, sources)


def _registered(value: Any, depth: int = 3) -> Iterator[Any]:
    """Functions and classes held in a registry: a dict, its keys and values (nested
    dicts and tuples included). Lists and sets are left alone: those are filled at run
    time (listeners, caches), and a key must not change during a run."""
    if _is_code(value):
        yield value
    elif depth and isinstance(value, (dict, tuple)):
        for item in (*value.keys(), *value.values()) if isinstance(value, dict) else value:
            if _is_code(item) or isinstance(item, (dict, tuple)):
                yield from _registered(item, depth - 1)


@dataclasses.dataclass(frozen=True)
class _Bindings:
    statements: dict[str, tuple[str, ...]]  # name -> top-level statements mentioning it
    imports: dict[str, tuple[str, str]]  # name -> (module, relative or not; name) it was imported as
    calls: tuple[str, ...]  # bare top-level expressions (calls that may update constants)


@functools.lru_cache(maxsize=512)
def _bindings(text: str) -> _Bindings:
    """Index of a module's top-level statements by the names they mention. Cached per
    text: the same source always gives the same index."""
    tree = _module_tree(text)
    lines = text.splitlines(keepends=True)
    statements: dict[str, list[str]] = {}
    imports: dict[str, tuple[str, str]] = {}
    calls: list[str] = []
    for node in tree.body:
        segment = "".join(lines[_first_line(node) - 1 : node.end_lineno])
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            mentioned = {node.name}
        elif isinstance(node, ast.ImportFrom):
            for alias in node.names:
                imports[alias.asname or alias.name] = ("." * node.level + (node.module or ""), alias.name)
            continue
        elif isinstance(node, ast.Import):
            continue  # modules: followed as modules where they are used
        elif isinstance(node, ast.Expr):
            if not isinstance(node.value, ast.Constant):  # a docstring changes nothing
                calls.append(segment)
            continue
        else:
            mentioned = set(_walk_names(node))
        for name in mentioned:
            statements.setdefault(name, []).append(segment)
    return _Bindings({k: tuple(v) for k, v in statements.items()}, imports, tuple(calls))


def _collect_module(name: str, packages: tuple[str, ...], sources: dict[str, str]) -> None:
    """A project module's whole source and, transitively, that of the project modules it imports."""
    key = f"module {name}"
    if key in sources:
        return
    located = _module_file(name)
    if located is None:
        return
    path, is_package = located
    sources[key] = text = _read(path)
    package = name if is_package else name.rpartition(".")[0]
    for module in _imports(text, package, packages, is_package=True):
        _collect_module(module, packages, sources)


@functools.lru_cache(maxsize=4096)
def _imports(source: str, context: str, packages: tuple[str, ...], is_package: bool = False) -> frozenset[str]:
    """The project modules that ``import`` statements in ``source`` may load: for
    ``from package import name``, the submodule ``package.name`` when there is one.
    ``context`` is the module the code lies in (or, with ``is_package``, its package),
    for relative imports. Cached: the same source always imports the same modules."""
    found: set[str] = set()
    for node in ast.walk(_tree(source) or ast.Module(body=[], type_ignores=[])):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if _in_packages(alias.name, packages))
        elif isinstance(node, ast.ImportFrom):
            package = context if is_package else context.rpartition(".")[0]
            base = importlib.util.resolve_name("." * node.level + (node.module or ""), package) if node.level else node.module
            if _in_packages(base, packages):
                found.add(base)
                found.update(f"{base}.{alias.name}" for alias in node.names if _module_file(f"{base}.{alias.name}"))
    return frozenset(found)


def _module_file(name: str) -> tuple[Path, bool] | None:
    """(source file, whether it is a package) of module ``name``, found without importing
    it or its parent packages (importing ``mirflow.models`` would load torch)."""
    top, _, rest = name.partition(".")
    if top in sys.modules:
        module = sys.modules[top]
        folders, origin = getattr(module, "__path__", None), getattr(module, "__file__", None)
    else:
        spec = importlib.util.find_spec(top)  # a top-level name: imports nothing
        if spec is None:
            return None
        folders, origin = spec.submodule_search_locations, spec.origin
    if not rest:
        return (Path(origin), folders is not None) if origin and origin.endswith(".py") else None
    for folder in folders or ():
        base = Path(folder, *rest.split("."))
        if (base / "__init__.py").is_file():
            return base / "__init__.py", True
        if base.with_name(base.name + ".py").is_file():
            return base.with_name(base.name + ".py"), False
    return None


def _read(path: Path) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


def _filled(cell: types.CellType) -> bool:
    try:
        cell.cell_contents
    except ValueError:
        return False
    return True
