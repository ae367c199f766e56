import shlex
import shutil
from pathlib import Path

import pytest

from cdiscount import presets
from cdiscount.cli import main
from cdiscount.models import resolve
from cdiscount.params import load_config, load_params
from cdiscount.presets import PRESETS, describe, dvc_command, resolve_preset
from cdiscount.train import TrainConfig
from test_params import check_every_section

REPO = Path(__file__).resolve().parents[1]


def _apply(tmp_path: Path, overrides: list[str]) -> dict:
    """params.yaml after the overrides, applied by DVC's own `-S` code (Hydra, struct mode: a key that
    params.yaml lacks is an error, as in `dvc exp run`)."""
    from dvc.utils.hydra import apply_overrides

    p = tmp_path / "params.yaml"
    shutil.copy(REPO / "params.yaml", p)
    apply_overrides(p, overrides)
    return load_params(p)


def test_dvc_rejects_a_key_params_yaml_lacks(tmp_path: Path) -> None:
    from dvc.exceptions import InvalidArgumentError

    with pytest.raises(InvalidArgumentError):
        _apply(tmp_path, ["train.no_such_key=1"])


@pytest.mark.parametrize("name", list(PRESETS))
@pytest.mark.parametrize("mode", ["sample, weights cached", "sample, no weights", "faithful"])
def test_every_preset_names_existing_keys_with_accepted_values(name: str, mode: str, tmp_path: Path) -> None:
    overrides, _ = resolve_preset(name, sample=mode != "faithful", weights_cached=lambda a: "cached" in mode)
    assert len({o.split("=", 1)[0] for o in overrides}) == len(overrides)  # one value per key
    params = _apply(tmp_path, overrides)
    check_every_section(params)  # every stage would accept the preset's params
    assert resolve(load_config(TrainConfig, params).arch)
    for o in overrides:  # each value landed in params.yaml as written
        key, value = o.split("=", 1)
        section, field = key.split(".")
        if isinstance(params[section][field], list):  # e.g. [COFFRET CADEAU BOX]: items may hold spaces
            items = [v.strip().strip("'\"") for v in value.strip("[]").split(",") if v.strip()]
            assert [str(v) for v in params[section][field]] == items, o
            continue
        assert str(params[section][field]).replace(" ", "").lower() == value.lower() or \
            float(params[section][field]) == float(value)


def test_presets_use_the_new_architectures_and_params() -> None:
    arch = {n: dict(o.split("=", 1) for o in p.overrides)["train.arch"] for n, p in PRESETS.items()}
    assert arch["report003-mlp"] == "mlp" and arch["report003-lenet5"] == "lenet5"
    assert arch["report001-hierarchical"] == "pretrainedmodels/inceptionv4"
    faithful = {n: dict(o.split("=", 1) for o in p.overrides) for n, p in PRESETS.items()}
    assert faithful["report002-resnet34"]["train.image_sizes"] == "[64,96,128]"
    assert faithful["report004-vgg16-ovr"]["groups.method"] == "all"
    assert faithful["report004-vgg16-ovr"]["specific.model"] == "ovr"
    assert faithful["report000-two-stage"]["train.cap_per_category"] == "300"
    for n in ("report001-hierarchical", "report004-vgg16-ovr"):
        assert faithful[n]["train.full_epochs"] == "0"  # frozen features


def test_imagenet_fallback_only_on_the_sample_and_only_without_cached_weights() -> None:
    def values(overrides):
        return dict(o.split("=", 1) for o in overrides)

    name = "report000-two-stage"
    cached, notes = resolve_preset(name, weights_cached=lambda a: True)
    assert values(cached)["train.pretrained"] == "imagenet" and not notes
    missing, notes = resolve_preset(name, weights_cached=lambda a: False)
    assert values(missing)["train.pretrained"] == "none" and values(missing)["train.freeze_bn"] == "false"
    assert len(notes) == 1 and "resnet50" in notes[0] and "train.pretrained=none" in notes[0]
    assert [o.split("=")[0] for o in missing] == [o.split("=")[0] for o in cached]  # replaced in place
    faithful, notes = resolve_preset(name, sample=False, weights_cached=lambda a: False)
    assert values(faithful)["train.pretrained"] == "imagenet" and "not cached" in notes[0]
    assert values(faithful)["train.image_size"] == "224" and values(cached)["train.image_size"] == "64"
    _, notes = resolve_preset("report004-vgg16-ovr", weights_cached=lambda a: False)
    assert len(notes) == 2 and "random features" in notes[1]  # a frozen random body says what it measures
    scratch, notes = resolve_preset("report003-lenet5", weights_cached=lambda a: False)
    assert values(scratch)["train.pretrained"] == "none" and not notes


def test_printed_command_is_what_dvc_parses(monkeypatch) -> None:
    from dvc.cli import parse_args

    monkeypatch.setattr(presets, "pretrained_weights_cached", lambda a: False)
    for name in PRESETS:
        for queue in (False, True):
            text = describe(name, queue=queue)
            assert all(line.startswith("# ") for line in text.splitlines()[:-1])
            argv = shlex.split(text.splitlines()[-1])
            overrides, _ = resolve_preset(name, weights_cached=lambda a: False)
            assert argv == dvc_command(name, overrides, queue=queue)
            args = parse_args(argv[1:])
            assert args.name == name and args.queue is queue
            assert args.set_param == overrides
    assert "'train.image_sizes=[32,48,64]'" in describe("report002-resnet34").splitlines()[-1]
    monkeypatch.setattr(presets, "pretrained_weights_cached", lambda a: True)  # decided at call time
    assert "-S train.pretrained=imagenet " in describe("report004-vgg16-ovr").splitlines()[-1]


def test_cli_lists_prints_and_runs_presets(monkeypatch, capsys) -> None:
    assert main(["preset"]) == 0
    listed = capsys.readouterr().out
    assert all(name in listed for name in PRESETS)
    assert main(["preset", "report003-mlp"]) == 0  # prints, runs nothing
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("dvc exp run -n report003-mlp -S train.arch=mlp ") and not last.endswith(" --queue")
    assert main(["preset", "no-such-preset"]) == 2
    ran = []

    def fake_run(argv, check=False):
        ran.append(argv)
        return type("Done", (), {"returncode": 0})()

    monkeypatch.setattr("subprocess.run", fake_run)
    assert main(["preset", "report003-mlp", "--queue"]) == 0  # --queue enqueues at once
    assert ran.pop()[-1] == "--queue" and "queued" in capsys.readouterr().out
    assert main(["preset", "report003-lenet5", "--run"]) == 0
    assert len(ran) == 1 and Path(ran[0][0]).name == "dvc" and ran[0][1:4] == ["exp", "run", "-n"]
    assert ran[0][1:] == shlex.split(capsys.readouterr().out.strip().splitlines()[-1])[1:]


def test_scale_preset_caps_training_only_and_reads_one_existing_small_group(tmp_path: Path) -> None:
    from cdiscount.synth import official_categories

    overrides, notes = resolve_preset("scale", sample=False)
    params = _apply(tmp_path, overrides)
    assert not notes and PRESETS["scale"].report is False
    assert params["split"]["cap_per_category"] == 0  # every product reaches the stages after training
    assert params["train"]["cap_per_category"] > 0 and params["train"]["image_size"] <= 64
    assert params["train"]["head_epochs"] + params["train"]["full_epochs"] == 1
    level1 = set(official_categories()["category_level1"].str.strip())
    assert params["ocr"]["level1"] and set(params["ocr"]["level1"]) <= level1
    assert "# why:" in describe("scale") and "differs from the report" not in describe("scale")
