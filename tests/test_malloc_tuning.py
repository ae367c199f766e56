"""Inference fixes glibc's mmap threshold: a batch-sized buffer freed and allocated again keeps its own
mapping (handed back at ``free``) instead of moving into the heap, where such buffers piled up (issue 11:
the backbone's inference grew ~1 KB per picture with the dynamic threshold)."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import REPO

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc (Linux) only")

#: Runs ``infer_split`` over four pictures, then frees a 10.8 MB array (one batch of [512 x 5,270] float32
#: probabilities), allocates it again and prints by how many bytes that grew malloc's mapped blocks.
PROBE = """
import ctypes, io, sys, tempfile
from pathlib import Path
import numpy as np, pandas as pd
from PIL import Image
from cdiscount.infer import infer_split
from cdiscount.models.registry import build_backbone

class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]

libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
buf = io.BytesIO()
Image.new("RGB", (16, 16), (200, 30, 30)).save(buf, "JPEG")

class Store:
    def read_row(self, row):
        return buf.getvalue()

out = Path(tempfile.mkdtemp())
infer_split(build_backbone("vanilla_cnn", 3, "none").eval(), Store(),
            pd.DataFrame({"_id": [1, 1, 2, 3], "img_idx": [0, 1, 0, 0]}), 16, feature_dir=None,
            image_preds=out / "i.parquet", product_preds=out / "p.parquet", top_k=2, workers=0, progress=False)
first = np.ones(512 * 5270, np.float32)
del first  # glibc's dynamic threshold rises to this block's size here
before = libc.mallinfo2().hblkhd
again = np.ones(512 * 5270, np.float32)
print("MAPPED", libc.mallinfo2().hblkhd - before, again.nbytes)
"""


def _mapped(env: dict[str, str]) -> tuple[int, int]:
    proc = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    line = next(l for l in proc.stdout.splitlines() if l.startswith("MAPPED"))
    mapped, nbytes = map(int, line.split()[1:])
    return mapped, nbytes


def test_inference_keeps_batch_sized_buffers_in_their_own_mapping() -> None:
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_MMAP_THRESHOLD_"}
    mapped, nbytes = _mapped(dict(env, PYTHONPATH=str(REPO / "src")))
    assert mapped >= nbytes, f"the re-allocated {nbytes}-byte buffer came from the heap (mapped: {mapped})"


def test_the_environment_variable_wins(monkeypatch) -> None:
    from cdiscount.malloc_tuning import fix_mmap_threshold

    mapped, nbytes = _mapped(dict(os.environ, MALLOC_MMAP_THRESHOLD_="33554432", PYTHONPATH=str(REPO / "src")))
    assert mapped < nbytes  # a 32 MB threshold set by the user: the 10.8 MB buffer stays in the heap
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "33554432")
    assert fix_mmap_threshold() is False


#: Prints the backend of Arrow's default pool after ``run_stage(..., streaming=...)`` ran a stage's main.
STAGE_PROBE = """
import sys, pyarrow as pa
from cdiscount.runner import run_stage
seen = []
params = sys.argv[1]
run_stage(lambda args: seen.append(pa.default_memory_pool().backend_name), None, ["--params", params],
          streaming=sys.argv[2] == "1")
print("POOL", seen[0])
"""


@pytest.mark.parametrize("streaming, env, want", [
    (True, {}, "system"),  # the streaming stages: Arrow's freed pages go back, not into mimalloc's cache
    (False, {}, "mimalloc"),  # the model stages keep pyarrow's default
    (True, {"ARROW_DEFAULT_MEMORY_POOL": "jemalloc"}, "jemalloc"),  # the user's choice wins
])
def test_streaming_stages_run_with_arrow_in_the_system_allocator(streaming: bool, env: dict[str, str], want: str,
                                                                 tmp_path) -> None:
    import pyarrow as pa

    if want != "system" and want not in pa.supported_memory_backends():
        pytest.skip(f"this pyarrow has no {want} pool")
    (tmp_path / "params.yaml").write_text("{}\n")
    base = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    proc = subprocess.run([sys.executable, "-c", STAGE_PROBE, str(tmp_path / "params.yaml"), str(int(streaming))],
                          cwd=REPO, env=dict(base, **env, PYTHONPATH=str(REPO / "src")), capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert f"POOL {want}" in proc.stdout.splitlines()


def test_flat_memory_fixes_the_threshold_unless_the_user_set_it(monkeypatch) -> None:
    import pyarrow as pa

    from cdiscount.malloc_tuning import flat_memory

    before = pa.default_memory_pool()
    assert before.backend_name != "system", "this test needs pyarrow's bundled allocator as the default"
    try:
        monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "33554432")
        monkeypatch.setenv("ARROW_DEFAULT_MEMORY_POOL", "system")
        assert flat_memory() == {"mmap_threshold": False, "arrow_system_pool": False}
        assert pa.default_memory_pool().backend_name == before.backend_name  # nothing touched
    finally:
        pa.set_memory_pool(before)
