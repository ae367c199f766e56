"""The offline report: sections and values from a tiny fake run, self-contained HTML, skip notes."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from cdiscount.cli import main
from cdiscount.report import flatten, write_report

PER_CATEGORY = "idx,category_id,level1,level3,products,accuracy\n0,10,AUTO,PNEUS,4,0.5\n1,11,AUTO,GUIDON,2,1.0\n" \
               "2,20,LIVRES,ROMAN,3,0.33333\n"
HIERARCHY_PER_CATEGORY = "idx,category_id,level1,level3,products,flat_accuracy,hierarchical_accuracy\n" \
                         "0,10,AUTO,PNEUS,4,0.5,0.75\n1,11,AUTO,GUIDON,2,1.0,1.0\n2,20,LIVRES,ROMAN,3,0.33333,0.0\n"


@pytest.fixture()
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fake repository root holding what a finished pipeline run leaves in metrics/ and dvclive/."""
    monkeypatch.chdir(tmp_path)
    m = tmp_path / "metrics"
    (m / "backbone").mkdir(parents=True)
    (m / "backbone" / "main.json").write_text(json.dumps({"products": 9, "product_accuracy": 0.654321}))
    (m / "backbone" / "s96.json").write_text(json.dumps({"products": 9, "product_accuracy": 0.5}))
    (m / "baseline.json").write_text(json.dumps({"product_accuracy": 0.47}))
    (m / "fusion.json").write_text(json.dumps({"fusion_product_accuracy": 0.6862}))
    (m / "hierarchy.json").write_text(json.dumps({"flat_product_accuracy": 0.65, "hierarchical_product_accuracy": 0.67,
                                                  "hard_routing_product_accuracy": 0.66}))
    (m / "ensemble.json").write_text(json.dumps({"product_accuracy": 0.72, "product_accuracy_before_override": 0.71,
                                                 "weights": {"backbone/main": 0.2, "fusion": 0.8}, "mean": "geometric"}))
    (m / "backbone" / "main_per_category.csv").write_text(PER_CATEGORY)
    (m / "hierarchy_per_category.csv").write_text(HIERARCHY_PER_CATEGORY)
    (m / "backbone" / "main_distance.csv").write_text("distance,products\nsame category,6\nsame level-1,3\n")
    (m / "groups.csv").write_text("group,categories,val_products,flat_accuracy,level1\nlevel1: AUTO,2,6,0.666667,AUTO\n")
    (m / "hierarchy_groups.csv").write_text("group,categories,val_products,flat_accuracy,soft_accuracy,hard_accuracy\n"
                                            "level1: LIVRES,1,3,0.33333,0.1,0.2\n")
    curves = tmp_path / "dvclive" / "backbone" / "main" / "plots" / "metrics" / "train"
    curves.mkdir(parents=True)
    (curves / "train_loss.tsv").write_text("step\ttrain_loss\n0\t2.19\n1\t1.55\n")
    (curves / "val_image_accuracy.tsv").write_text("timestamp\tstep\tval_image_accuracy\n1\t0\t0.55\n2\t1\t0.61\n")
    return tmp_path


def test_flatten_uses_dotted_keys() -> None:
    assert flatten({"a": 1, "b": {"c": 2, "d": {"e": 3}}, "f": {}}) == {"a": 1, "b.c": 2, "b.d.e": 3, "f": {}}


def test_report_has_every_section_and_rounded_values(run: Path) -> None:
    out = write_report("reports", Path("metrics"), Path("dvclive/backbone/main"))
    md = (out / "report.md").read_text()
    for section in ("Product accuracy per component", "Learning curves", "Per-category accuracy (backbone main)",
                    "flat vs hierarchical", "Confusion distance", "## Groups", "All metrics",
                    "### `metrics/ensemble.json`"):
        assert section in md, section
    assert "| backbone: main | 0.6543 | backbone/main.json: product_accuracy |" in md
    assert "| backbone: s96 | 0.5 | backbone/s96.json: product_accuracy |" in md  # every backbone has its row
    assert "| weights.backbone/main | 0.2 |" in md
    assert "| ensemble (before override) | 0.71 |" in md and "| hierarchy: hard routing | 0.66 |" in md
    assert "ocr_classifier" not in md  # no OCR metrics in this run: the row is left out
    assert "| weights.fusion | 0.8 |" in md and "| mean | geometric |" in md
    assert "| level1: AUTO | 2 | 6 | 0.6667 | AUTO |" in md and "| level1: LIVRES | 1 | 3 | 0.3333 | 0.1 | 0.2 |" in md
    assert "| same category | 6 | 0.6667 |" in md
    assert "Skipped" not in md
    pngs = {"learning_curves.png", "backbone_per_category.png", "hierarchy_per_category.png", "backbone_distance.png"}
    assert {p.name for p in out.glob("*.png")} == pngs
    for name in pngs:
        assert f"]({name})" in md
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_html_is_self_contained(run: Path) -> None:
    html = (write_report("reports", Path("metrics"), Path("dvclive/backbone/main")) / "report.html").read_text()
    assert not re.search(r"https?://", html)
    assert "<script" not in html and "<link" not in html
    srcs = re.findall(r'<img [^>]*src="([^"]+)"', html)
    assert len(srcs) == 4 and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert "<td>0.6543</td>" in html


def test_absent_inputs_give_skip_notes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics" / "baseline.json").write_text(json.dumps({"product_accuracy": 0.5}))
    (tmp_path / "metrics" / "backbone").mkdir()
    (tmp_path / "metrics" / "backbone" / "main_distance.csv").write_text("distance,products\n")  # header only
    out = write_report("reports", Path("metrics"), Path("dvclive/backbone/main"))
    md = (out / "report.md").read_text()
    assert "| baseline | 0.5 |" in md and "| backbone" not in md
    for note in ("_Skipped: `dvclive/backbone/main/plots/metrics/**.tsv` not found._",
                 "_Skipped: `metrics/backbone/main_per_category.csv` not found._",
                 "_Skipped: `metrics/hierarchy_per_category.csv` not found._",
                 "_Skipped: `metrics/backbone/main_distance.csv` is empty._",
                 "_Skipped: `metrics/groups.csv` not found._", "_Skipped: `metrics/hierarchy_groups.csv` not found._"):
        assert note in md, note
    assert not list(out.glob("*.png")) and "<img" not in (out / "report.html").read_text()


def test_cli_report_needs_no_params_and_replaces_the_folder(run: Path) -> None:
    assert not (run / "params.yaml").exists()
    stale = run / "out" / "old.png"
    stale.parent.mkdir()
    stale.write_bytes(b"old")
    assert main(["report", "--out", "out"]) == 0
    assert (run / "out" / "report.html").exists() and not stale.exists()
    assert not [p for p in run.iterdir() if p.name.startswith(".out.")]  # no temp folder left behind
