"""Reading a YAML settings file (notification routing, agent configuration): a mapping at the top,
with every failure a ConfigError that names the file, and the line for bad YAML."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from auditflow.errors import ConfigError


def read_mapping(path: Path, expected: str) -> dict[str, Any]:
    """The mapping at the top of `path`; `expected` says what it should hold, for the error."""
    try:
        data: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise ConfigError(f"{where}: not valid YAML: {getattr(exc, 'problem', None) or exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected {expected}")
    return data
