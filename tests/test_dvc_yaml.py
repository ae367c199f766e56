"""The pipeline definition agrees with params.yaml."""
import yaml

from conftest import REPO


def test_each_expert_stage_reads_every_common_specific_param_and_only_its_own_slot() -> None:
    params = yaml.safe_load((REPO / "params.yaml").read_text())["specific"]
    stage = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]["specific"]["do"]
    declared = set(stage["params"])
    common = {f"specific.{k}" for k in params if k != "per_slot"}
    assert declared == common | {"specific.per_slot.${item}"}
    assert set(params["per_slot"]) == set(params["slots"])  # every slot has its (possibly empty) overrides
