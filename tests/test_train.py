import json
import signal
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from cdiscount.data import epoch_order
from cdiscount.split import assign_folds
from cdiscount.train import TrainConfig, load_model, train_backbone

#: One short CPU run: a tiny CNN on 32 px pictures, 1 head epoch + 2 full epochs.
TINY_TRAIN = TrainConfig(arch="vanilla_cnn", pretrained="none", image_size=32, batch_size=32, head_epochs=1,
                         full_epochs=2, workers=0, device="cpu", head_lr=0.01, full_lr=0.003)
#: The same with progressive resizing (report 002): one training size per epoch, the last one for the model.
TINY_PROGRESSIVE = TrainConfig(**{**asdict(TINY_TRAIN), "image_sizes": [24, 16, 32]})


@pytest.fixture(scope="module")
def split_path(tiny_interim: Path, tmp_path_factory) -> Path:
    products = pd.read_parquet(tiny_interim / "train_products.parquet")
    p = tmp_path_factory.mktemp("split") / "split.parquet"
    assign_folds(products, seed=0, val_fraction=0.2).to_parquet(p)
    return p


def _train(tmp: Path, interim: Path, split_path: Path, cfg: TrainConfig = TINY_TRAIN) -> dict:
    return train_backbone(cfg, interim, split_path, tmp / "backbone.pt", tmp / "ckpt", tmp / "live", progress=False)


def test_config_rejects_unknown_params() -> None:
    with pytest.raises(ValueError, match="head_epoch"):
        TrainConfig.from_params({"head_epoch": 3})


def test_epoch_order_deterministic_balanced_and_sharded() -> None:
    labels = np.array([0] * 90 + [1] * 10)
    assert (epoch_order(labels, 3, 0) == epoch_order(labels, 3, 0)).all()
    assert not (epoch_order(labels, 3, 0) == epoch_order(labels, 4, 0)).all()
    assert sorted(epoch_order(labels, 0, 0)) == list(range(100))
    balanced = labels[epoch_order(labels, 0, 0, balance_power=1.0)]
    assert 0.35 < balanced.mean() < 0.65
    shards = [epoch_order(labels, 1, 0, rank=r, world=3) for r in range(3)]
    assert sorted(np.concatenate(shards)) == list(range(100))


def test_training_writes_a_self_contained_model(tiny_interim: Path, split_path: Path, tmp_path: Path) -> None:
    metrics = _train(tmp_path, tiny_interim, split_path)
    assert metrics["epoch"] == 3 and 0 <= metrics["val_image_accuracy"] <= 1
    model, blob = load_model(tmp_path / "backbone.pt")
    tax = pd.read_parquet(tiny_interim / "taxonomy.parquet")
    assert blob["categories"] == tax.sort_values("idx")["category_id"].tolist()
    assert blob["image_size"] == 32 and blob["arch"] == "vanilla_cnn"
    assert model(torch.zeros(1, 3, 32, 32)).shape == (1, len(tax))
    curve = (tmp_path / "live" / "plots" / "metrics" / "train" / "train_loss.tsv").read_text().splitlines()
    assert len(curve) == 1 + 3  # header + one point per epoch


CHILD = """
import json, os, signal, sys
from pathlib import Path
import cdiscount.train as t

interim, split, out, kill_after = sys.argv[1:5]
if kill_after:  # a real SIGKILL right after that checkpoint lands, instrumented from outside the library
    real = t.atomic_path
    class KillAfter:
        def __init__(self, path):
            self.cm, self.path = real(path), Path(path)
        def __enter__(self):
            return self.cm.__enter__()
        def __exit__(self, *exc):
            done = self.cm.__exit__(*exc)
            if self.path.name == kill_after:
                os.kill(os.getpid(), signal.SIGKILL)
            return done
    t.atomic_path = KillAfter
cfg = t.TrainConfig(**json.loads(sys.argv[5]))
out = Path(out)
t.train_backbone(cfg, Path(interim), Path(split), out / "backbone.pt", out / "ckpt", out / "live", progress=False)
"""


def _train_in_child(out: Path, interim: Path, split_path: Path, kill_after: str = "") -> int:
    """Each run in a fresh process, as DVC runs the stage (with progressive resizing: the resumed
    epochs must take up the sizes where the killed run stopped)."""
    return subprocess.run([sys.executable, "-c", CHILD, str(interim), str(split_path), str(out), kill_after,
                           json.dumps(asdict(TINY_PROGRESSIVE))], capture_output=True, text=True).returncode


def test_resume_after_kill_reaches_the_same_weights(tiny_interim: Path, split_path: Path, tmp_path: Path) -> None:
    full, killed = tmp_path / "full", tmp_path / "killed"
    assert _train_in_child(full, tiny_interim, split_path) == 0
    assert _train_in_child(killed, tiny_interim, split_path, kill_after="epoch-000.pt") == -signal.SIGKILL
    assert [p.name for p in (killed / "ckpt").glob("*.pt")] == ["epoch-000.pt"]
    assert not (killed / "backbone.pt").exists()
    assert _train_in_child(killed, tiny_interim, split_path) == 0  # the re-run resumes at epoch 2
    a = torch.load(full / "backbone.pt", weights_only=False)["state_dict"]
    b = torch.load(killed / "backbone.pt", weights_only=False)["state_dict"]
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert sorted(p.name for p in (killed / "ckpt").glob("*.pt")) == ["epoch-000.pt", "epoch-001.pt", "epoch-002.pt"]
    curves = [(d / "live" / "plots" / "metrics" / "train" / "val_image_accuracy.tsv").read_text() for d in (full, killed)]
    assert curves[0] == curves[1]  # same metrics, epoch by epoch


def test_image_sizes_need_one_size_per_epoch() -> None:
    assert TINY_TRAIN.epoch_image_size(2) == TINY_TRAIN.final_image_size == 32
    assert [TINY_PROGRESSIVE.epoch_image_size(e) for e in range(3)] == [24, 16, 32]
    for bad in ([16, 32], [16, 24, 32, 48], [16, 0, 32]):
        with pytest.raises(ValueError, match="one positive size per epoch"):
            TrainConfig(**{**asdict(TINY_TRAIN), "image_sizes": bad})
    assert TrainConfig.from_params({"image_sizes": []}).final_image_size == TrainConfig().image_size


def test_progressive_resizing_follows_the_epoch(tiny_interim: Path, split_path: Path, tmp_path: Path,
                                                monkeypatch) -> None:
    import cdiscount.train as t

    seen: list[tuple[str, int, int]] = []  # (train | val, epoch, picture side) of every picture read

    class Recording(t.ImageDataset):
        def __getitem__(self, i):
            img, label, row = super().__getitem__(i)
            seen.append(("train" if self.hflip else "val", self.epoch, img.shape[-1]))
            return img, label, row

    monkeypatch.setattr(t, "ImageDataset", Recording)
    _train(tmp_path, tiny_interim, split_path, TINY_PROGRESSIVE)
    train_sizes = {(e, s) for kind, e, s in seen if kind == "train"}
    assert train_sizes == {(0, 24), (1, 16), (2, 32)}  # one size per epoch, that epoch's
    assert {s for kind, _, s in seen if kind == "val"} == {32}  # validation at the final size
    model, blob = load_model(tmp_path / "backbone.pt")
    assert blob["image_size"] == 32 and blob["config"]["image_sizes"] == [24, 16, 32]


def test_changed_params_discard_old_checkpoints(tiny_interim: Path, split_path: Path, tmp_path: Path) -> None:
    _train(tmp_path, tiny_interim, split_path)
    cfg = TrainConfig(**{**asdict(TINY_TRAIN), "full_epochs": 1, "seed": 3})
    _train(tmp_path, tiny_interim, split_path, cfg)
    assert sorted(p.name for p in (tmp_path / "ckpt").glob("*.pt")) == ["epoch-000.pt", "epoch-001.pt"]
    assert json.loads(torch.load(tmp_path / "ckpt" / "epoch-001.pt", weights_only=False)["config"])["seed"] == 3


def test_ddp_two_ranks_on_cpu_stay_in_sync(tiny_interim: Path, split_path: Path, tmp_path: Path) -> None:
    """The same training function under torchrun (gloo): both ranks end with the same model."""
    script = tmp_path / "run.py"
    script.write_text(f"""
import json, sys
from pathlib import Path
import torch.distributed as dist
from cdiscount.train import TrainConfig, train_backbone
cfg = TrainConfig(**json.loads({json.dumps(json.dumps(asdict(TINY_TRAIN)))}))
out = Path({str(tmp_path)!r})
m = train_backbone(cfg, Path({str(tiny_interim)!r}), Path({str(split_path)!r}), out / "m.pt", out / "ckpt",
                   out / "live", progress=False)
(out / f"rank{{dist.get_rank()}}.json").write_text(json.dumps(m))
""")
    torchrun = Path(sys.executable).parent / "torchrun"
    proc = subprocess.run([str(torchrun), "--nproc_per_node=2", str(script)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert r0["val_image_accuracy"] == r1["val_image_accuracy"]
    assert (tmp_path / "m.pt").exists() and len(list((tmp_path / "ckpt").glob("*.pt"))) == 3


def test_cap_per_category_keeps_at_most_cap_of_each_class() -> None:
    from cdiscount.train import cap_rows

    labels = np.array([0] * 50 + [1] * 3 + [2] * 10)
    keep = cap_rows(labels, 5, seed=1)
    assert np.bincount(labels[keep]).tolist() == [5, 3, 5]
    assert (np.diff(keep) > 0).all() and (keep == cap_rows(labels, 5, seed=1)).all()
    assert len(cap_rows(labels, 0, seed=1)) == len(labels)
