"""Process pools must fail fast, naming what the dead worker held, when a worker is killed
(OOM killer, ``kill -9``): each scenario runs in a subprocess with a deadline, so a pool that
would wait forever fails the test instead of hanging the suite."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DEADLINE_S = 20


def run_isolated(code: str, tmp_path: Path) -> dict:
    """Run ``code`` in a fresh interpreter (own process group) and return the JSON it prints last.

    Past :data:`DEADLINE_S` the whole group (the pool's workers included) is killed and the test fails.
    """
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO / "tests")])}
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=DEADLINE_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail(f"hung: no answer within {DEADLINE_S} s after a worker was killed")
    assert proc.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


def test_decode_blocks_fail_fast_naming_the_killed_workers_block(tmp_path: Path) -> None:
    result = run_isolated("""
        import json, os, signal
        import bson
        from cdiscount.blocks import iter_blocks, map_blocks

        path = "x.bson"
        with open(path, "wb") as f:
            for i in range(40):
                f.write(bson.encode({"_id": i, "imgs": [{"picture": b"\\xff\\xd8\\xff" + bytes(200)}]}))
        blocks = list(iter_blocks(path, 1000))
        victim = blocks[3]

        def fn(block, base, victim):
            if base == victim[0]:
                os.kill(os.getpid(), signal.SIGKILL)
            return base

        try:
            got = list(map_blocks(path, fn, victim, workers=2, block_size=1000, progress=False))
            print(json.dumps({"error": None, "results": len(got)}))
        except Exception as e:
            print(json.dumps({"error": type(e).__name__, "message": str(e), "victim": victim}))
    """, tmp_path)
    assert result["error"] == "WorkerLost", result
    base, n = result["victim"]
    assert "x.bson" in result["message"] and f"bytes [{base}, {base + n})" in result["message"]
    assert "SIGKILL" in result["message"] and "decode.workers / decode.block_size_mb" in result["message"]


def test_baseline_hashing_fails_fast_when_a_worker_is_killed(tmp_path: Path) -> None:
    result = run_isolated("""
        import json, os, signal
        from pathlib import Path
        import numpy as np
        from cdiscount import baseline

        class Store:  # no index needed: phash64 below hashes the row number
            def read_row(self, row):
                return row
            def close(self):
                pass

        baseline.open_store = lambda interim, split: Store()

        def phash64(row):
            if row == 2500:
                os.kill(os.getpid(), signal.SIGKILL)
            return np.uint64(row)

        baseline.phash64 = phash64
        try:
            baseline.hash_split(Path("."), "train", np.arange(6000), workers=2, progress=False)
            print(json.dumps({"error": None}))
        except Exception as e:
            print(json.dumps({"error": type(e).__name__, "message": str(e)}))
    """, tmp_path)
    assert result["error"] == "WorkerLost", result
    assert "train" in result["message"] and "baseline.workers" in result["message"]


def test_dedup_blank_check_fails_fast_when_a_worker_is_killed(tmp_path: Path) -> None:
    result = run_isolated("""
        import json, os, signal
        from pathlib import Path
        import numpy as np
        import pandas as pd
        from cdiscount import dedup

        dedup.source_bson = lambda interim, split: Path("x.bson")
        Path("x.bson").write_bytes(bytes(100))
        dedup.image_std = lambda jpeg: os.kill(os.getpid(), signal.SIGKILL)
        check = dedup._BlankCheck(Path("."), 3.0, workers=2)
        hashes = pd.DataFrame({"first_split": ["train"] * 5, "jpeg_offset": np.arange(5), "jpeg_length": [4] * 5,
                               "first_id": np.arange(5)})
        try:
            check(hashes)
            print(json.dumps({"error": None}))
        except Exception as e:
            print(json.dumps({"error": type(e).__name__, "message": str(e)}))
        finally:
            check.close()
    """, tmp_path)
    assert result["error"] == "WorkerLost", result
    assert "blank check" in result["message"] and "dedup.workers" in result["message"]


def test_ocr_pool_notices_a_killed_worker_and_goes_on(tmp_path: Path) -> None:
    """The OCR reader manages its own workers: a SIGKILLed one becomes an error row and is replaced."""
    result = run_isolated("""
        import hashlib, json, os, signal
        import cv2
        import numpy as np
        from cdiscount.ocr.engines import OcrEngine
        from cdiscount.ocr.preprocess import PreprocessConfig
        from cdiscount.ocr.reader import load_cache, read_images

        class KilledOnBlack(OcrEngine):
            name = "killed"
            def check(self): pass
            def warm_up(self): pass
            def settings(self): return {"engine": self.name}
            def read(self, image):
                if image.mean() < 20:
                    os.kill(os.getpid(), signal.SIGKILL)
                return "text"

        items = []
        for level in (0, 128, 255):
            data = cv2.imencode(".jpg", np.full((32, 32, 3), level, np.uint8))[1].tobytes()
            items.append((hashlib.md5(data).hexdigest(), data))
        s = read_images(items, KilledOnBlack(), PreprocessConfig(upscale=1.0, border=0, auto_invert=False),
                        "cache.parquet", workers=2, start_method="fork", progress=False)
        errors = load_cache("cache.parquet").set_index("md5")["error"]
        print(json.dumps({"errors": s.errors, "images": s.images, "black": errors[items[0][0]],
                          "others": [errors[m] for m, _ in items[1:]]}))
    """, tmp_path)
    assert (result["images"], result["errors"]) == (3, 1)
    assert result["black"] == f"worker died (exit code {-signal.SIGKILL})"
    assert result["others"] == ["", ""]
