"""Read ``params.yaml``: the single place where a user changes what the pipeline does."""
from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

import yaml


def load_params(path: str | Path = "params.yaml") -> dict[str, Any]:
    """Return the whole params file as a dict (sections are top-level keys)."""
    with open(path, encoding="utf-8") as f:
        params = yaml.safe_load(f) or {}
    if not isinstance(params, dict):
        raise ValueError(f"{path}: expected a mapping of sections, got {type(params).__name__}")
    return params


def section(name: str, path: str | Path = "params.yaml") -> dict[str, Any]:
    """Return one section of ``params.yaml``; a missing section is a clear error."""
    params = load_params(path)
    if name not in params:
        raise KeyError(f"{path}: no section '{name}' (have: {', '.join(params)})")
    return params[name]


def config_from(cls: type[T], params: dict[str, Any], section_name: str) -> T:
    """Build a config dataclass from a params section; a misspelt key is an error, not a silent default."""
    known = {f.name for f in fields(cls)}
    unknown = set(params) - known
    if unknown:
        raise ValueError(f"unknown {section_name} params: {sorted(unknown)} (known: {sorted(known)})")
    return cls(**params)
