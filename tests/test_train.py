import contextlib
import json
import shutil
import signal
import subprocess
import sys
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import PARAMS, config

from cdiscount.bson_io import open_store
from cdiscount.data import epoch_order
from cdiscount.errors import ConfigError
from cdiscount.images import decode_image, normalise, resize
from cdiscount.params import build
from cdiscount.split import SplitConfig, assign_folds
from cdiscount.train import TrainConfig, load_model, train_backbone

#: One short CPU run: a tiny CNN on 32 px pictures, 1 head epoch + 2 full epochs.
TINY_TRAIN = config(TrainConfig, arch="vanilla_cnn", pretrained="none", image_size=32, batch_size=32, head_epochs=1,
                    full_epochs=2, workers=0, device="cpu", head_lr=0.01, full_lr=0.003)
#: The same with progressive resizing (report 002): one training size per epoch, the last one for the model.
TINY_PROGRESSIVE = replace(TINY_TRAIN, image_sizes=[24, 16, 32])


@pytest.fixture(scope="module")
def split_path(tiny_interim: Path, tmp_path_factory) -> Path:
    products = pd.read_parquet(tiny_interim / "train_products.parquet")
    p = tmp_path_factory.mktemp("split") / "split.parquet"
    assign_folds(products, **asdict(config(SplitConfig, val_fraction=0.2))).to_parquet(p)
    return p


def _train(tmp: Path, interim: Path, split_path: Path, cfg: TrainConfig = TINY_TRAIN) -> dict:
    return train_backbone(cfg, interim, split_path, tmp / "backbone.pt", tmp / "ckpt", tmp / "live", progress=False)


def test_config_rejects_unknown_params() -> None:
    with pytest.raises(ConfigError, match=r"train\.head_epoch: unknown key \(did you mean train\.head_epochs\?\)"):
        build(TrainConfig, {**PARAMS["train"], "head_epoch": 3})
    assert build(TrainConfig, dict(PARAMS["train"])) == config(TrainConfig)


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
    assert metrics["epoch"] == 3 and metrics["phase"] == "full"
    model, blob = load_model(tmp_path / "backbone.pt")
    tax = pd.read_parquet(tiny_interim / "taxonomy.parquet")
    # the reported validation accuracy is the saved model's, recomputed here picture by picture
    images = pd.read_parquet(tiny_interim / "train_images.parquet", columns=["_id", "category_id"])
    val = images["_id"].isin(pd.read_parquet(split_path).query("fold == 'val'")["_id"]).to_numpy()
    store = open_store(tiny_interim, "train")
    x = torch.stack([resize(decode_image(store.read_row(int(r))), 32) for r in np.flatnonzero(val)])
    with torch.no_grad():
        pred = model(normalise(x, model.norm.mean, model.norm.std)).argmax(1).numpy()
    true = images.loc[val, "category_id"].map(tax.set_index("category_id")["idx"]).to_numpy()
    assert metrics["val_image_accuracy"] == pytest.approx((pred == true).mean(), abs=1e-12)
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
from cdiscount.params import build
cfg = build(t.TrainConfig, json.loads(sys.argv[5]))
out = Path(out)
t.train_backbone(cfg, Path(interim), Path(split), out / "backbone.pt", out / "ckpt", out / "live", progress=False)
"""


def _train_in_child(out: Path, interim: Path, split_path: Path, kill_after: str = "") -> int:
    """Each run in a fresh process, as DVC runs the stage (with progressive resizing: the resumed
    epochs must take up the sizes where the killed run stopped)."""
    proc = subprocess.run([sys.executable, "-c", CHILD, str(interim), str(split_path), str(out), kill_after,
                           json.dumps(asdict(TINY_PROGRESSIVE))], capture_output=True, text=True)
    assert proc.returncode in (0, -signal.SIGKILL), proc.stderr[-3000:]
    return proc.returncode


def _identical(a, b) -> bool:
    """Exact equality of nested checkpoint contents (dicts, lists, tensors, numbers, strings)."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_identical(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_identical(x, y) for x, y in zip(a, b))
    return a == b


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


class Stopped(Exception):
    """Raised right after a chosen checkpoint lands: the run stops there, as if killed."""


def _stop_after(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    import cdiscount.train as t

    real = t.atomic_path

    @contextlib.contextmanager
    def stopping(path):
        with real(path) as tmp:
            yield tmp
        if Path(path).name == name:
            raise Stopped(name)

    monkeypatch.setattr(t, "atomic_path", stopping)


@pytest.mark.parametrize("phase", ["head", "full"])
def test_resume_inside_a_phase_restores_optimizer_and_scheduler(phase: str, tiny_interim: Path, split_path: Path,
                                                                tmp_path: Path, monkeypatch) -> None:
    """Stopped after the first of a phase's two epochs, the re-run resumes in the middle of the
    phase: AdamW's moments and the one-cycle schedule's position come back from the checkpoint,
    so it ends exactly where an uninterrupted run ends. Dropping either state ends elsewhere."""
    cfg = replace(TINY_TRAIN, head_epochs=2 * (phase == "head"), full_epochs=2 * (phase == "full"))
    full, stopped = tmp_path / "full", tmp_path / "stopped"
    _train(full, tiny_interim, split_path, cfg)
    with monkeypatch.context() as m:
        _stop_after(m, "epoch-000.pt")
        with pytest.raises(Stopped):
            _train(stopped, tiny_interim, split_path, cfg)
    assert [p.name for p in (stopped / "ckpt").glob("*.pt")] == ["epoch-000.pt"]
    for drop, cls in (("optimizer", torch.optim.AdamW), ("scheduler", torch.optim.lr_scheduler.OneCycleLR)):
        shutil.copytree(stopped, tmp_path / drop)  # a deliberately broken resume from a copy
        with monkeypatch.context() as m:
            m.setattr(cls, "load_state_dict", lambda self, state: None)
            _train(tmp_path / drop, tiny_interim, split_path, cfg)
    _train(stopped, tiny_interim, split_path, cfg)  # resumes at the phase's second epoch

    first = torch.load(stopped / "ckpt" / "epoch-000.pt", weights_only=False)
    steps = first["scheduler"]["last_epoch"]  # one scheduler step per batch of the first epoch
    assert first["phase"] == phase and steps > 1 and first["scheduler"]["total_steps"] == 2 * steps
    assert {int(s["step"]) for s in first["optimizer"]["state"].values()} == {steps}
    a, b = (torch.load(d / "ckpt" / "epoch-001.pt", weights_only=False) for d in (full, stopped))
    assert a["phase"] == b["phase"] == phase and b["scheduler"]["last_epoch"] == 2 * steps
    assert {int(s["step"]) for s in b["optimizer"]["state"].values()} == {2 * steps}
    for key in ("model", "optimizer", "scheduler", "scaler", "torch_rng"):
        assert _identical(a[key], b[key]), key
    final = [torch.load(d / "backbone.pt", weights_only=False)["state_dict"] for d in (full, stopped)]
    assert _identical(*final)
    for drop in ("optimizer", "scheduler"):
        broken = torch.load(tmp_path / drop / "ckpt" / "epoch-001.pt", weights_only=False)
        assert not _identical(broken["model"], a["model"]), f"a resume without the {drop} state ended the same"


def test_image_sizes_need_one_size_per_epoch() -> None:
    assert TINY_TRAIN.epoch_image_size(2) == TINY_TRAIN.final_image_size == 32
    assert [TINY_PROGRESSIVE.epoch_image_size(e) for e in range(3)] == [24, 16, 32]
    for bad in ([16, 32], [16, 24, 32, 48], [16, 0, 32]):
        with pytest.raises(ConfigError, match=r"train\.image_sizes = .*one size \(16 to 1024\) per epoch \(1 head"):
            replace(TINY_TRAIN, image_sizes=bad)
    assert config(TrainConfig, image_sizes=[], image_size=48).final_image_size == 48


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
    cfg = replace(TINY_TRAIN, full_epochs=1, seed=3)
    _train(tmp_path, tiny_interim, split_path, cfg)
    assert sorted(p.name for p in (tmp_path / "ckpt").glob("*.pt")) == ["epoch-000.pt", "epoch-001.pt"]
    assert json.loads(torch.load(tmp_path / "ckpt" / "epoch-001.pt", weights_only=False)["config"])["seed"] == 3


DDP_SCRIPT = """
import json, sys
from pathlib import Path
import torch
import torch.distributed as dist
import cdiscount.train as t
from cdiscount.params import build

interim, split, out, cfg_json = sys.argv[1:5]
models, init = [], {}  # the model this rank trains and its initial weights, recorded from outside the library
real_build = t.build_backbone
def recording_build(*args, **kwargs):
    models.append(real_build(*args, **kwargs))
    init.update({k: v.detach().clone() for k, v in models[-1].state_dict().items()})
    return models[-1]
t.build_backbone = recording_build
out = Path(out)
m = t.train_backbone(build(t.TrainConfig, json.loads(cfg_json)), Path(interim), Path(split), out / "m.pt",
                     out / "ckpt", out / "live", progress=False)
rank = dist.get_rank()
torch.save({k: v.detach().cpu() for k, v in models[-1].state_dict().items()}, out / f"rank{rank}.pt")
torch.save(init, out / f"init{rank}.pt")
(out / f"rank{rank}.json").write_text(json.dumps(m))
"""


def _ddp(out: Path, interim: Path, split_path: Path) -> list[dict[str, torch.Tensor]]:
    """Two gloo ranks under torchrun; the state dict each rank's model ends with (``rank<r>.pt``;
    ``init<r>.pt``: the one it started from)."""
    out.mkdir()
    script = out / "run.py"
    script.write_text(DDP_SCRIPT)
    torchrun = Path(sys.executable).parent / "torchrun"
    proc = subprocess.run([str(torchrun), "--nproc_per_node=2", str(script), str(interim), str(split_path), str(out),
                           json.dumps(asdict(TINY_TRAIN))], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [torch.load(out / f"rank{r}.pt") for r in (0, 1)]


def test_ddp_two_ranks_on_cpu_stay_in_sync(tiny_interim: Path, split_path: Path, tmp_path: Path) -> None:
    """The same training function under torchrun (gloo): both ranks end with the same weights
    and buffers, and rank 0 saves them. (Batch-norm statistics stay put here: the head phase
    freezes the body and params.yaml's freeze_bn keeps them in the full phase. With
    freeze_bn: false each rank's statistics follow its own shard and the ranks end apart.)"""
    r0, r1 = _ddp(tmp_path / "ddp", tiny_interim, split_path)
    assert r0.keys() == r1.keys()
    differ = [k for k in r0 if not torch.equal(r0[k], r1[k])]
    assert not differ, f"the ranks ended with different {differ}"
    assert _identical(torch.load(tmp_path / "ddp" / "m.pt", weights_only=False)["state_dict"], r0)
    init = [torch.load(tmp_path / "ddp" / f"init{r}.pt") for r in (0, 1)]
    assert _identical(*init)  # same seed, same start
    assert not torch.equal(init[0]["head.weight"], r0["head.weight"])  # and they did train
    assert not torch.equal(init[0]["body.0.0.weight"], r0["body.0.0.weight"])  # the body too (full phase)
    assert (tmp_path / "ddp" / "m.pt").exists() and len(list((tmp_path / "ddp" / "ckpt").glob("*.pt"))) == 3
    metrics = [json.loads((tmp_path / "ddp" / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert metrics[0]["val_image_accuracy"] == metrics[1]["val_image_accuracy"]


def test_cap_per_category_keeps_at_most_cap_of_each_class() -> None:
    from cdiscount.train import cap_rows

    labels = np.array([0] * 50 + [1] * 3 + [2] * 10)
    keep = cap_rows(labels, 5, seed=1)
    assert np.bincount(labels[keep]).tolist() == [5, 3, 5]
    assert (np.diff(keep) > 0).all() and (keep == cap_rows(labels, 5, seed=1)).all()
    assert len(cap_rows(labels, 0, seed=1)) == len(labels)


def test_a_killed_runs_checkpoint_temp_is_removed_by_the_next_run(tiny_interim: Path, split_path: Path,
                                                                  tmp_path: Path) -> None:
    """Each backbone's checkpoints sit one folder below the stage's path constants (models/checkpoints/<name>),
    where the runner's clean-up does not look: training clears them itself."""
    stale = tmp_path / "ckpt" / ".epoch-001.pt.x1y2.tmp"
    stale.parent.mkdir()
    stale.write_bytes(b"half a checkpoint")
    _train(tmp_path, tiny_interim, split_path, replace(TINY_TRAIN, full_epochs=0))
    assert not stale.exists() and [p.name for p in (tmp_path / "ckpt").iterdir()] == ["epoch-000.pt"]
