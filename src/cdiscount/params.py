"""Read ``params.yaml``, the one place where every default lives, into strict per-stage configs.

Each stage's config is a dataclass without defaults: a key missing from params.yaml, a key
params.yaml has but the stage does not know (``split.val_fracton``), a value of the wrong type
or out of range is a :class:`~cdiscount.errors.ConfigError` naming ``section.key`` *before* the
stage touches anything. So a typo can never silently run the default, and no second default
in code can disagree with the file.
"""
from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar, Union

import yaml

from .errors import ConfigError

T = TypeVar("T", bound="Section")


def load_params(path: str | Path = "params.yaml") -> dict[str, Any]:
    """The whole params file as a dict of sections."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: params file not found (run from the repository root, or pass --params)") from None
    try:
        params = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(params, dict):
        raise ConfigError(f"{path}: expected a mapping of sections, got {type(params).__name__}")
    return params


class Section:
    """Base of every stage config: ``SECTION`` names its params.yaml section.

    Subclasses are frozen dataclasses whose fields carry no defaults and whose ``check()`` says
    which values are allowed, through :meth:`require`.
    """

    SECTION: ClassVar[str] = ""

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if not _matches(value, hints[f.name]):
                raise ConfigError(f"{self.SECTION}.{f.name} = {value!r}: expected {_describe(hints[f.name])}")
        self.check()

    def check(self) -> None:
        """Range checks beyond the type (override)."""

    def require(self, key: str, ok: bool, allowed: str) -> None:
        """Fail naming ``section.key``, its value and what is allowed, unless ``ok``."""
        if not ok:
            raise ConfigError(f"{self.SECTION}.{key} = {getattr(self, key)!r}: {allowed}")


def _describe(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(hint))
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(hint))
    if origin in (list, dict):
        return f"{origin.__name__}[{', '.join(_describe(a) for a in typing.get_args(hint))}]"
    return "null" if hint is type(None) else getattr(hint, "__name__", str(hint))


def _matches(value: Any, hint: Any) -> bool:
    """Whether a YAML value fits a type hint (bool is not an int; an int is a float)."""
    if hint is Any:
        return True
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Literal:
        return any(value == a and type(value) is type(a) for a in args)
    if origin in (Union, types.UnionType):
        return any(_matches(value, a) for a in args)
    if origin is list:
        return isinstance(value, list) and all(_matches(v, args[0]) for v in value)
    if origin is dict:
        return isinstance(value, dict) and all(_matches(k, args[0]) and _matches(v, args[1]) for k, v in value.items())
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, hint)


def build(cls: type[T], values: Any, where: str | None = None) -> T:
    """A ``cls`` from one mapping of values, every key checked; ``where`` names it in errors."""
    where = where or cls.SECTION
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: expected a mapping of keys, got {values!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    hints = typing.get_type_hints(cls)
    for key in values:
        if key not in fields:
            close = difflib.get_close_matches(str(key), fields, n=1)
            hint = f" (did you mean {where}.{close[0]}?)" if close else f" (known: {', '.join(fields)})"
            raise ConfigError(f"{where}.{key}: unknown key{hint}")
    missing = [k for k, f in fields.items() if k not in values and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ConfigError(f"{where}: missing {', '.join(f'{where}.{k}' for k in missing)} (params.yaml holds every "
                          "default: copy the key from the repository's params.yaml)")
    try:  # the constructor checks types and ranges (Section.__post_init__)
        return cls(**{k: float(v) if hints[k] is float and _matches(v, float) else v for k, v in values.items()})
    except ConfigError as e:
        if where != cls.SECTION:  # e.g. specific.per_slot.g3 rather than specific
            raise ConfigError(str(e).replace(f"{cls.SECTION}.", f"{where}.", 1)) from None
        raise


def load_config(cls: type[T], params: dict[str, Any], path: str | Path = "params.yaml") -> T:
    """The ``cls.SECTION`` section of ``params`` (as read by :func:`load_params`) as a checked config."""
    name = cls.SECTION
    if name not in params:
        raise ConfigError(f"{path}: no section '{name}' (have: {', '.join(params) or 'none'})")
    return build(cls, params[name])

