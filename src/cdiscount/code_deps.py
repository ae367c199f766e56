"""Which source files a stage runs: its script plus every ``cdiscount`` module it imports, transitively.

DVC re-runs a stage when one of its listed deps changes, so a module missing from a stage's
deps in ``dvc.yaml`` leaves outputs made by old code "up to date". This derives the exact list
from the code (every ``import`` anywhere in a file, function-local ones included, counts) so a
test can compare it with ``dvc.yaml`` and ``cdiscount code-deps`` can print what to write there.
"""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = "cdiscount"


def _module_file(src: Path, module: str) -> Path | None:
    """The file of a dotted ``cdiscount`` module under ``src`` (package -> its ``__init__.py``)."""
    parts = module.split(".")
    base = src.joinpath(*parts)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _module_name(src: Path, file: Path) -> str:
    rel = file.relative_to(src).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imported_modules(file: Path, module: str | None) -> set[str]:
    """Dotted names of every module ``file`` may import (``from x import y``: ``x`` and ``x.y``)."""
    is_package = file.name == "__init__.py"
    names: set[str] = set()
    for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"), str(file))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                if module is None:
                    continue
                package = module.split(".") if is_package else module.split(".")[:-1]
                package = package[: len(package) - (node.level - 1)]
                base = ".".join(package + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            names.add(base)
            names.update(f"{base}.{a.name}" for a in node.names)
    return {n for n in names if n == PACKAGE or n.startswith(PACKAGE + ".")}


def code_deps(script: Path, src: Path) -> set[Path]:
    """Every file ``script`` runs: itself and the ``cdiscount`` modules (and their parent packages)
    it imports, transitively. ``src`` is the folder holding the ``cdiscount`` package."""
    seen: set[Path] = {script}
    todo: list[tuple[Path, str | None]] = [(script, None)]
    while todo:
        file, module = todo.pop()
        for name in _imported_modules(file, module):
            parts = name.split(".")
            for i in range(1, len(parts) + 1):  # importing a.b.c runs a, a.b and a.b.c
                dotted = ".".join(parts[:i])
                found = _module_file(src, dotted)
                if found is not None and found not in seen:
                    seen.add(found)
                    todo.append((found, _module_name(src, found)))
    return seen


def as_deps(files: set[Path], root: Path) -> list[str]:
    """``dvc.yaml`` dep entries for ``files``: a folder stands for its files when the stage runs all
    of its ``.py`` files (``src/cdiscount/models``), else each file is listed."""
    rel = {f.resolve().relative_to(root.resolve()) for f in files}
    out: set[Path] = set(rel)
    for folder in sorted({p.parent for p in rel}, key=lambda p: len(p.parts)):
        if folder == Path(".") or folder.name == PACKAGE or folder.parent == Path("."):
            continue
        every = {p.relative_to(root.resolve()) for p in (root.resolve() / folder).rglob("*.py")}
        if every and every <= rel and not any(parent in out for parent in folder.parents):
            out = {p for p in out if folder not in p.parents} | {folder}
    return sorted(str(p) for p in out)


def stage_code_deps(root: Path) -> dict[str, list[str]]:
    """stage name -> its code deps, for every stage of ``root/dvc.yaml`` (``python stages/x.py`` commands)."""
    import yaml

    stages = yaml.safe_load((root / "dvc.yaml").read_text())["stages"]
    out = {}
    for name, body in stages.items():
        cmd = body.get("do", body)["cmd"].split()
        out[name] = as_deps(code_deps(root / cmd[1], root / "src"), root)
    return out
