"""`dvc repro` of the data stages in a temporary copy of the repository."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import REPO, TINY, set_params, write_bson

pytestmark = pytest.mark.slow


def _dvc(cwd: Path, *args: str) -> str:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    out = subprocess.run([str(Path(sys.executable).parent / "dvc"), *args], cwd=cwd, env=env,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout + out.stderr


@pytest.fixture()
def repo_copy(tmp_path: Path) -> Path:
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                           capture_output=True, text=True, check=True).stdout.split()
    dst = tmp_path / "repo"
    for f in files:
        if (REPO / f).is_file():
            (dst / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / f, dst / f)
    params = yaml.safe_load((dst / "params.yaml").read_text())
    params["sample"].update(train_products=TINY.train_products, test_products=TINY.test_products,
                            min_products_per_category=TINY.min_products_per_category)
    params["train"].update(image_size=64, batch_size=32, head_epochs=1, full_epochs=1, workers=0)
    params["predict"].update(workers=0, flip_tta=False)
    params["baseline"].update(workers=1)
    params["specific"].update(slots=["g0", "g1", "g2"], epochs=3)
    params["fusion"].update(epochs=2)
    (dst / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    subprocess.run(["git", "init", "-q"], cwd=dst, check=True)
    subprocess.run(["git", "add", "-A"], cwd=dst, check=True)
    subprocess.run([*git, "commit", "-qm", "copy"], cwd=dst, check=True)  # DVC / DVCLive want a commit
    return dst


def _ran(log: str) -> list[str]:
    return [line.split("'")[1] for line in log.splitlines() if line.startswith("Running stage")]


def _changed(repo: Path) -> set[str]:
    """Stages whose own deps or params changed (``dvc status``; what then re-runs is them and their
    descendants): cheap, nothing runs."""
    return set(json.loads(_dvc(repo, "status", "--json").split("\n", 1)[0] or "{}"))


def test_dvc_repro_builds_caches_and_reruns_only_what_changed(repo_copy: Path) -> None:
    log = _dvc(repo_copy, "repro")
    assert _ran(log)[:5] == ["sample", "decode", "dedup", "split", "train_backbone@main"]
    assert set(_ran(log)) == {"sample", "decode", "dedup", "split", "train_backbone@main", "baseline", "groups",
                              "specific@g0", "specific@g1", "specific@g2", "fusion", "hierarchy", "ocr",
                              "ocr_classifier", "ensemble", "submission"}
    assert _ran(log)[-2:] == ["ensemble", "submission"]
    metrics = {n: json.loads((repo_copy / f"metrics/{n}.json").read_text())
               for n in ("backbone/main", "hierarchy", "fusion", "ocr_classifier", "ensemble", "baseline")}
    metrics["backbone"] = metrics.pop("backbone/main")
    # Cross-stage identities: the stages after the backbone measure its predictions the same way.
    assert metrics["hierarchy"]["flat_product_accuracy"] == metrics["backbone"]["product_accuracy"]
    assert metrics["fusion"]["mean_of_pictures_product_accuracy"] == metrics["backbone"]["product_accuracy"]
    assert metrics["hierarchy"]["fusion_product_accuracy"] == metrics["fusion"]["fusion_product_accuracy"]
    assert metrics["ensemble"]["components"]["backbone/main"] == metrics["backbone"]["product_accuracy"]
    assert metrics["ensemble"]["components"]["hierarchy"] == metrics["hierarchy"]["hierarchical_product_accuracy"]
    assert metrics["ensemble"]["products"] == metrics["backbone"]["products"] == metrics["hierarchy"]["products"]
    assert metrics["ocr_classifier"]["val_products"] > 0 and "ocr" in metrics["ensemble"]["components"]
    assert metrics["ensemble"]["product_accuracy_before_override"] >= max(metrics["ensemble"]["components"].values())
    assert metrics["ensemble"]["fitted_product_accuracy"] >= metrics["ensemble"]["fitted_best_component_accuracy"]
    assert "product_accuracy" in metrics["baseline"]
    sub = pd.read_csv(repo_copy / "submissions/submission.csv")
    test_ids = pd.read_parquet(repo_copy / "data/interim/test_products.parquet")["_id"]
    assert list(sub.columns) == ["_id", "category_id"] and sub["_id"].tolist() == test_ids.tolist()
    split = pd.read_parquet(repo_copy / "data/processed/split.parquet")
    assert len(split) == TINY.train_products and set(split["fold"]) == {"train", "val"}
    test_preds = pd.read_parquet(repo_copy / "data/preds/backbone/main/test_products.parquet")
    assert len(test_preds) == TINY.test_products and len(test_preds["top_idx"].iloc[0]) == 20

    assert "Data and pipelines are up to date" in _dvc(repo_copy, "repro")
    set_params(repo_copy, {"ensemble.mean": "arithmetic"})
    assert _changed(repo_copy) == {"ensemble"}
    labels = repo_copy / "data/preds/ensemble/test_labels.parquet"
    before = labels.read_bytes()
    ran = _ran(_dvc(repo_copy, "repro"))  # for real once: submission follows only if the labels changed
    assert ran == (["ensemble"] if labels.read_bytes() == before else ["ensemble", "submission"])
    set_params(repo_copy, {"specific.per_slot.g1": {"model": "logreg"}})  # one group's expert only
    assert _changed(repo_copy) == {"specific@g1"}
    set_params(repo_copy, {"specific.per_slot.g1": {}, "split.seed": 7})
    assert _changed(repo_copy) == {"split"}
    set_params(repo_copy, {"split.seed": 0, "predict.top_k": 5})
    assert _changed(repo_copy) == {"train_backbone@main"}
    log = _dvc(repo_copy, "repro", "train_backbone@main")  # inference only: the finished training is resumed
    assert _ran(log) == ["train_backbone@main"] and "(epoch 2 of 2 done)" in log
    assert len(pd.read_parquet(repo_copy / "data/preds/backbone/main/test_products.parquet")["top_idx"].iloc[0]) == 5
    set_params(repo_copy, {"predict.top_k": 20})
    _dvc(repo_copy, "repro")

    # A second backbone is one entry: it trains, the ensemble weighs it, nothing else re-runs.
    set_params(repo_copy, {"backbones.entries.b2": {"train": {"seed": 1}, "predict": {"features": False}}})
    assert _changed(repo_copy) == {"train_backbone@b2", "ensemble"}
    ran = _ran(_dvc(repo_copy, "repro"))
    assert ran[:2] == ["train_backbone@b2", "ensemble"] and set(ran) <= {"train_backbone@b2", "ensemble", "submission"}
    ens = json.loads((repo_copy / "metrics/ensemble.json").read_text())
    assert {"backbone/main", "backbone/b2"} <= set(ens["components"]) and "backbone/b2" in ens["weights"]
    assert ens["fitted_product_accuracy"] >= ens["fitted_best_component_accuracy"]
    assert [p.name for p in (repo_copy / "data/features/b2").iterdir()] == ["NO_FEATURES.txt"]
    assert (repo_copy / "metrics/backbone/b2.json").exists() and (repo_copy / "models/backbone/b2.pt").exists()
    # Removing it removes its component (its folders stay on disk, left out and named in the log).
    set_params(repo_copy, {"backbones.entries": {"main": {}}})
    assert _changed(repo_copy) == {"ensemble"}
    log = _dvc(repo_copy, "repro", "ensemble")
    assert "backbone/b2" not in json.loads((repo_copy / "metrics/ensemble.json").read_text())["components"]
    assert "['b2'] are not in backbones.entries" in log


def test_real_kaggle_folder_runs_end_to_end_with_only_raw_dir_changed(repo_copy: Path, kaggle_dir: Path,
                                                                       example_docs: list[dict]) -> None:
    """The real 82 products as train, 30 of them unlabelled as test, the real 5,270-row taxonomy."""
    write_bson(kaggle_dir / "test.bson", [{"_id": d["_id"], "imgs": d["imgs"]} for d in example_docs[:30]])
    set_params(repo_copy, {"data.raw_dir": str(kaggle_dir)})
    log = _dvc(repo_copy, "repro", "submission")  # the final stage and what it needs: no sample
    assert "sample" not in _ran(log) and not (repo_copy / "data/raw/sample").exists()
    assert len(pd.read_parquet(repo_copy / "data/interim/train_products.parquet")) == 82
    assert len(pd.read_parquet(repo_copy / "data/interim/taxonomy.parquet")) == 5270
    sub = pd.read_csv(repo_copy / "submissions/submission.csv")
    assert sub["_id"].tolist() == [d["_id"] for d in example_docs[:30]]
    out = subprocess.run([str(Path(sys.executable).parent / "cdiscount"), "validate-submission",
                          "submissions/submission.csv.gz", "--test", str(kaggle_dir / "test.bson"),
                          "--categories", str(kaggle_dir / "category_names.csv")],
                         cwd=repo_copy, capture_output=True, text=True)
    assert out.returncode == 0 and "valid: 30 rows" in out.stdout, out.stdout + out.stderr
