"""``ocr.level1`` on a taxonomy: a typo is an error, a group this dataset lacks leaves OCR out."""
from pathlib import Path

import pandas as pd
import pytest

from cdiscount.errors import ConfigError
from cdiscount.ocr.stage import OcrClassifierConfig, OcrConfig, run_ocr, run_ocr_classifier, selected_level1
from conftest import config

TAX = pd.DataFrame({"category_id": [1, 2, 3], "idx": [0, 1, 2], "level1": ["LIBRAIRIE", "MUSIQUE", "JEUX "],
                    "level2": ["a", "b", "c"], "level3": ["x", "y", "z"]})


def test_a_close_name_is_a_typo_an_absent_one_is_left_out(caplog) -> None:
    assert selected_level1(TAX, ["LIBRAIRIE", " JEUX"])["category_id"].tolist() == [1, 3]
    with pytest.raises(ConfigError, match=r"ocr.level1: 'LIBRARIE' .* did you mean 'LIBRAIRIE'\?"):
        selected_level1(TAX, ["LIBRARIE"])
    assert selected_level1(TAX, ["MUSIQUE", "GARDEN TOOLS"])["category_id"].tolist() == [2]
    assert "'GARDEN TOOLS' is not a level-1 group of this taxonomy" in caplog.text


def test_a_taxonomy_without_the_default_groups_leaves_the_ocr_component_out(tmp_path: Path) -> None:
    """A Kaggle-format dataset that is not Cdiscount's: the default [LIBRAIRIE] must not stop the pipeline."""
    interim = tmp_path / "interim"
    interim.mkdir()
    TAX.assign(level1=["TOOLS", "GARDEN", "PETS"]).to_parquet(interim / "taxonomy.parquet")
    s = run_ocr(config(OcrConfig, level1=["LIBRAIRIE"]), interim=interim, flat=tmp_path / "none",
                cache=tmp_path / "ocr" / "text.parquet", metrics_path=tmp_path / "ocr.json", progress=False)
    assert "none of ocr.level1 is in this taxonomy" in s["skipped"] and (tmp_path / "ocr").is_dir()
    m = run_ocr_classifier(["LIBRAIRIE"], config(OcrClassifierConfig), cache=tmp_path / "ocr" / "text.parquet",
                           interim=interim, split_path=tmp_path / "none", flat=tmp_path / "none",
                           out_dir=tmp_path / "preds_ocr", metrics_path=tmp_path / "ocr_classifier.json")
    assert "skipped" in m and [p.name for p in (tmp_path / "preds_ocr").iterdir()] == ["README"]
    from cdiscount.ensemble import component_paths

    assert not any(p.exists() for p in component_paths(tmp_path, "preds_ocr").values())  # the ensemble leaves it out
