from pathlib import Path

import bson
import pandas as pd
import pytest

from cdiscount.cli import main
from cdiscount.bson_io import open_store
from cdiscount.split import assign_folds
from cdiscount.train import TrainConfig, train_backbone


@pytest.fixture(scope="module")
def model_path(tiny_interim: Path, tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("predict")
    assign_folds(pd.read_parquet(tiny_interim / "train_products.parquet"), seed=0, val_fraction=0.2).to_parquet(
        tmp / "split.parquet")
    cfg = TrainConfig(arch="vanilla_cnn", pretrained="none", image_size=32, head_epochs=1, full_epochs=0,
                      workers=0, device="cpu")
    train_backbone(cfg, tiny_interim, tmp / "split.parquet", tmp / "m.pt", tmp / "ckpt", tmp / "live", progress=False)
    return tmp / "m.pt"


def test_predict_images_as_one_product_and_bson_per_product(model_path: Path, tiny_interim: Path, tmp_path: Path,
                                                            capsys) -> None:
    from PIL import Image
    import io

    store = open_store(tiny_interim, "train")
    jpg = tmp_path / "a.jpg"
    jpg.write_bytes(store.read_row(0))
    png = tmp_path / "b.png"
    Image.open(io.BytesIO(store.read_row(1))).resize((300, 200)).save(png)  # any format, any size
    docs = list(bson.decode_file_iter(open(store.bson_path, "rb")))[:2]
    bf = tmp_path / "two.bson"
    bf.write_bytes(b"".join(bson.encode(d) for d in docs))
    tax = tiny_interim / "taxonomy.parquet"
    assert main(["predict", str(jpg), str(png), str(bf), "--model", str(model_path), "--taxonomy", str(tax)]) == 0
    out = capsys.readouterr().out
    assert out.count("(2 pictures)") >= 1 and "a.jpg + b.png" in out
    assert f"two.bson _id {docs[0]['_id']}" in out and f"two.bson _id {docs[1]['_id']}" in out
    lines = [line for line in out.splitlines() if line.startswith("  1.")]
    assert len(lines) == 3 and all(" > " in line and "%" in line for line in lines)
    probs = [float(line.split()[1].rstrip("%")) for line in out.splitlines() if line.startswith("  ")]
    assert all(0 <= p <= 100 for p in probs)
