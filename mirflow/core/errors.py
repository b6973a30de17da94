"""Exceptions that name the file or parameter at fault and what to do about it."""

from __future__ import annotations

from pathlib import Path


class MirflowError(Exception):
    """Base class: every error mirflow raises on purpose."""


class ConfigError(MirflowError, ValueError):
    """A parameter or data layout is wrong; raised before any work starts."""


class DataError(MirflowError):
    """An input file cannot be used. Carries the file so callers can quarantine it."""

    def __init__(self, path: str | Path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class AudioDecodeError(DataError):
    """An audio file could not be decoded (corrupt, truncated, unknown format)."""


class LeakageError(MirflowError):
    """Test or validation data reached a training-only step (split overlap, scaler fit)."""


class ChecksumError(MirflowError):
    """A downloaded or local file does not match its recorded checksum."""

    def __init__(self, source: str, expected: str, actual: str):
        self.source, self.expected, self.actual = source, expected, actual
        super().__init__(f"checksum mismatch for {source}: expected {expected}, got {actual}")
