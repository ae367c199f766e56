"""The ``cdiscount`` tools and the shared entry point of every stage script."""
import subprocess
import sys
from pathlib import Path

import pytest

from cdiscount.cli import build_parser, main
from cdiscount.runner import run_stage as runner
from conftest import REPO, run_stage

TOOLS = ["predict", "validate-submission", "submit", "preset", "report", "read-image", "archs", "code-deps",
         "synth"]


def test_help_lists_the_tools_and_no_stage() -> None:
    out = subprocess.run([sys.executable, "-m", "cdiscount.cli", "--help"], capture_output=True, text=True,
                         check=True).stdout
    commands = out.split("  COMMAND\n", 1)[1]
    listed = [line.split()[0] for line in commands.splitlines() if line.startswith("    ") and line[4] != " "]
    assert listed == TOOLS
    assert "stages/" in out  # says where the stages are


def test_a_stage_script_runs_by_hand_with_help() -> None:
    out = subprocess.run([sys.executable, "stages/split.py", "--help"], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0 and "Stage ``split``" in out.stdout and "--params" in out.stdout, out.stderr


@pytest.mark.parametrize("name", sorted(p.stem for p in (REPO / "stages").glob("*.py")))
def test_every_stage_explains_what_it_reads_writes_and_its_params(name: str, capsys) -> None:
    """`python stages/x.py --help` prints the stage's docstring."""
    with pytest.raises(SystemExit) as e:
        run_stage(name, "--help")
    out = capsys.readouterr().out
    assert e.value.code == 0 and f"Stage ``{name}" in out and "Reads" in out and "Writes" in out


def test_read_image_writes_the_jpeg(tiny_interim: Path, tmp_path: Path) -> None:
    import pandas as pd

    row = pd.read_parquet(tiny_interim / "train_images.parquet").iloc[3]
    out = tmp_path / "x.jpg"
    assert main(["read-image", "train", str(row["_id"]), str(row["img_idx"]), "-o", str(out),
                 "--interim", str(tiny_interim)]) == 0
    assert out.read_bytes()[:3] == b"\xff\xd8\xff" and len(out.read_bytes()) == row["jpeg_length"]


def test_read_image_without_decode_outputs_is_one_line_exit_2(tmp_path: Path, caplog) -> None:
    assert main(["read-image", "train", "1", "--interim", str(tmp_path)]) == 2
    assert "no decode outputs here" in caplog.text and str(tmp_path) in caplog.text


def test_missing_params_file_is_a_clear_error(tmp_path: Path, monkeypatch, caplog) -> None:
    monkeypatch.chdir(tmp_path)
    assert run_stage("split") == 2
    assert "params.yaml: params file not found" in caplog.text


def test_unknown_sample_param_is_rejected(tmp_path: Path, monkeypatch, caplog) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text("sample:\n  train_produts: 10\n")
    assert run_stage("sample") == 2
    assert "sample.train_produts: unknown key (did you mean sample.train_products?)" in caplog.text


def test_only_project_errors_become_exit_2_a_bug_keeps_its_traceback(caplog) -> None:
    from cdiscount.errors import ConfigError, InputError

    def fails(exc: Exception):
        def main(args) -> None:
            raise exc
        return main

    assert runner(fails(InputError("x.bson", "broken", offset=8, product_id=3)), None, ["--params", str(REPO / "params.yaml")]) == 2
    assert "x.bson, byte offset 8, _id 3: broken" in caplog.text
    assert runner(fails(ConfigError("split.seed = -1: an integer >= 0")), None,
                  ["--params", str(REPO / "params.yaml")]) == 2
    with pytest.raises(KeyError):
        runner(fails(KeyError("a bug")), None, ["--params", str(REPO / "params.yaml")])
    with pytest.raises(ZeroDivisionError):
        runner(fails(ZeroDivisionError()), None, ["--params", str(REPO / "params.yaml")])


def test_code_deps_prints_each_stage_with_its_files(capsys) -> None:
    assert main(["code-deps", "--root", str(REPO)]) == 0
    out = capsys.readouterr().out
    split = out.split("split:\n", 1)[1].split("\n\n", 1)[0].split(":\n", 1)[0]
    assert "  - src/cdiscount/split.py" in split and "  - stages/split.py" in split
    assert "  - src/cdiscount/train.py" not in split


@pytest.mark.parametrize("bad", ["--nope", "frobnicate", "decode"])
def test_bad_usage_exits_2(bad: str) -> None:
    with pytest.raises(SystemExit) as e:
        main([bad])
    assert e.value.code == 2


def test_parser_is_built_from_the_tool_table() -> None:
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert list(sub.choices) == TOOLS
