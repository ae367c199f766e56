"""Upload a submission with the official ``kaggle`` CLI, or say exactly what to run.

The pipeline never needs the network: when the CLI or credentials are missing (CI, an
offline box, a fresh clone) ``cdiscount submit`` prints the ready-to-paste command and why it
did not run it, instead of failing halfway. The default message ties the leaderboard entry
back to its experiment: the DVC experiment name or git commit, and the validation accuracy.
"""
from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

COMPETITION = "cdiscount-image-classification-challenge"
#: Metrics files tried in turn for the default message: the ensemble, else the backbone alone.
METRICS_FILES = ("ensemble.json", "backbone/main.json", "backbone.json", "baseline.json")


def kaggle_command(csv_path: str | Path, message: str, competition: str = COMPETITION) -> list[str]:
    """The argv of ``kaggle competitions submit`` for this file."""
    return ["kaggle", "competitions", "submit", "-c", competition, "-f", str(csv_path), "-m", message]


def find_credentials(env: Mapping[str, str] | None = None, home: Path | None = None) -> str | None:
    """Where the Kaggle CLI would find credentials, or None.

    The places the CLI reads (github.com/Kaggle/kaggle-api, docs/README.md): the
    ``KAGGLE_API_TOKEN`` variable or ``~/.kaggle/access_token`` (1.8+ tokens),
    ``KAGGLE_USERNAME`` + ``KAGGLE_KEY``, and ``kaggle.json`` in ``$KAGGLE_CONFIG_DIR``,
    ``$XDG_CONFIG_HOME/kaggle`` (default ``~/.config/kaggle``) or ``~/.kaggle``. Only presence is
    checked, never the contents: a wrong key is the CLI's to report.
    """
    env = os.environ if env is None else env
    home = Path(env.get("HOME") or Path.home()) if home is None else home
    if env.get("KAGGLE_API_TOKEN"):
        return "environment variable KAGGLE_API_TOKEN"
    if env.get("KAGGLE_USERNAME") and env.get("KAGGLE_KEY"):
        return "environment variables KAGGLE_USERNAME and KAGGLE_KEY"
    candidates: list[Path] = []
    if env.get("KAGGLE_CONFIG_DIR"):
        candidates.append(Path(env["KAGGLE_CONFIG_DIR"]) / "kaggle.json")
    candidates.append(Path(env.get("XDG_CONFIG_HOME") or home / ".config") / "kaggle" / "kaggle.json")
    candidates += [home / ".kaggle" / "kaggle.json", home / ".kaggle" / "access_token",
                   home / ".kaggle" / "access_token.txt"]
    for path in candidates:
        if path.is_file():
            return str(path)
    return None


def submit(
    csv_path: str | Path,
    message: str,
    *,
    competition: str = COMPETITION,
    runner: Callable[..., Any] = subprocess.run,
    which: Callable[[str], str | None] = shutil.which,
    env: Mapping[str, str] | None = None,
    home: Path | None = None,
    echo: Callable[[str], None] = print,
) -> int:
    """Run ``kaggle competitions submit`` when it can work; else print the command. Returns an exit code.

    0 when the upload ran and succeeded, the CLI's own status when it failed, 1 when the command
    was only printed (so ``cdiscount submit && ...`` never mistakes that for an upload), 2 when
    the file does not exist. ``runner``, ``which``, ``env`` and ``home`` are injectable so tests
    never reach the network.
    """
    csv_path = Path(csv_path)
    cmd = kaggle_command(csv_path, message, competition)
    if not csv_path.is_file():
        echo(f"not submitted: {csv_path} does not exist (run `dvc repro` first)")
        return 2
    exe = which("kaggle")
    creds = find_credentials(env, home)
    if exe is None or creds is None:
        why = []
        if exe is None:
            why.append("the kaggle CLI is not on PATH (pip install kaggle)")
        if creds is None:
            why.append("no Kaggle credentials (KAGGLE_API_TOKEN, KAGGLE_USERNAME + KAGGLE_KEY, or kaggle.json in "
                       "$KAGGLE_CONFIG_DIR, ~/.config/kaggle or ~/.kaggle)")
        echo(f"not submitted: {'; '.join(why)}. To submit, run:")
        echo(f"  {shlex.join(cmd)}")
        return 1
    echo(f"submitting with credentials from {creds}: {shlex.join(cmd)}")
    result = runner([exe, *cmd[1:]], check=False)
    return int(getattr(result, "returncode", 1))


def default_message(
    metrics_dir: str | Path = "metrics",
    *,
    env: Mapping[str, str] | None = None,
    git: Callable[[Sequence[str]], str | None] | None = None,
) -> str:
    """``<experiment>: val product_accuracy 0.6123 (ensemble)``, from what is available.

    The experiment is ``$DVC_EXP_NAME`` (set by ``dvc exp run`` for queued experiments), else
    the short git commit and branch, marked ``+dirty`` when the tree has changes; the accuracy is
    read from the first of :data:`METRICS_FILES` that has one. Nothing here may fail: a
    submission message is never worth an error.
    """
    env = os.environ if env is None else env
    git = _git if git is None else git
    name = env.get("DVC_EXP_NAME")
    if not name:
        commit = git(["rev-parse", "--short", "HEAD"])
        branch = git(["rev-parse", "--abbrev-ref", "HEAD"])
        dirty = git(["status", "--porcelain", "--untracked-files=no"])
        if commit:
            name = commit + (f" on {branch}" if branch and branch != "HEAD" else "") + (" +dirty" if dirty else "")
    name = name or "cdiscount-pipeline"
    metrics = _validation_accuracy(Path(metrics_dir))
    return f"{name}: {metrics}" if metrics else name


def _validation_accuracy(metrics_dir: Path) -> str | None:
    for file in METRICS_FILES:
        path = metrics_dir / file
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        acc = _find_accuracy(data)
        if acc is not None:
            return f"val product_accuracy {acc:.4f} ({path.stem})"
    return None


def _find_accuracy(data: Any) -> float | None:
    """``product_accuracy`` at the top level, else under an ``ensemble`` / ``val`` / ``validation`` key."""
    if not isinstance(data, dict):
        return None
    value = data.get("product_accuracy")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    for key in ("ensemble", "val", "validation"):
        found = _find_accuracy(data.get(key))
        if found is not None:
            return found
    return None


def _git(args: Sequence[str]) -> str | None:
    try:
        out = subprocess.run(["git", *args], capture_output=True, text=True, check=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()
