import io
import re
from dataclasses import asdict
from pathlib import Path

import bson
import pandas as pd
import pytest
import torch
from conftest import config
from PIL import Image

from cdiscount.bson_io import open_store
from cdiscount.cli import main
from cdiscount.images import decode_image, normalise, resize
from cdiscount.predict import predict_product
from cdiscount.split import SplitConfig, assign_folds
from cdiscount.train import TrainConfig, load_model, train_backbone

#: A ranked line of ``cdiscount predict``: "  1.  12.3%  1000012345  LEVEL1 > LEVEL2 > LEVEL3".
LINE = re.compile(r"^  (\d+)\. +([\d.]+)%  (\d+)  (.+) > (.+) > (.+)$")


@pytest.fixture(scope="module")
def model_path(tiny_interim: Path, tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("predict")
    assign_folds(pd.read_parquet(tiny_interim / "train_products.parquet"),
                 **asdict(config(SplitConfig, val_fraction=0.2))).to_parquet(tmp / "split.parquet")
    cfg = config(TrainConfig, arch="vanilla_cnn", pretrained="none", image_size=32, head_epochs=1, full_epochs=0,
                 workers=0, device="cpu")
    train_backbone(cfg, tiny_interim, tmp / "split.parquet", tmp / "m.pt", tmp / "ckpt", tmp / "live", progress=False)
    return tmp / "m.pt"


def _ranked(out: str) -> list[list[tuple[int, float, int, tuple[str, str, str]]]]:
    """Per product (in output order): (rank, percent, category_id, level names) of each ranked line."""
    products: list[list] = []
    for line in out.splitlines():
        if not line.startswith("  "):
            products.append([])
            continue
        m = LINE.match(line)
        assert m, line
        products[-1].append((int(m[1]), float(m[2]), int(m[3]), (m[4], m[5], m[6])))
    return products


def test_predict_images_as_one_product_and_bson_per_product(model_path: Path, tiny_interim: Path, tmp_path: Path,
                                                            capsys) -> None:
    store = open_store(tiny_interim, "train")
    jpg = tmp_path / "a.jpg"
    jpg.write_bytes(store.read_row(0))
    png = tmp_path / "b.png"
    Image.open(io.BytesIO(store.read_row(1))).resize((300, 200)).save(png)  # any format, any size
    docs = list(bson.decode_file_iter(open(store.bson_path, "rb")))[:2]
    bf = tmp_path / "two.bson"
    bf.write_bytes(b"".join(bson.encode(d) for d in docs))
    tax_path = tiny_interim / "taxonomy.parquet"
    assert main(["predict", str(jpg), str(png), str(bf), "--model", str(model_path), "--taxonomy", str(tax_path)]) == 0
    out = capsys.readouterr().out
    assert out.count("(2 pictures)") >= 1 and "a.jpg + b.png" in out
    assert f"two.bson _id {docs[0]['_id']}" in out and f"two.bson _id {docs[1]['_id']}" in out

    # The printed categories and probabilities are the model's, run directly on the same pictures.
    model, blob = load_model(model_path)
    tax = pd.read_parquet(tax_path).set_index("category_id")
    pictures = [[jpg.read_bytes(), png.read_bytes()]] + [[img["picture"] for img in d["imgs"]] for d in docs]
    ranked = _ranked(out)
    assert len(ranked) == 3
    for printed, pics in zip(ranked, pictures):
        p, i = predict_product(model, blob["image_size"], pics).topk(5)
        assert [r[0] for r in printed] == [1, 2, 3, 4, 5]
        assert [r[2] for r in printed] == [blob["categories"][j] for j in i.tolist()]
        assert [r[1] for r in printed] == pytest.approx([100 * x for x in p.tolist()], abs=0.051)
        for _, _, cid, names in printed:
            assert names == tuple(tax.loc[cid, ["level1", "level2", "level3"]])


def test_predict_product_is_the_mean_image_log_probability(model_path: Path, tiny_interim: Path) -> None:
    model, blob = load_model(model_path)
    store = open_store(tiny_interim, "train")
    a, b = store.read_row(0), store.read_row(5)

    def image_probs(pic: bytes, flip: bool) -> torch.Tensor:
        x = normalise(resize(decode_image(pic), blob["image_size"])[None], model.norm.mean, model.norm.std)
        with torch.no_grad():
            p = torch.softmax(model(x), dim=1)[0]
            return (p + torch.softmax(model(x.flip(-1)), dim=1)[0]) / 2 if flip else p

    torch.testing.assert_close(predict_product(model, blob["image_size"], [a], flip_tta=False), image_probs(a, False))
    torch.testing.assert_close(predict_product(model, blob["image_size"], [a], flip_tta=True), image_probs(a, True))
    mean_log = (image_probs(a, True).log() + image_probs(b, True).log()) / 2
    torch.testing.assert_close(predict_product(model, blob["image_size"], [a, b]), torch.softmax(mean_log, dim=0))


def test_predict_names_the_class_the_model_is_sure_of(model_path: Path, tiny_interim: Path, tmp_path: Path,
                                                      capsys) -> None:
    """A model whose head always says class ``j`` (a huge bias): ``predict`` names category
    ``categories[j]`` at 100 %, with that category's own level names."""
    blob = torch.load(model_path, weights_only=False)
    j = blob["n_classes"] - 2
    blob["state_dict"]["head.bias"][j] += 100.0
    sure = tmp_path / "sure.pt"
    torch.save(blob, sure)
    jpg = tmp_path / "a.jpg"
    jpg.write_bytes(open_store(tiny_interim, "train").read_row(3))
    tax_path = tiny_interim / "taxonomy.parquet"
    assert main(["predict", str(jpg), "--model", str(sure), "--taxonomy", str(tax_path), "--top", "2"]) == 0
    (first, second), = _ranked(capsys.readouterr().out)
    cid = blob["categories"][j]
    row = pd.read_parquet(tax_path).set_index("category_id").loc[cid]
    assert first == (1, 100.0, cid, (row["level1"], row["level2"], row["level3"]))
    assert second[1] == 0.0 and second[2] != cid
