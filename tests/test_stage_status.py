"""Editing a library module makes DVC re-run exactly the stages that import it (``dvc status``, no run)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cdiscount.code_deps import code_deps
from conftest import REPO, set_params

DVC = str(Path(sys.executable).parent / "dvc")


#: Written into a scratch copy so DVC can record a lock for every stage without running one.
_LOCK_ALL = """
from pathlib import Path
from dvc.repo import Repo

repo = Repo(".")
for stage in repo.index.stages:
    for entry in [*stage.deps, *stage.outs]:
        p = Path(entry.fs_path)
        if p.exists() or p.is_relative_to(Path.cwd() / "src") or p.is_relative_to(Path.cwd() / "stages"):
            continue
        if p.suffix:
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text("placeholder\\n")
        else:
            p.mkdir(parents=True, exist_ok=True)
            (p / "placeholder").write_text("placeholder\\n")
"""


def _env() -> dict[str, str]:
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}


def _placeholder_locked(dst: Path, changes: dict | None = None) -> Path:
    """The repository's tracked files copied to ``dst`` (a scratch git repo), params ``changes`` applied,
    every stage's deps and outs stood in by placeholders and committed to a fresh dvc.lock: ``dvc
    status`` is clean, and nothing ran."""
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                           capture_output=True, text=True, check=True).stdout.split()
    for f in files:
        if (REPO / f).is_file() and f != "dvc.lock":
            (dst / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / f, dst / f)
    if changes:
        set_params(dst, changes)
    subprocess.run(["git", "init", "-q"], cwd=dst, check=True)
    subprocess.run([sys.executable, "-c", _LOCK_ALL], cwd=dst, env=_env(), check=True)
    out = subprocess.run([DVC, "commit", "-f", "-q"], cwd=dst, env=_env(), capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert _status(dst) == set()
    return dst


@pytest.fixture(scope="module")
def locked_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A placeholder-locked copy of the repository (see :func:`_placeholder_locked`)."""
    return _placeholder_locked(tmp_path_factory.mktemp("status") / "repo")


def _code_changed(repo: Path) -> dict[str, set[str]]:
    """stage -> the code deps ``dvc status`` reports as changed."""
    out = subprocess.run([DVC, "status", "--json"], cwd=repo, env=_env(), capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    changed: dict[str, set[str]] = {}
    for stage, entries in json.loads(out.stdout or "{}").items():
        for entry in entries:
            if isinstance(entry, dict):
                for path in entry.get("changed deps", {}):
                    if path.startswith(("src/", "stages/")):
                        changed.setdefault(stage, set()).add(path)
    return changed


def _foreach(body: dict, params: dict) -> list[str]:
    """The names of a foreach stage's instances (``specific.slots``, ``backbones.entries``)."""
    node = params
    for key in body["foreach"].strip("${}").split("."):
        node = node[key]
    return list(node)


def _importers(repo: Path, module: str) -> set[str]:
    stages = yaml.safe_load((repo / "dvc.yaml").read_text())["stages"]
    params = yaml.safe_load((repo / "params.yaml").read_text())
    out = set()
    for name, body in stages.items():
        script = repo / body.get("do", body)["cmd"].split()[1]
        if (repo / module).resolve() in {p.resolve() for p in code_deps(script, repo / "src")}:
            out |= {f"{name}@{s}" for s in _foreach(body, params)} if "foreach" in body else {name}
    return out


@pytest.mark.parametrize("module", ["src/cdiscount/topk.py", "src/cdiscount/params.py",
                                    "src/cdiscount/ocr/text.py", "src/cdiscount/models/vanilla.py",
                                    "src/cdiscount/taxonomy.py"])
def test_editing_a_module_changes_exactly_the_stages_that_import_it(locked_copy: Path, module: str) -> None:
    before = _code_changed(locked_copy)
    path = locked_copy / module
    original = path.read_text()
    try:
        path.write_text(original + "\n# edited\n")
        after = _code_changed(locked_copy)
    finally:
        path.write_text(original)
    newly = {s for s, deps in after.items()
             if any(module == d or module.startswith(d + "/") for d in deps - before.get(s, set()))}
    assert newly == _importers(locked_copy, module) and newly, module


@pytest.fixture(scope="module")
def two_backbones(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A placeholder-locked copy (as ``locked_copy``) whose params have a second backbone entry ``s96``."""
    return _placeholder_locked(tmp_path_factory.mktemp("backbones") / "repo",
                               {"backbones.entries": {"main": {}, "s96": {"train": {"image_size": 96}}}})


def _status(repo: Path) -> set[str]:
    out = subprocess.run([DVC, "status", "--json"], cwd=repo, env=_env(), capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return set(json.loads(out.stdout or "{}"))


def _dry(repo: Path) -> set[str]:
    out = subprocess.run([DVC, "repro", "--dry"], cwd=repo, env=_env(), capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    return {line.split("'")[1] for line in out.stdout.splitlines() if line.startswith("Running stage")}


#: The stages that read the primary backbone's features or predictions.
PRIMARY_CONSUMERS = {"groups", "fusion", "hierarchy", "ocr", "ocr_classifier"}


def test_editing_one_backbone_entry_reruns_that_backbone_and_its_consumers_only(two_backbones: Path) -> None:
    repo = two_backbones
    params = (repo / "params.yaml").read_text()
    slots = yaml.safe_load(params)["specific"]["slots"]
    try:
        # A second backbone's params: its own stage, and the ensemble (its component's weight).
        set_params(repo, {"backbones.entries.s96": {"train": {"image_size": 112}}})
        assert _status(repo) == _dry(repo) == {"train_backbone@s96", "ensemble"}
        # Once it re-ran (its outputs changed): the ensemble only, through the folder of every backbone.
        (repo / "params.yaml").write_text(params)
        (repo / "data/preds/backbone/s96/placeholder").write_text("new top-K\n")
        assert _status(repo) == {"train_backbone@s96", "ensemble"}  # s96: its outs differ from the lock
        (repo / "data/preds/backbone/s96/placeholder").write_text("placeholder\n")
        assert _status(repo) == set()
        # The primary's params: its stage and the ensemble; its new outputs: every primary consumer.
        set_params(repo, {"backbones.entries.main": {"train": {"seed": 1}}})
        assert _status(repo) == _dry(repo) == {"train_backbone@main", "ensemble"}
        (repo / "params.yaml").write_text(params)
        for out in ("data/preds/backbone/main/train_products.parquet", "data/features/main/placeholder"):
            (repo / out).write_text("new\n")
        assert _status(repo) == {"train_backbone@main", "ensemble", *PRIMARY_CONSUMERS,
                                 *(f"specific@{s}" for s in slots)}
        for out in ("data/preds/backbone/main/train_products.parquet", "data/features/main/placeholder"):
            (repo / out).write_text("placeholder\n")
        assert _status(repo) == set()
        # Removing an entry: its stage is gone, the ensemble re-runs without its component.
        set_params(repo, {"backbones.entries": {"main": {}}})
        assert _status(repo) == {"ensemble"}
    finally:
        (repo / "params.yaml").write_text(params)
