"""bench/scale.py's pure parts: fits, extrapolation, targets, table, the stage plan, the process-tree sampler.
Nothing here is timed: the sampler test checks what it sees, not how fast anything runs."""
import importlib.util
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import REPO

_spec = importlib.util.spec_from_file_location("bench_scale", REPO / "bench" / "scale.py")
scale = importlib.util.module_from_spec(_spec)
sys.modules["bench_scale"] = scale  # its dataclasses look their module up
_spec.loader.exec_module(scale)


def test_power_fit_recovers_the_exponent_and_needs_two_sizes() -> None:
    n = [1e3, 1e4, 1e5]
    a, c = scale.power_fit(n, [3 * x**1.5 for x in n])
    assert a == pytest.approx(1.5) and c == pytest.approx(3)
    assert scale.power_fit([10, 10], [1, 2]) is None
    assert scale.power_fit(n, [0, 0, 0]) is None  # nothing positive to fit


def test_extrapolation_takes_the_worse_of_power_and_affine() -> None:
    # a fixed 100 s plus 1 ms per product: the power law fitted at small N bends down, the affine one does not
    n = [7_070, 21_210, 70_699]
    y = [100 + 0.001 * x for x in n]
    e = scale.extrapolate(n, y, 7_069_896)
    assert e["exponent"] < 0.5
    assert e["affine"] == pytest.approx(100 + 0.001 * 7_069_896)
    assert e["worst"] == e["affine"] > e["power"]
    k, c = scale.affine_fit([1, 2, 3], [5, 4, 3])  # shrinking: no per-product cost, the mean is fixed
    assert (k, c) == (0.0, 4.0)


def _results(stage: str, walls, rss, rc=0):
    fs = [0.001, 0.003]
    return [scale.StageResult(f, stage, round(f * 7_069_896), rc, w, w, m, 1, 1.0) for f, w, m in zip(fs, walls, rss)]


def test_targets_pass_and_fail_as_the_issue_defines_them() -> None:
    rows = (_results("decode", [10, 30], [200, 200]) + _results("specific@g0", [10, 90], [500, 4500])
            + _results("ensemble", [10, 30], [300, 900]) + _results("fusion", [5, 15], [100, 300], rc=1))
    a = scale.analyse(rows)
    assert a["decode"]["time_exponent"] == pytest.approx(1.0, abs=1e-3)
    assert set(a["decode"]["targets"].values()) == {"PASS"}
    g0 = a["specific@g0"]["targets"]
    assert g0["time exponent <= 1.1"] == "FAIL" and g0["peak memory at F=1.0 <= 24 GB"] == "FAIL"
    assert "memory flat (streaming)" not in g0
    assert a["ensemble"]["targets"]["memory flat (streaming)"] == "FAIL"  # exponent 1: grows with N
    assert a["fusion"]["targets"]["completes"] == "FAIL"
    assert not a["decode"]["memory_mb_at_0.1_measured"] and a["decode"]["memory_metric"] == "RSS"  # no PSS read
    assert "FAIL in all" in scale.targets_report(a)


def test_memory_is_judged_on_pss_where_every_row_has_one_and_measured_values_beat_fits() -> None:
    # A backbone stage with 3 forked workers: summed RSS 4.5 GB at F = 0.1 counts torch's shared pages
    # four times; its PSS (1.9 GB) is what the machine needs.
    def row(f: float, wall: float, rss: float, pss: float) -> "scale.StageResult":
        return scale.StageResult(f, "train_backbone@main", round(f * 7_069_896), 0, wall, wall, rss, 4, 1.0, pss)

    a = scale.analyse([row(0.01, 400, 4400, 1800), row(0.1, 3000, 4500, 1900)])["train_backbone@main"]
    assert a["memory_metric"] == "PSS" and a["memory_mb_at_0.1"] == 1900 and a["memory_mb_at_0.1_measured"]
    assert a["targets"]["peak memory at F=0.1 <= 3 GB"] == "PASS"
    rss_only = scale.analyse([row(0.01, 400, 4400, 0), row(0.1, 3000, 4500, 1900)])["train_backbone@main"]
    assert rss_only["memory_metric"] == "RSS" and rss_only["targets"]["peak memory at F=0.1 <= 3 GB"] == "FAIL"
    # A fraction that ran at F = 1.0 reports its measured time, not the fit through the others.
    io = [scale.StageResult(f, "dedup", round(f * 7_069_896), 0, w, w, 500, 1, 1.0, 300)
          for f, w in ((0.01, 10), (0.1, 40), (1.0, 500))]
    d = scale.analyse(io)["dedup"]
    assert d["wall_s_at_1"] == 500 and d["wall_s_at_1_measured"] and d["memory_mb_at_1"] == 300
    assert "| 0.14 |" in scale.table(io, scale.analyse(io))  # 500 s = 0.14 h, no "~": measured
    assert "~" in scale.table(io[:2], scale.analyse(io[:2]))  # extrapolated


def test_reuse_reports_whole_pipeline_fractions_and_an_io_only_one_together(tmp_path: Path, capsys) -> None:
    results = tmp_path / "cache" / "results"
    results.mkdir(parents=True)

    def measured(f: float, mode: str, stages: list[str], code: str) -> None:
        rows = [scale.asdict(scale.StageResult(f, s, round(f * 7_069_896), 0, 10 * f, 10 * f, 100, 1, 1.0, 50))
                for s in stages]
        res = {"fraction": f, "train_products": round(f * 7_069_896), "synth": {"wall_s": 1.0}, "stages": rows,
               "plain_loop_train_s": 1.0, "decode_train_mb_per_s": 2.0, "train_bson_mb": 3.0}
        (results / f"{f:g}-0-bank-32px-{mode}-{code}.json").write_text(scale.json.dumps(res))

    code = scale.fingerprint()
    measured(0.1, "all", ["decode", "dedup", "split", "ensemble"], code)
    measured(1.0, "io", ["decode", "dedup", "split"], code)
    measured(0.01, "all", ["decode", "dedup", "split", "ensemble"], "0ldc0de0ldc0")
    argv = ["0.01", "0.1", "--io-only", "1.0", "--reuse", "--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "out")]
    assert scale.main(argv) == 0
    out = capsys.readouterr().out
    assert "F=0.01 (all): not measured on this code yet" in out and "F=1 (io, code" in out
    report = scale.json.loads((tmp_path / "out" / "scale.json").read_text())
    assert [pf["fraction"] for pf in report["fractions"]] == [0.1, 1.0]
    assert report["analysis"]["dedup"]["fractions"] == [0.1, 1.0] and report["analysis"]["ensemble"]["fractions"] == [0.1]
    assert scale.main([*argv, "--other-code"]) == 0  # the older measurement joins, labelled
    assert "measured on other code (0ldc0de0ldc0" in capsys.readouterr().out
    report = scale.json.loads((tmp_path / "out" / "scale.json").read_text())
    assert report["analysis"]["dedup"]["fractions"] == [0.01, 0.1, 1.0]


def test_table_has_a_row_per_stage_and_the_fits() -> None:
    rows = _results("decode", [10, 30], [200, 200]) + _results("specific@g0", [1, 3], [50, 50], rc=2)[:1]
    text = scale.table(rows, scale.analyse(rows))
    lines = text.splitlines()
    assert lines[0].startswith("| stage | F=0.001 wall s") and "F=1 wall h" in lines[0]
    assert lines[2].startswith("| decode | 10.0 |") and "1.00" in lines[2]
    assert "(rc 2)" in lines[3] and lines[-1].startswith("| **total**")
    one = [r for r in rows if r.fraction == 0.001]  # one fraction: no fit, dashes
    assert "| - | - |" in scale.table(one, scale.analyse(one))


def test_stage_plan_reads_dvc_yaml_in_dependency_order_with_foreach_entries(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # names do not depend on where it runs from (DVC addressing does)
    plan = scale.stage_plan(REPO, skip=["sample", "baseline"])
    names = [s for s, _ in plan]
    assert "sample" not in names and "baseline" not in names
    assert names.index("decode") < names.index("dedup") < names.index("split") < names.index("groups")
    foreach = [s for s in names if "@" in s]
    assert foreach and all(names.index("groups") < names.index(s) < names.index("hierarchy") for s in foreach
                           if s.startswith("specific@"))
    assert names[-1] == "submission"
    outs = dict(plan)
    assert REPO / "data" / "interim" in outs["decode"]
    assert scale.stage_plan(REPO, skip=["sample", "baseline", "specific"]) == [p for p in plan if not p[0].startswith("specific@")]
    assert scale.group_of("specific@g3") == "specific" and scale.group_of("fusion") == "fusion"


def test_sampler_sums_the_rss_of_a_process_tree_and_measure_counts_its_cpu(tmp_path: Path) -> None:
    """A parent and a forked child each hold 150 MB and spin: the summed peak sees both, the CPU both."""
    code = textwrap.dedent("""
        import os, time
        block = bytearray(150 * 2**20)
        for i in range(0, len(block), 4096): block[i] = 1          # touch every page
        pid = os.fork()
        if pid == 0:
            mine = bytearray(150 * 2**20)
            for i in range(0, len(mine), 4096): mine[i] = 1
            t = time.process_time()
            while time.process_time() - t < 0.6: pass
            time.sleep(0.6)
            os._exit(0)
        t = time.process_time()
        while time.process_time() - t < 0.6: pass
        os.waitpid(pid, 0)
    """)
    m = scale.measure([sys.executable, "-c", code], cwd=tmp_path, interval=0.05, log=tmp_path / "log")
    assert m.rc == 0 and m.processes == 2
    assert 150 < m.peak_pss_mb < m.peak_rss_mb  # PSS counts the parent's pages shared with the child once
    assert m.peak_rss_mb > 2 * 150 + 100  # each holds its own 150 MB; parent's pages count in the child too
    assert m.cpu_s >= 1.1  # 0.6 s of each, the waited child included
    assert m.wall_s >= 0.6


def test_tree_bytes_counts_files_and_folders(tmp_path: Path) -> None:
    (tmp_path / "d" / "e").mkdir(parents=True)
    (tmp_path / "d" / "e" / "x").write_bytes(b"a" * 10)
    (tmp_path / "f").write_bytes(b"b" * 5)
    assert scale.tree_bytes([tmp_path / "d", tmp_path / "f", tmp_path / "missing"]) == 15


def test_copy_of_the_repository_carries_uncommitted_changes(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / "a.txt").write_text("committed")
    (repo / "src").mkdir()
    (repo / "src" / "code.py").write_text("x = 1")
    (repo / "gone.txt").write_text("x")
    (repo / ".gitignore").write_text("ignored/\n")
    subprocess.run([*git, "add", "-A"], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-qm", "c"], cwd=repo, check=True)
    (repo / "a.txt").write_text("changed")
    (repo / "new.txt").write_text("new")
    (repo / "gone.txt").unlink()
    (repo / "ignored").mkdir()
    (repo / "ignored" / "big").write_text("not copied")
    dest = scale.copy_repository(tmp_path / "copy", repo)
    assert (dest / "a.txt").read_text() == "changed" and (dest / "new.txt").read_text() == "new"
    assert not (dest / "gone.txt").exists() and not (dest / "ignored").exists()
    assert scale.fingerprint(repo) == scale.fingerprint(dest)  # the same code
    before = scale.fingerprint(repo)
    (repo / "src" / "code.py").write_text("x = 2")  # the code the stages run: another fingerprint
    assert scale.fingerprint(repo) != before
    (repo / "src" / "code.py").write_text("x = 1")
    (repo / "new.txt").write_text("outside the measured code")
    assert scale.fingerprint(repo) == before and scale.commit_label(repo).endswith("+changes")


def test_sampler_reads_the_pss_of_a_peak_shorter_than_its_pss_period(tmp_path: Path) -> None:
    """A stage whose memory peak lasts less than the periodic PSS read (every pss_every-th sample) still
    gets its PSS: a new RSS peak triggers a read (at F = 0.01 short stages reported a PSS of 3 MB)."""
    code = textwrap.dedent("""
        import time
        time.sleep(0.3)
        block = bytearray(200 * 2**20)
        for i in range(0, len(block), 4096): block[i] = 1
        time.sleep(0.4)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code])
    sampler = scale.TreeSampler(proc.pid, interval=0.05, pss_every=1000).start()  # periodic: first sample only
    proc.wait()
    sampler.stop()
    assert sampler.peak_bytes > 200 * 2**20
    assert sampler.peak_pss_bytes > 180 * 2**20
