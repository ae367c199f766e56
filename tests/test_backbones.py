"""The ``backbones`` section: entries as checked overrides of train / predict, a primary that names one."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from cdiscount.backbone import entry_configs
from cdiscount.backbones import entry_names, primary_name
from cdiscount.errors import ConfigError, InputError
from conftest import PARAMS, REPO, run_stage


def _with(entries: dict, primary: str = "main") -> dict:
    params = copy.deepcopy(PARAMS)
    params["backbones"] = {"primary": primary, "entries": entries}
    return params


def test_the_default_is_one_backbone_that_is_the_shared_sections_as_they_are() -> None:
    assert entry_names(PARAMS) == ["main"] and primary_name(PARAMS) == "main"
    train, predict = entry_configs(PARAMS, "main")
    assert train.image_size == PARAMS["train"]["image_size"] and predict.features is True


def test_an_entry_overrides_only_its_keys_of_train_and_predict() -> None:
    params = _with({"main": {}, "s96": {"train": {"image_size": 96, "seed": 1}, "predict": {"features": False}}})
    train, predict = entry_configs(params, "s96")
    assert (train.image_size, train.seed, predict.features) == (96, 1, False)
    assert train.arch == PARAMS["train"]["arch"] and predict.top_k == PARAMS["predict"]["top_k"]
    main_train, _ = entry_configs(params, "main")
    assert main_train.image_size == PARAMS["train"]["image_size"]
    assert entry_names(params) == ["main", "s96"]


@pytest.mark.parametrize("entry, message, shape", [
    ({"train": {"image_sise": 96}}, r"backbones.entries.b.train.image_sise: unknown key \(did you mean "
                                    r"backbones.entries.b.train.image_size\?\)", False),
    ({"trian": {"arch": "resnet18"}}, r"backbones.entries.b.trian: unknown key \(did you mean "
                                      r"backbones.entries.b.train\?\)", True),
    ({"image_size": 96}, r"backbones.entries.b.image_size: unknown key \(an entry overrides train or predict", True),
    ({"train": {"image_size": 8}}, r"backbones.entries.b.train.image_size = 8: 16 to 1024 pixels", False),
    ({"predict": {"features": "no"}}, r"backbones.entries.b.predict.features = 'no': expected bool", False),
    ({"train": 96}, r"backbones.entries.b.train = 96: expected a mapping", True),
    ([96], r"backbones.entries.b = \[96\]: expected a mapping", True),
])
def test_a_bad_override_names_the_entry_key(entry, message, shape) -> None:
    with pytest.raises(ConfigError, match=message):
        entry_configs(_with({"main": {}, "b": entry}), "b")
    if shape:  # the shape is checked with the whole section too; the keys by the entry's stage (it has torch)
        with pytest.raises(ConfigError, match=message):
            entry_names(_with({"main": {}, "b": entry}))


def test_the_primary_must_name_an_entry() -> None:
    with pytest.raises(ConfigError, match=r"backbones.primary = 'mian': .*did you mean 'main'\?"):
        primary_name(_with({"main": {}, "b": {}}, primary="mian"))
    with pytest.raises(ConfigError, match=r"backbones.entries = \{\}: at least one backbone"):
        entry_names(_with({}, primary="main"))
    with pytest.raises(ConfigError, match=r"'a b' is not a usable name"):
        entry_names(_with({"main": {}, "a b": {}}))
    with pytest.raises(ConfigError, match=r"backbones.entries: no entry 'mian' \(did you mean 'main'\?\)"):
        entry_configs(PARAMS, "mian")


def test_a_stage_for_an_entry_not_in_params_fails_before_touching_anything(tmp_path: Path, monkeypatch,
                                                                          caplog) -> None:
    (tmp_path / "params.yaml").write_text((REPO / "params.yaml").read_text())
    monkeypatch.chdir(tmp_path)
    assert run_stage("train_backbone", "other") == 2
    assert "backbones.entries: no entry 'other'" in caplog.text and "Traceback" not in caplog.text
    assert [p for p in tmp_path.rglob("*") if p.name != "params.yaml"] == []


def test_features_of_a_backbone_run_without_them_are_a_clear_error(tmp_path: Path) -> None:
    from cdiscount.backbones import NO_FEATURES
    from cdiscount.features import read_features

    (tmp_path / NO_FEATURES).write_text("no features\n")
    with pytest.raises(InputError, match="predict.features is false"):
        read_features(tmp_path / "train")


def test_dvc_yaml_has_one_stage_per_entry_reading_its_own_entry_only() -> None:
    stage = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]["train_backbone"]
    assert stage["foreach"] == "${backbones.entries}"
    assert stage["do"]["cmd"] == "python stages/train_backbone.py ${key}"
    assert stage["do"]["params"] == ["train", "predict", "backbones.entries.${key}"]
    outs = [next(iter(o)) if isinstance(o, dict) else o for o in stage["do"]["outs"]]
    assert all("${key}" in o for o in outs) and all("${key}" in next(iter(m)) if isinstance(m, dict) else m
                                                     for m in [*stage["do"]["metrics"], *stage["do"]["plots"]])
