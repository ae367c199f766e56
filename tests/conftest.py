"""Shared fixtures: real Kaggle fixtures from ../shared, a tiny generated sample, BSON writers."""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, TypeVar

import bson
import pytest

from cdiscount.decode import DecodeConfig
from cdiscount.params import Section, load_config, load_params
from cdiscount.sample import SampleConfig, generate_sample

REPO = Path(__file__).resolve().parents[1]
#: The repository's params.yaml: the one place defaults live, for tests too.
PARAMS = load_params(REPO / "params.yaml")
C = TypeVar("C", bound=Section)


def load_stage(name: str):
    """The module of ``stages/<name>.py`` (its path constants, its ``main``)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"stage_{name}", REPO / "stages" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def set_params(repo: Path, changes: dict) -> None:
    """Set dotted keys (``"specific.per_slot.g1": {...}``) of ``repo``'s params.yaml (a test's copy)."""
    import yaml

    params = yaml.safe_load((repo / "params.yaml").read_text())
    for dotted, value in changes.items():
        *parents, key = dotted.split(".")
        node = params
        for p in parents:
            node = node[p]
        node[key] = value
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def bench_module(name: str):
    """The module of ``bench/<name>.py`` (its inputs, its reference implementations)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"bench_{name}", REPO / "bench" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def run_stage(name: str, *args: str) -> int:
    """Run ``stages/<name>.py`` in this process, in the current directory, as DVC would (no bars)."""
    from cdiscount.runner import run_stage as runner

    mod = load_stage(name)
    return runner(mod.main, mod.__doc__, ["-q", *args], options=getattr(mod, "options", None))


def config(cls: type[C], **overrides: Any) -> C:
    """``cls``'s section of the repository's params.yaml with ``overrides`` (checked like params)."""
    from cdiscount.experts import ExpertConfig
    from cdiscount.specific import slot_config

    base = slot_config(PARAMS, PARAMS["specific"]["slots"][0])[1] if cls is ExpertConfig else load_config(cls, PARAMS)
    return dataclasses.replace(base, **overrides)


SHARED = Path(os.environ.get("CDISCOUNT_SHARED", REPO.parent / "shared" / "cdiscount"))
EXAMPLE_BSON = SHARED / "train_example.bson"
CATEGORY_NAMES = SHARED / "category_names.csv"

#: A sample small enough for unit tests (a few seconds), same generator as the default.
TINY = config(SampleConfig, train_products=300, test_products=80, min_products_per_category=5)
#: Decode in this process (workers=0): fast for small inputs and debuggable.
DECODE = config(DecodeConfig, workers=0)


@pytest.fixture(scope="session")
def shared() -> Path:
    """The official Kaggle fixtures; tests that need them skip where ../shared is absent."""
    if not EXAMPLE_BSON.exists() or not CATEGORY_NAMES.exists():
        pytest.skip(f"real Kaggle fixtures not found in {SHARED} (set CDISCOUNT_SHARED to their folder)")
    return SHARED


def write_bson(path: Path, docs: list[dict]) -> Path:
    with open(path, "wb") as f:
        for doc in docs:
            f.write(bson.encode(doc))
    return path


@pytest.fixture(scope="session")
def example_docs(shared: Path) -> list[dict]:
    return list(bson.decode_file_iter(open(shared / "train_example.bson", "rb")))


@pytest.fixture()
def kaggle_dir(tmp_path: Path, shared: Path, example_docs: list[dict]) -> Path:
    """A Kaggle-format folder from the real fixtures: train = the 82 real products, test = the
    same products without labels, category_names = the official 5,270-row file."""
    d = tmp_path / "kaggle"
    d.mkdir()
    (d / "train.bson").write_bytes((shared / "train_example.bson").read_bytes())
    write_bson(d / "test.bson", [{"_id": doc["_id"], "imgs": doc["imgs"]} for doc in example_docs])
    (d / "category_names.csv").write_bytes((shared / "category_names.csv").read_bytes())
    return d


@pytest.fixture(scope="session")
def tiny_sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated mini-Cdiscount folder (read-only for tests: copy before modifying)."""
    d = tmp_path_factory.mktemp("tiny") / "raw"
    generate_sample(d, TINY, progress=False)
    return d


@pytest.fixture(scope="session")
def tiny_interim(tiny_sample: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The decode stage's outputs for the tiny sample."""
    from cdiscount.decode import run_decode

    root = tmp_path_factory.mktemp("tiny_decoded")
    run_decode(tiny_sample, root / "interim", root / "metrics", DECODE, progress=False)
    return root / "interim"
