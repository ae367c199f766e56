"""``cdiscount submit``: runs the kaggle CLI only when it can work, prints the exact command otherwise.

Nothing here reaches the network: the runner, ``which``, the environment and the home folder
are all injected.
"""
from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path

import pytest

from cdiscount import kaggle_submit
from cdiscount.cli import main
from cdiscount.kaggle_submit import COMPETITION, default_message, find_credentials, kaggle_command, submit


class FakeRunner:
    def __init__(self, returncode: int = 0) -> None:
        self.calls: list[list[str]] = []
        self.returncode = returncode

    def __call__(self, argv: list[str], **kwargs) -> subprocess.CompletedProcess:
        self.calls.append(argv)
        return subprocess.CompletedProcess(argv, self.returncode)


@pytest.fixture()
def csv(tmp_path: Path) -> Path:
    path = tmp_path / "sub dir" / "submission.csv.gz"  # a space: the printed command must quote it
    path.parent.mkdir()
    path.write_bytes(b"not read by submit")
    return path


def which_kaggle(name: str) -> str | None:
    return "/opt/bin/kaggle" if name == "kaggle" else None


def which_nothing(name: str) -> None:
    return None


def test_runs_kaggle_when_cli_and_kaggle_json_exist(csv: Path, tmp_path: Path, capsys) -> None:
    home = tmp_path / "home"
    (home / ".kaggle").mkdir(parents=True)
    (home / ".kaggle" / "kaggle.json").write_text('{"username": "u", "key": "k"}')
    runner = FakeRunner()
    assert submit(csv, "exp-1: 0.61", runner=runner, which=which_kaggle, env={}, home=home) == 0
    assert runner.calls == [["/opt/bin/kaggle", "competitions", "submit", "-c", COMPETITION, "-f", str(csv),
                             "-m", "exp-1: 0.61"]]
    assert f"credentials from {home / '.kaggle' / 'kaggle.json'}" in capsys.readouterr().out


def test_a_failed_upload_returns_the_cli_status(csv: Path, tmp_path: Path) -> None:
    env = {"KAGGLE_USERNAME": "u", "KAGGLE_KEY": "k"}
    assert submit(csv, "m", runner=FakeRunner(returncode=1), which=which_kaggle, env=env, home=tmp_path) == 1


@pytest.mark.parametrize(
    "env, file, found",
    [
        ({"KAGGLE_USERNAME": "u", "KAGGLE_KEY": "k"}, None, "KAGGLE_USERNAME and KAGGLE_KEY"),
        ({"KAGGLE_API_TOKEN": "KGAT_x"}, None, "KAGGLE_API_TOKEN"),
        ({"KAGGLE_CONFIG_DIR": "{tmp}/cfg"}, "cfg/kaggle.json", "cfg/kaggle.json"),
        ({}, "home/.config/kaggle/kaggle.json", ".config/kaggle/kaggle.json"),
        ({"XDG_CONFIG_HOME": "{tmp}/xdg"}, "xdg/kaggle/kaggle.json", "xdg/kaggle/kaggle.json"),
        ({}, "home/.kaggle/kaggle.json", ".kaggle/kaggle.json"),
        ({}, "home/.kaggle/access_token", ".kaggle/access_token"),
    ],
)
def test_every_credential_source_is_found(tmp_path: Path, env: dict, file: str | None, found: str) -> None:
    env = {k: v.format(tmp=tmp_path) for k, v in env.items()}
    if file:
        (tmp_path / file).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / file).write_text("{}")
    assert found in find_credentials(env, tmp_path / "home")


def test_half_the_env_pair_is_not_credentials(tmp_path: Path) -> None:
    assert find_credentials({"KAGGLE_USERNAME": "u"}, tmp_path) is None
    assert find_credentials({"KAGGLE_CONFIG_DIR": str(tmp_path / "empty")}, tmp_path) is None


def test_prints_the_command_without_the_cli(csv: Path, tmp_path: Path, capsys) -> None:
    runner = FakeRunner()
    env = {"KAGGLE_USERNAME": "u", "KAGGLE_KEY": "k"}
    assert submit(csv, "it's exp-1", runner=runner, which=which_nothing, env=env, home=tmp_path) == 1
    assert runner.calls == []
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "not submitted: the kaggle CLI is not on PATH (pip install kaggle). To submit, run:"
    assert out[1].strip() == shlex.join(kaggle_command(csv, "it's exp-1"))
    assert shlex.split(out[1]) == ["kaggle", "competitions", "submit", "-c", COMPETITION, "-f", str(csv),
                                   "-m", "it's exp-1"]


def test_prints_the_command_without_credentials(csv: Path, tmp_path: Path, capsys) -> None:
    runner = FakeRunner()
    assert submit(csv, "m", runner=runner, which=which_kaggle, env={}, home=tmp_path / "home") == 1
    assert runner.calls == []
    out = capsys.readouterr().out
    assert "no Kaggle credentials" in out and "kaggle competitions submit -c" in out
    assert "not on PATH" not in out


def test_a_missing_file_is_not_submitted(tmp_path: Path, capsys) -> None:
    runner = FakeRunner()
    env = {"KAGGLE_USERNAME": "u", "KAGGLE_KEY": "k"}
    assert submit(tmp_path / "nope.csv", "m", runner=runner, which=which_kaggle, env=env, home=tmp_path) == 2
    assert runner.calls == [] and "does not exist" in capsys.readouterr().out


def test_default_message_uses_the_experiment_name_and_ensemble_accuracy(tmp_path: Path) -> None:
    (tmp_path / "ensemble.json").write_text(json.dumps({"product_accuracy": 0.61234, "components": {}}))
    (tmp_path / "backbone.json").write_text(json.dumps({"product_accuracy": 0.5}))
    msg = default_message(tmp_path, env={"DVC_EXP_NAME": "zesty-tuna"}, git=lambda args: "should not be used")
    assert msg == "zesty-tuna: val product_accuracy 0.6123 (ensemble)"


def test_default_message_falls_back_to_git_and_the_backbone(tmp_path: Path) -> None:
    (tmp_path / "ensemble.json").write_text("{not json")
    (tmp_path / "backbone.json").write_text(json.dumps({"val": {"product_accuracy": 0.5}}))
    answers = {"rev-parse --short HEAD": "4933655", "rev-parse --abbrev-ref HEAD": "main", "status": " M x.py"}

    def git(args: list[str]) -> str | None:
        return next(v for k, v in answers.items() if " ".join(args).startswith(k))

    expected = "4933655 on main +dirty: val product_accuracy 0.5000 (backbone)"
    assert default_message(tmp_path, env={}, git=git) == expected


def test_default_message_never_fails(tmp_path: Path) -> None:
    assert default_message(tmp_path / "nothing", env={}, git=lambda args: None) == "cdiscount-pipeline"
    clean = {"rev-parse --short HEAD": "abc1234", "rev-parse --abbrev-ref HEAD": "HEAD", "status": ""}
    assert default_message(tmp_path, env={}, git=lambda a: next(v for k, v in clean.items()
                                                                  if " ".join(a).startswith(k))) == "abc1234"


def test_cli_submit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, csv: Path, capsys) -> None:
    monkeypatch.chdir(tmp_path)  # no params.yaml: submit does not need one
    calls: list[dict] = []

    def fake_submit(path, message, *, competition):
        calls.append({"path": path, "message": message, "competition": competition})
        return 0

    monkeypatch.setattr(kaggle_submit, "submit", fake_submit)
    assert main(["submit", str(csv), "-m", "hello"]) == 0
    assert calls[-1] == {"path": csv, "message": "hello", "competition": COMPETITION}
    monkeypatch.setenv("DVC_EXP_NAME", "exp-x")
    assert main(["submit", str(csv)]) == 0
    assert calls[-1]["message"] == "exp-x"


def test_cli_submit_without_kaggle_prints_and_exits_1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      csv: Path, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))  # no kaggle executable anywhere
    assert main(["submit", str(csv), "-m", "m"]) == 1
    assert "kaggle competitions submit -c cdiscount-image-classification-challenge" in capsys.readouterr().out
