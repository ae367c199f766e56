"""`cdiscount predict` on anything that is not a readable picture or model: one line naming the file."""
from __future__ import annotations

from pathlib import Path

import bson
import pandas as pd
import pytest
from PIL import Image

from cdiscount.cli import main
from cdiscount.errors import InputError
from cdiscount.models import build_backbone
from cdiscount.predict import products_from_paths
from cdiscount.sample import draw
from cdiscount.train import TrainConfig, save_model
from conftest import config, write_bson

GOOD = draw.to_jpeg(Image.new("RGB", (20, 20), (10, 200, 10)), 90)


@pytest.mark.parametrize("name, data, message", [
    ("random.jpg", bytes(range(256)) * 4, "not a picture OpenCV or Pillow can read"),
    ("notes.txt", b"hello, this is text\n", "not a picture OpenCV or Pillow can read"),
    ("empty.jpg", b"", "empty: no picture"),
    ("cut.jpg", GOOD[: len(GOOD) // 2], "not a whole JPEG"),
])
def test_a_bad_picture_file_is_named(tmp_path: Path, name: str, data: bytes, message: str) -> None:
    bad = tmp_path / name
    bad.write_bytes(data)
    good = tmp_path / "ok.jpg"
    good.write_bytes(GOOD)
    with pytest.raises(InputError, match=rf"{name}: {message}"):
        products_from_paths([good, bad])


def test_a_folder_a_missing_file_and_a_bson_without_pictures(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="is a folder"):
        products_from_paths([tmp_path])
    with pytest.raises(InputError, match="nope.jpg: file not found"):
        products_from_paths([tmp_path / "nope.jpg"])
    write_bson(tmp_path / "p.bson", [{"_id": 5, "imgs": [{"picture": GOOD}]}, {"_id": 6}])
    with pytest.raises(InputError, match=r"p.bson, byte offset \d+, _id 6: document has no 'imgs'"):
        products_from_paths([tmp_path / "p.bson"])
    write_bson(tmp_path / "q.bson", [{"_id": 7, "imgs": [{"picture": GOOD}, {"picture": b"\xff\xd8\xff\xe0junk"}]}])
    with pytest.raises(InputError, match=r"q.bson, byte offset 0, _id 7: imgs\[1\] not a whole JPEG"):
        products_from_paths([tmp_path / "q.bson"])


def _model(tmp_path: Path) -> tuple[Path, Path]:
    cfg = config(TrainConfig, arch="vanilla_cnn", pretrained="none", image_size=16)
    path = tmp_path / "model.pt"
    save_model(build_backbone(cfg.arch, 2, "none", cfg.dropout, 0), cfg, [10, 20], path)
    tax = tmp_path / "tax.parquet"
    pd.DataFrame({"category_id": [10, 20], "level1": ["A", "A"], "level2": ["B", "B"], "level3": ["C", "D"]}
                 ).to_parquet(tax)
    return path, tax


def test_cli_gives_one_line_and_exit_2(tmp_path: Path, caplog) -> None:
    model, tax = _model(tmp_path)
    (tmp_path / "x.txt").write_text("not a picture")
    assert main(["predict", str(tmp_path / "x.txt"), "--model", str(model), "--taxonomy", str(tax)]) == 2
    assert "x.txt: not a picture" in caplog.text and "Traceback" not in caplog.text
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(model.read_bytes()[:500])
    (tmp_path / "ok.jpg").write_bytes(GOOD)
    assert main(["predict", str(tmp_path / "ok.jpg"), "--model", str(corrupt), "--taxonomy", str(tax)]) == 2
    assert "corrupt.pt: not a model written by train_backbone" in caplog.text
    assert main(["predict", str(tmp_path / "ok.jpg"), "--model", str(tmp_path / "none.pt")]) == 2
    assert "none.pt: model not found" in caplog.text
    assert main(["predict", str(tmp_path / "ok.jpg"), "--model", str(model), "--taxonomy", str(tax)]) == 0
