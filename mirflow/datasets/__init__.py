"""One module per data set (the mirdata habit); see ``base`` for the contract."""

from __future__ import annotations

import importlib
from types import ModuleType

NAMES = ("gtzan", "msd", "acousticbrainz", "kkbox", "cifar100")


def get_dataset(name: str) -> ModuleType:
    from mirflow.core.errors import ConfigError

    if name not in NAMES:
        raise ConfigError(f"unknown data set {name!r}; choose one of {', '.join(NAMES)}")
    return importlib.import_module(f"mirflow.datasets.{name}")
