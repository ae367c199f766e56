import subprocess
import sys
from pathlib import Path

import pytest

from cdiscount.cli import COMMANDS, main


def test_help_lists_every_command() -> None:
    out = subprocess.run([sys.executable, "-m", "cdiscount.cli", "--help"], capture_output=True, text=True, check=True)
    for name in COMMANDS:
        assert name in out.stdout


def test_every_stage_script_is_a_thin_cli_call() -> None:
    stages = Path(__file__).resolve().parents[1] / "stages"
    for script in stages.glob("*.py"):
        text = script.read_text()
        assert f'main(["{script.stem.replace("_", "-")}"' in text and len(text.splitlines()) < 20, script


def test_read_image_writes_the_jpeg(tiny_interim: Path, tmp_path: Path) -> None:
    import pandas as pd

    row = pd.read_parquet(tiny_interim / "train_images.parquet").iloc[3]
    out = tmp_path / "x.jpg"
    assert main(["read-image", "train", str(row["_id"]), str(row["img_idx"]), "-o", str(out),
                 "--interim", str(tiny_interim)]) == 0
    assert out.read_bytes()[:3] == b"\xff\xd8\xff" and len(out.read_bytes()) == row["jpeg_length"]


def test_missing_params_file_is_a_clear_error(tmp_path: Path, monkeypatch, caplog) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["-q", "split"]) == 2
    assert "params.yaml" in caplog.text


def test_unknown_sample_param_is_rejected(tmp_path: Path, monkeypatch, caplog) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text("sample:\n  train_produts: 10\n")
    assert main(["-q", "sample"]) == 2
    assert "train_produts" in caplog.text


@pytest.mark.parametrize("bad", ["--nope", "frobnicate"])
def test_bad_usage_exits_2(bad: str) -> None:
    with pytest.raises(SystemExit) as e:
        main([bad])
    assert e.value.code == 2
