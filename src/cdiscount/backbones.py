"""The ``backbones`` section: several CNNs, each a ``train_backbone@<name>`` stage, one of them primary.

Each entry is a set of overrides of the shared ``train`` / ``predict`` sections, nested by section
(``{train: {image_size: 96}, predict: {features: false}}``): the two sections share key names
(``batch_size``, ``workers``), so a flat mapping would be ambiguous. The primary backbone is the
one whose features and predictions the single-backbone consumers read (groups, specific, fusion,
hierarchy, ocr, ocr_classifier); the ensemble takes every entry's product top-K as a component
named ``backbone/<name>``.

This module imports nothing heavy (no torch): the consumers import it to learn the primary's
name, and a code dep on ``train.py`` would re-run them on every training change.
"""
from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .params import Section

#: The sections an entry may override (each checked against its strict config by the stage).
ENTRY_SECTIONS = ("train", "predict")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

#: Where ``train_backbone@<name>`` writes, as in dvc.yaml (``<root>/<name>[suffix]``).
MODELS = Path("models/backbone")
CHECKPOINTS = Path("models/checkpoints")
LIVE = Path("dvclive/backbone")
FEATURES = Path("data/features")
PREDS = Path("data/preds/backbone")
METRICS = Path("metrics/backbone")
#: Written instead of feature shards when an entry has ``predict.features: false``.
NO_FEATURES = "NO_FEATURES.txt"


@dataclass(frozen=True)
class BackbonesConfig(Section):
    """The ``backbones`` section of params.yaml."""

    SECTION = "backbones"
    primary: str
    entries: dict[str, Any]  # name -> {train: {...}, predict: {...}} overrides (either may be left out)

    def check(self) -> None:
        self.require("entries", len(self.entries) >= 1, "at least one backbone, e.g. {main: {}}")
        for name, over in self.entries.items():
            if not isinstance(name, str) or not _NAME.match(name):
                raise ConfigError(f"backbones.entries: {name!r} is not a usable name (letters, digits, _ . -; it "
                                  "names a stage, folders and a component)")
            entry_overrides(self.entries, name)
        close = difflib.get_close_matches(self.primary, list(self.entries), n=1)
        self.require("primary", self.primary in self.entries,
                     f"the name of an entry of backbones.entries ({', '.join(self.entries)})"
                     + (f"; did you mean {close[0]!r}?" if close else ""))


def entry_overrides(entries: dict[str, Any], name: str) -> dict[str, dict[str, Any]]:
    """``{section: overrides}`` of one entry, its shape checked (the keys are checked by the configs)."""
    if name not in entries:
        close = difflib.get_close_matches(str(name), [str(n) for n in entries], n=1)
        raise ConfigError(f"backbones.entries: no entry {name!r}" + (f" (did you mean {close[0]!r}?)" if close
                                                                     else f" (have: {', '.join(entries)})"))
    over = entries[name] if entries[name] is not None else {}
    if not isinstance(over, dict):
        raise ConfigError(f"backbones.entries.{name} = {over!r}: expected a mapping like "
                          "{train: {image_size: 96}} ({} = the shared train / predict sections as they are)")
    for section, values in over.items():
        if section not in ENTRY_SECTIONS:
            close = difflib.get_close_matches(str(section), ENTRY_SECTIONS, n=1)
            hint = f"did you mean backbones.entries.{name}.{close[0]}?" if close else \
                f"an entry overrides {' or '.join(ENTRY_SECTIONS)}, e.g. {{train: {{image_size: 96}}}}"
            raise ConfigError(f"backbones.entries.{name}.{section}: unknown key ({hint})")
        if not isinstance(values, dict):
            raise ConfigError(f"backbones.entries.{name}.{section} = {values!r}: expected a mapping of "
                              f"{section} keys")
    return {s: dict(over.get(s) or {}) for s in ENTRY_SECTIONS}


def load_backbones(params: dict[str, Any]) -> BackbonesConfig:
    """The checked ``backbones`` section (every entry's shape; the primary names an entry)."""
    from .params import load_config

    return load_config(BackbonesConfig, params)


def primary_name(params: dict[str, Any]) -> str:
    """``backbones.primary``: the backbone the single-backbone consumers read (checked to name an entry)."""
    return load_backbones(params).primary


def entry_names(params: dict[str, Any]) -> list[str]:
    """Every entry of ``backbones.entries``, in params order."""
    return list(load_backbones(params).entries)


def component_name(name: str) -> str:
    """The ensemble component (and folder under data/preds) of backbone ``name``."""
    return f"{PREDS.name}/{name}"
