"""params.yaml is the one source of defaults; every section is strict (unknown key, wrong type, bad range)."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from cdiscount.backbone import PredictConfig, entry_configs
from cdiscount.backbones import BackbonesConfig
from cdiscount.baseline import BaselineConfig
from cdiscount.decode import DecodeConfig
from cdiscount.raw_data import DataConfig
from cdiscount.dedup import DedupConfig
from cdiscount.ensemble import EnsembleConfig
from cdiscount.errors import ConfigError
from cdiscount.groups import GroupsConfig
from cdiscount.hierarchy import HierarchyConfig
from cdiscount.ocr.stage import OcrClassifierConfig, OcrConfig
from cdiscount.params import Section, build, load_config, load_params
from cdiscount.product_fusion import FusionConfig
from cdiscount.sample import SampleConfig
from cdiscount.specific import slot_config
from cdiscount.split import SplitConfig
from cdiscount.train import TrainConfig
from conftest import PARAMS, REPO, run_stage

SECTIONS: list[type[Section]] = [DataConfig, SampleConfig, DecodeConfig, DedupConfig, SplitConfig, TrainConfig,
                                 PredictConfig, BaselineConfig, GroupsConfig, FusionConfig, HierarchyConfig,
                                 EnsembleConfig, OcrConfig, OcrClassifierConfig, BackbonesConfig]


def check_every_section(params: dict) -> None:
    """Build every stage's config from ``params`` (the specific section once per slot)."""
    for cls in SECTIONS:
        load_config(cls, params)
    for slot in params["specific"]["slots"]:
        slot_config(params, slot)
    for name in params["backbones"]["entries"]:
        entry_configs(params, name)


def test_params_yaml_has_a_strict_config_for_every_section_and_every_one_loads() -> None:
    assert set(PARAMS) == {c.SECTION for c in SECTIONS} | {"specific"}
    check_every_section(PARAMS)


def test_no_config_carries_a_default_of_its_own() -> None:
    """A default in code could disagree with params.yaml (train.full_lr once did: 5e-4 vs 1e-4)."""
    import dataclasses

    from cdiscount.experts import ExpertConfig

    for cls in [*SECTIONS, ExpertConfig]:
        with_default = [f.name for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING
                        or f.default_factory is not dataclasses.MISSING]
        assert with_default == [], (cls.__name__, with_default)


@pytest.mark.parametrize("cls, values, message", [
    (SplitConfig, {"val_fracton": 0.2}, r"split.val_fracton: unknown key \(did you mean split.val_fraction\?\)"),
    (SplitConfig, {"val_fraction": "0.1"}, r"split.val_fraction = '0.1': expected float"),
    (SplitConfig, {"seed": -1}, r"split.seed = -1: an integer >= 0"),
    (SplitConfig, {"val_fraction": 1.5}, r"split.val_fraction = 1.5: a fraction strictly between 0 and 1"),
    (DecodeConfig, {"on_error": "ignore"}, r"decode.on_error = 'ignore': expected 'raise' \| 'skip'"),
    (DecodeConfig, {"block_size_mb": 0}, r"decode.block_size_mb = 0: 16 to 4096 MB"),
    (DecodeConfig, {"workers": True}, r"decode.workers = True: expected int"),
    (DedupConfig, {"placeholder_min_categories": 0}, r"dedup.placeholder_min_categories = 0: >= 2"),
    (TrainConfig, {"batch_size": 0}, r"train.batch_size = 0: at least 1"),
    (TrainConfig, {"image_size": 0}, r"train.image_size = 0: 16 to 1024"),
    (TrainConfig, {"head_epochs": 0, "full_epochs": 0}, r"train.full_epochs = 0: .*nothing would be trained"),
    (TrainConfig, {"amp": "fp8"}, r"train.amp = 'fp8': expected 'auto' \| 'bf16' \| 'fp16' \| 'off'"),
    (TrainConfig, {"image_sizes": [32]}, r"train.image_sizes = \[32\]: one size .* per epoch"),
    (PredictConfig, {"top_k": 0}, r"predict.top_k = 0: 1 to 1000"),
    (PredictConfig, {"shard_rows": 0}, r"predict.shard_rows = 0: at least 1"),
    (EnsembleConfig, {"weight_step": 0.3}, r"ensemble.weight_step = 0.3: a step that divides 1"),
    (GroupsConfig, {"low": 0.95}, r"groups.low = 0.95: an accuracy from 0 to groups.high"),
])
def test_a_bad_value_names_section_key_value_and_what_is_allowed(cls, values, message) -> None:
    with pytest.raises(ConfigError, match=message):
        build(cls, {**PARAMS[cls.SECTION], **values})


def test_a_missing_key_or_a_null_section_is_an_error_naming_it() -> None:
    section = dict(PARAMS["split"])
    del section["seed"]
    with pytest.raises(ConfigError, match=r"split: missing split.seed"):
        build(SplitConfig, section)
    with pytest.raises(ConfigError, match=r"decode: expected a mapping of keys, got None"):
        load_config(DecodeConfig, {**PARAMS, "decode": None})
    with pytest.raises(ConfigError, match=r"no section 'dedup'"):
        load_config(DedupConfig, {k: v for k, v in PARAMS.items() if k != "dedup"})


def test_a_slot_override_is_checked_and_named_as_the_slot_key() -> None:
    params = {**PARAMS, "specific": {**PARAMS["specific"], "per_slot": {**PARAMS["specific"]["per_slot"],
                                                                         "g3": {"model": "svm"}}}}
    slots, cfg = slot_config(params, "g0")
    assert slots == PARAMS["specific"]["slots"] and cfg.model == PARAMS["specific"]["model"]
    with pytest.raises(ConfigError, match=r"specific.per_slot.g3.model = 'svm'"):
        slot_config(params, "g3")
    params["specific"]["per_slot"]["g3"] = {"epochs": 7}
    assert slot_config(params, "g3")[1].epochs == 7 and slot_config(params, "g2")[1].epochs == PARAMS["specific"]["epochs"]
    with pytest.raises(ConfigError, match=r"unknown slot 'g99'"):
        slot_config(params, "g99")


def test_params_file_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="nope.yaml: params file not found"):
        load_params(tmp_path / "nope.yaml")
    (tmp_path / "bad.yaml").write_text("a: [1,\n")
    with pytest.raises(ConfigError, match="bad.yaml: not valid YAML"):
        load_params(tmp_path / "bad.yaml")


def test_a_stage_fails_on_a_bad_param_before_touching_anything(tmp_path: Path, monkeypatch, caplog) -> None:
    """One line naming section.key, exit 2, no output written (split: the first stage with data inputs)."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["split"]["val_fracton"] = 0.2
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(tmp_path)
    assert run_stage("split") == 2
    assert "split.val_fracton: unknown key" in caplog.text and "Traceback" not in caplog.text
    assert [p for p in tmp_path.rglob("*") if p.name != "params.yaml"] == []
