"""Killed and interrupted stages: loud, local and recoverable (nothing half-written, nothing hashed)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from PIL import Image

from cdiscount.atomic import atomic_dir, atomic_path, clear_stale, publish
from cdiscount.sample import draw
from conftest import REPO, run_stage, write_bson


def _raw(root: Path, n: int) -> Path:
    """A Kaggle-format folder with ``n`` one-picture train products (and 10 test ones)."""
    raw = root / "raw"
    raw.mkdir()
    pic = draw.to_jpeg(Image.new("RGB", (8, 8), (200, 10, 10)), 90)
    write_bson(raw / "train.bson", [{"_id": i, "category_id": 10, "imgs": [{"picture": pic}]} for i in range(n)])
    write_bson(raw / "test.bson", [{"_id": i, "imgs": [{"picture": pic}]} for i in range(10)])
    (raw / "category_names.csv").write_text("category_id,category_level1,category_level2,category_level3\n10,A,B,C\n")
    return raw


def _workdir(tmp_path: Path, raw: Path) -> Path:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["data"]["raw_dir"] = str(raw)
    params["decode"]["workers"] = 0
    work = tmp_path / "work"
    work.mkdir()
    (work / "params.yaml").write_text(yaml.safe_dump(params))
    return work


def test_sigterm_mid_stage_exits_143_and_leaves_no_temp_and_no_output(tmp_path: Path) -> None:
    work = _workdir(tmp_path, _raw(tmp_path, 150_000))
    proc = subprocess.Popen([sys.executable, str(REPO / "stages/decode.py"), "-q"], cwd=work,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    interim = work / "data/interim"
    deadline = time.monotonic() + 60
    while not list(interim.glob(".*.tmp")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, "decode finished before it could be interrupted: make the input larger"
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 143, out
    assert "terminated (SIGTERM): stopped; no output was replaced" in out and "Traceback" not in out
    assert [p.name for p in interim.iterdir()] == [], "temp files or outputs left behind"


def test_a_rerun_removes_what_a_killed_run_left_and_dvc_ignores_it(tmp_path: Path, monkeypatch, caplog) -> None:
    """kill -9 cannot clean up: its temps stay, DVC never hashes them, the next run removes them."""
    work = _workdir(tmp_path, _raw(tmp_path, 20))
    interim = work / "data/interim"
    (interim / ".decode-parts.k1ll3d.tmp").mkdir(parents=True)
    (interim / ".decode-parts.k1ll3d.tmp" / "part-000.parquet").write_bytes(b"x" * 100)
    (interim / ".train_products.parquet.abc123.tmp").write_bytes(b"half")
    ignored = subprocess.run([str(Path(sys.executable).parent / "dvc"), "check-ignore", "-q",
                              "data/interim/.train_products.parquet.abc123.tmp"], cwd=REPO)
    assert ignored.returncode == 0  # .dvcignore covers every temp name
    monkeypatch.chdir(work)
    assert run_stage("decode") == 0
    assert not list(interim.glob(".*")), list(interim.glob(".*"))
    assert "left by a killed run" in caplog.text and (interim / "train_products.parquet").exists()


def test_clear_stale_removes_only_temp_names(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    keep = [tmp_path / "out" / "a.parquet", tmp_path / "out" / ".hidden", tmp_path / "b.tmp"]
    for p in keep:
        p.write_text("")
    (tmp_path / ".out.x1.tmp").mkdir()
    (tmp_path / "out" / ".a.parquet.y2.tmp").write_text("")
    removed = clear_stale([tmp_path / "out", tmp_path / "out" / "a.parquet"])
    assert sorted(p.name for p in removed) == [".a.parquet.y2.tmp", ".out.x1.tmp"]
    assert all(p.exists() for p in keep)


def test_outputs_get_the_umask_mode_not_mkstemps_0600(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        with atomic_path(tmp_path / "f.json") as t:
            t.write_text("{}")
        with atomic_dir(tmp_path / "d") as t:
            (t / "x").write_text("")
        with publish({"p": tmp_path / "p.parquet"}) as t:
            t["p"].write_text("")
        os.umask(0o027)
        with atomic_path(tmp_path / "g.json") as t:
            t.write_text("{}")
    finally:
        os.umask(old)
    mode = {p.name: p.stat().st_mode & 0o777 for p in tmp_path.iterdir()}
    assert mode == {"f.json": 0o644, "d": 0o755, "p.parquet": 0o644, "g.json": 0o640}


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_an_interrupted_atomic_write_leaves_nothing(tmp_path: Path, sig: int) -> None:
    code = f"""
import os, signal, sys, time
from pathlib import Path
from cdiscount.atomic import atomic_path
from cdiscount.runner import run_stage

# Ctrl-C as at a terminal: a parent that ignores SIGINT (a background job, some CI runners) would
# otherwise pass the ignore down and the interrupt would never arrive.
signal.signal(signal.SIGINT, signal.default_int_handler)

def main(args):
    with atomic_path(Path({str(tmp_path)!r}) / "out.json") as t:
        t.write_text("half")
        os.kill(os.getpid(), {int(sig)})
        time.sleep(5)

sys.exit(run_stage(main, None, ["--params", {str(REPO / "params.yaml")!r}]))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == (143 if sig == signal.SIGTERM else 130), out.stderr
    assert list(tmp_path.iterdir()) == []


def test_skip_mode_never_drops_a_test_product(tmp_path: Path) -> None:
    """A bad train record is skipped and listed; a bad test record stops decode, naming it: a test
    product dropped here would be missing from the submission, which Kaggle rejects."""
    from dataclasses import replace

    from cdiscount.decode import run_decode
    from cdiscount.errors import InputError
    from conftest import DECODE

    raw = _raw(tmp_path, 5)
    pic = draw.to_jpeg(Image.new("RGB", (8, 8)), 90)
    write_bson(raw / "test.bson", [{"_id": 1, "imgs": [{"picture": pic}]}, {"_id": 2, "imgs": [{"picture": b"GIF89a"}]}])
    skip = replace(DECODE, on_error="skip")
    with pytest.raises(InputError, match=r"test.bson, byte offset \d+, _id 2: .*not a JPEG.*cannot be skipped"):
        run_decode(raw, tmp_path / "interim", tmp_path / "m", skip, progress=False)
    write_bson(raw / "train.bson", [{"_id": 7, "category_id": 10, "imgs": [{"picture": b"GIF89a"}]},
                                    {"_id": 8, "category_id": 10, "imgs": [{"picture": pic}]}])
    write_bson(raw / "test.bson", [{"_id": 1, "imgs": [{"picture": pic}]}])
    metrics = run_decode(raw, tmp_path / "interim", tmp_path / "m", skip, progress=False)
    assert metrics["train_products"] == 1 and metrics["train_skipped_records"] == 1 and metrics["test_products"] == 1


def test_an_interrupt_during_the_cleanup_of_temps_still_removes_every_temp(tmp_path: Path) -> None:
    """A stage fails inside ``publish`` and SIGTERM lands while its temps are being removed: every temp
    must still go (the fresh-clone CI once found ``.train_images.parquet.*.tmp`` left this way)."""
    code = f"""
import os, signal, sys
from pathlib import Path
from cdiscount.atomic import publish
from cdiscount.runner import run_stage

real_exists = Path.exists
sent = []

def exists(self, *a, **k):  # the cleanup's first look at a temp: the moment SIGTERM arrives
    if self.name.endswith(".tmp") and not sent:
        sent.append(1)
        os.kill(os.getpid(), signal.SIGTERM)
    return real_exists(self, *a, **k)

def main(args):
    out = Path({str(tmp_path)!r})
    with publish({{"a": out / "a.parquet", "b": out / "b.parquet"}}):
        Path.exists = exists
        raise RuntimeError("the stage failed")

sys.exit(run_stage(main, None, ["--params", {str(REPO / "params.yaml")!r}]))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 143, out.stderr
    assert list(tmp_path.iterdir()) == [], "a temp survived the interrupted cleanup"


_SIGNAL_IN_A_CRITICAL_MOMENT = """
import os, signal, sys, tempfile, threading, time
from pathlib import Path
from cdiscount import atomic
from cdiscount.runner import run_stage

# A second thread, as every real stage has (BLAS, arrow, tqdm): while the main thread blocks SIGTERM the
# kernel hands a process-directed SIGTERM to this one, and Python still runs the handler in the main thread.
threading.Thread(target=time.sleep, args=(60,), daemon=True).start()
out = Path({out!r})
moment = {moment!r}
sent = []

def kill_once():
    if not sent:
        sent.append(1)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.2)  # the other thread takes it

def wrap(fn):
    def wrapped(*a, **k):
        result = fn(*a, **k)
        kill_once()
        return result
    return wrapped

if moment in ("create", "scratch"):
    tempfile.mkstemp, tempfile.mkdtemp = wrap(tempfile.mkstemp), wrap(tempfile.mkdtemp)

def main(args):
    if moment == "scratch":
        with atomic.scratch_dir(out, "parts") as parts:
            time.sleep(5)
    with atomic.publish({{"a": out / "a.parquet", "b": out / "b.parquet"}}) as tmp:
        for t in tmp.values():
            t.write_text("x")
        if moment == "rename":
            os.replace = wrap(os.replace)
        if moment == "cleanup":
            real_exists = Path.exists
            def exists(self, *a, **k):
                if self.name.endswith(".tmp"):
                    kill_once()
                return real_exists(self, *a, **k)
            Path.exists = exists
            raise RuntimeError("the stage failed")
    time.sleep(5)

sys.exit(run_stage(main, None, ["--params", {params!r}]))
"""


@pytest.mark.parametrize("moment", ["create", "scratch", "rename", "cleanup"])
def test_sigterm_taken_by_another_thread_still_leaves_no_temp_and_no_half_publish(tmp_path: Path, moment: str) -> None:
    """SIGTERM arriving while a temp is made and recorded, while outputs are renamed or while temps are
    removed: blocking the signal in the main thread is not enough (the fresh-clone CI once found
    ``.train_products.parquet.*.tmp`` left behind: the kernel had given SIGTERM to another thread and
    Python ran the handler in the middle of that moment)."""
    code = _SIGNAL_IN_A_CRITICAL_MOMENT.format(out=str(tmp_path), moment=moment, params=str(REPO / "params.yaml"))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 143, out.stderr
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left in ([], ["a.parquet", "b.parquet"]), f"temps left or only some outputs replaced: {left}"
    assert left == (["a.parquet", "b.parquet"] if moment == "rename" else [])
