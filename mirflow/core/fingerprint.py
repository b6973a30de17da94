"""Cache keys: what a stage's output depends on, hashed.

A key covers (1) the input data's content, (2) the stage parameters and (3) the code
of the stage function *and of every project function it calls*. Prefect's own
input-based cache hashes path strings and ignores code edits; these keys do not.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import inspect
import json
import os
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
    return isinstance(module, str) and any(module == p or module.startswith(p + ".") for p in packages)


def _collect(obj: Any, packages: tuple[str, ...], sources: dict[str, str]) -> None:
    obj = inspect.unwrap(obj) if callable(obj) else obj
    name = f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"
    if name in sources or not _is_project(obj, packages):
        return
    sources[name] = _source(obj)
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


def _filled(cell: types.CellType) -> bool:
    try:
        cell.cell_contents
    except ValueError:
        return False
    return True


def stage_key(stage: str, func: Callable, params: Any, inputs: Any) -> str:
    """The content address of a stage output."""
    return stable_hash({"stage": stage, "code": code_hash(func), "params": params, "inputs": inputs})
