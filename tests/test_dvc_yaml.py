"""The pipeline definition agrees with params.yaml."""
import yaml

from conftest import REPO


def test_each_expert_stage_reads_every_common_specific_param_and_only_its_own_slot() -> None:
    params = yaml.safe_load((REPO / "params.yaml").read_text())["specific"]
    stage = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]["specific"]["do"]
    declared = set(stage["params"])
    common = {f"specific.{k}" for k in params if k != "per_slot"}
    assert declared == common | {"specific.per_slot.${item}", "backbones.primary"}
    assert set(params["per_slot"]) == set(params["slots"])  # every slot has its (possibly empty) overrides


def test_every_stage_declares_the_params_sections_its_script_reads() -> None:
    """A stage reading a section DVC does not list would not re-run when it changes."""
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    for name, body in stages.items():
        body = body.get("do", body)
        script = (REPO / body["cmd"].split()[1]).read_text()
        sections = {p.split(".")[0] for p in body.get("params", [])}
        if "primary_name(" in script:
            assert "backbones.primary" in body["params"], name
        if "entry_names(" in script or "entry_configs(" in script:
            assert {"backbones.entries", "backbones.entries.${key}"} & set(body["params"]), name
        for cls_section in ("DataConfig", "DecodeConfig", "DedupConfig", "SplitConfig", "TrainConfig",
                            "PredictConfig", "BaselineConfig", "GroupsConfig", "FusionConfig", "HierarchyConfig",
                            "EnsembleConfig", "OcrConfig", "OcrClassifierConfig", "SampleConfig"):
            if f"load_config({cls_section}" in script:
                from test_params import SECTIONS

                section = next(c.SECTION for c in SECTIONS if c.__name__ == cls_section)
                assert section in sections, (name, section)
