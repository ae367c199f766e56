"""Each stage's wiring agrees with dvc.yaml: exact code deps, the same data paths, strict params.

DVC re-runs a stage only when a listed dep changes; a module a stage imports but does not list
leaves outputs of old code "up to date". These tests derive the imports from the code.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import yaml

from cdiscount.code_deps import as_deps, code_deps
from conftest import REPO

SRC = REPO / "src"
STAGES = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]


def _body(name: str) -> dict:
    return STAGES[name].get("do", STAGES[name])


def _script(name: str) -> Path:
    cmd = _body(name)["cmd"].split()
    assert cmd[0] == "python" and cmd[1].startswith("stages/"), cmd
    return REPO / cmd[1]


def _code(deps: list[str]) -> set[str]:
    return {d for d in deps if d.startswith(("stages/", "src/")) and not d.endswith((".csv", ".ttf"))}


@pytest.mark.parametrize("name", sorted(STAGES))
def test_dvc_yaml_lists_exactly_the_code_each_stage_runs(name: str) -> None:
    want = set(as_deps(code_deps(_script(name), SRC), REPO))
    have = _code(_body(name)["deps"])
    assert have == want, (f"stage {name}: add {sorted(want - have)}, remove {sorted(have - want)} "
                          "(`cdiscount code-deps` prints every stage's list)")


def test_code_deps_follow_relative_function_local_and_package_imports(tmp_path: Path) -> None:
    pkg = tmp_path / "cdiscount"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from .leaf import x\n")
    (pkg / "sub" / "leaf.py").write_text("x = 1\n")
    (pkg / "a.py").write_text("def f():\n    from .b import g\n    return g\n")
    (pkg / "b.py").write_text("from . import c\nfrom .sub import x\ng = 1\n")
    (pkg / "c.py").write_text("import os\n")
    (pkg / "unused.py").write_text("")
    script = tmp_path / "stage.py"
    script.write_text("import cdiscount.a\n")
    got = {p.relative_to(tmp_path).as_posix() for p in code_deps(script, tmp_path)}
    assert got == {"stage.py", "cdiscount/__init__.py", "cdiscount/a.py", "cdiscount/b.py", "cdiscount/c.py",
                   "cdiscount/sub/__init__.py", "cdiscount/sub/leaf.py"}
    assert as_deps(code_deps(script, tmp_path), tmp_path) == [
        "cdiscount/__init__.py", "cdiscount/a.py", "cdiscount/b.py", "cdiscount/c.py", "cdiscount/sub", "stage.py"]


def _stage_module(name: str):
    spec = importlib.util.spec_from_file_location(f"stage_{name}", _script(name))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _data_paths(body: dict) -> set[str]:
    paths = {d for d in body.get("deps", []) if not d.startswith(("stages/", "src/"))}
    for key in ("outs", "metrics", "plots"):
        for entry in body.get(key, []):
            paths.add(next(iter(entry)) if isinstance(entry, dict) else entry)
    return {p for p in paths if "${data." not in p}


@pytest.mark.parametrize("name", sorted(STAGES))
def test_stage_script_declares_the_paths_dvc_yaml_lists(name: str) -> None:
    """Every path in the stage's dvc.yaml entry is one of the script's path constants or inside one,
    and every constant is such a path or a folder holding some: running the script by hand
    reads and writes what DVC tracks."""
    constants = {v.as_posix() for v in vars(_stage_module(name)).values() if isinstance(v, Path)}
    listed = {p.replace("${item}", "").replace("${key}", "").replace("${backbones.primary}", "").rstrip("/")
              for p in _data_paths(_body(name))}  # a foreach item / backbone name: a file or folder in a constant

    def covered(p: str, by: set[str]) -> bool:
        return any(p == c or p.startswith(c + "/") for c in by)

    assert not [p for p in listed if not covered(p, constants)], f"{name}: dvc.yaml paths the script does not name"
    unlisted = [c for c in constants if not any(covered(p, {c}) or covered(c, {p}) for p in listed)]
    assert not unlisted, f"{name}: script paths dvc.yaml does not list"


#: The stages whose memory must stay flat in the data size (issue 11's streaming stages): they run under
#: ``malloc_tuning.flat_memory``; the model stages keep the default allocators (a CPU model pays for a fixed
#: mmap threshold in page faults).
STREAMING = {"decode", "dedup", "split", "hierarchy", "ensemble", "submission"}


@pytest.mark.parametrize("name", sorted(STAGES))
def test_the_streaming_stages_and_only_they_ask_for_flat_memory(name: str) -> None:
    import ast

    calls = [n for n in ast.walk(ast.parse(_script(name).read_text()))
             if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "run_stage"]
    assert len(calls) == 1, f"{_script(name)}: one run_stage call expected"
    streaming = any(k.arg == "streaming" and isinstance(k.value, ast.Constant) and k.value.value is True
                    for k in calls[0].keywords)
    assert streaming == (name in STREAMING), f"{_script(name)}: streaming={streaming}"
