"""Real-scale benchmark (``make bench-scale`` / ``python bench/scale.py [F ...]``), issue 11.

For each fraction F of the real Cdiscount counts:
  1. ``cdiscount synth --fraction F --pictures bank`` into a cache outside the repository
     (``~/.cache/cdiscount-scale/<F>-<seed>-<mode>-<px>px``; generated once, reused);
  2. a temporary copy of this repository (``git clone`` of HEAD, then the working tree's changes
     copied over it), with ``params.yaml`` set to the ``scale`` preset and ``data.raw_dir`` = that folder;
  3. every stage of ``dvc.yaml`` (foreach entries expanded, in dependency order, read from DVC's own
     index: nothing here names a stage) with ``dvc repro -s <stage>``, measuring per stage: wall s,
     CPU s (user + sys of the whole process tree, reaped children included), peak RSS summed over the
     process tree (psutil, polled every 0.2 s: forked workers' shared pages count once per process, so
     this is an upper bound), and the bytes of the stage's outs.
Then prints one table, the growth exponents between the fractions (time ~ N^a, peak memory ~ N^b, least
squares in log-log), the extrapolation to F = 1.0 on this machine, and the issue's targets with
PASS / FAIL. Writes ``metrics/scale.json``, ``metrics/scale.csv`` (``dvc plots show metrics/scale.csv
-x train_products -y wall_s``) and, where matplotlib is installed, ``metrics/scale.png``.

``--io-only F`` runs ``decode -> dedup -> split`` only at F (for F = 1.0: 12.4 M pictures, about 16 GB
of BSON at 32 px), after the whole pipeline at the fractions given (if any); the report joins both, so
the streaming stages get their exponent up to the real size. Memory targets are judged on the summed PSS
(see :func:`analyse`). Each fraction's measurements are also kept in the cache (``results/``, keyed by the
code's fingerprint), so fractions can be measured in separate sessions (``flock`` runs under 20 min)
and reported together with ``--reuse``.

Nothing here is a test: the targets are printed, never asserted.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("CDISCOUNT_SCALE_CACHE", Path.home() / ".cache" / "cdiscount-scale"))
REAL_TRAIN_PRODUCTS = 7_069_896
DEFAULT_FRACTIONS = (0.003, 0.01, 0.03)
IO_STAGES = ("decode", "dedup", "split")

#: Issue 11, deliverable 4.
TIME_EXPONENT_MAX = 1.1
RSS_AT_TENTH_MAX_MB = 3000
RSS_AT_FULL_MAX_MB = 24000
#: Stages that stream: peak RSS must not grow with N. "Flat" here: memory exponent <= FLAT_EXPONENT
#: and the affine extrapolation to F = 1.0 within RSS_AT_TENTH_MAX_MB.
STREAMING = ("decode", "dedup", "split", "hierarchy", "ensemble", "submission")
FLAT_EXPONENT = 0.1


# --------------------------------------------------------------------------------------------
# Measuring one process tree


class TreeSampler:
    """Peak of the RSS summed over a process and all its descendants, polled every ``interval`` s.

    A thread: ``start()`` after the process is spawned, ``stop()`` once it has exited. Processes
    that live less than ``interval`` may be missed; the summed RSS counts pages shared between
    forked processes once per process (an upper bound of the real footprint).
    """

    def __init__(self, pid: int, interval: float = 0.2, pss_every: int = 10) -> None:
        # PSS walks every page table of the tree (/proc/PID/smaps_rollup, tens of ms for a GB-sized
        # process): every pss_every-th sample only. psutil's memory_full_info, read every 0.2 s,
        # took a whole core from a 2-core run.
        self.pid, self.interval, self.pss_every = pid, interval, pss_every
        self.cpu_s = 0.0
        self.peak_bytes = 0
        self.peak_pss_bytes = 0  # proportional set size: shared pages split between their processes
        self.peak_processes = 0
        self.samples = 0
        self._pss_at_rss = 0  # the largest summed RSS at which PSS was read
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> int:
        import psutil

        try:
            root = psutil.Process(self.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            return 0
        total = pss = 0
        alive = []
        for p in procs:
            try:
                total += p.memory_info().rss  # /proc/PID/statm: cheap
                alive.append(p)
            except psutil.Error:  # exited between listing and reading
                continue
        # PSS every pss_every-th sample, and at every new RSS peak (5 % above the last): a stage shorter
        # than pss_every x interval (2 s), or one whose peak lasts less, still gets the PSS of its peak.
        periodic = self.pss_every > 0 and self.samples % self.pss_every == 0
        if periodic or (self.pss_every > 0 and total > self._pss_at_rss * 1.05):
            pss = sum(_pss(p.pid) for p in alive)
            self._pss_at_rss = max(self._pss_at_rss, total)
        self.samples += 1
        if total > self.peak_bytes:
            self.peak_bytes, self.peak_processes = total, len(procs)
        self.peak_pss_bytes = max(self.peak_pss_bytes, pss)
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)
        self.cpu_s = time.thread_time()  # this thread's own cost, to show it stayed small

    def start(self) -> TreeSampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def _pss(pid: int) -> int:
    """Proportional set size of one process in bytes (Linux ``smaps_rollup``; 0 where unreadable)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as f:
            for line in f:
                if line.startswith(b"Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


@dataclass
class Measured:
    rc: int
    wall_s: float
    cpu_s: float
    peak_rss_mb: float
    processes: int
    log_tail: str = ""
    peak_pss_mb: float = 0.0
    sampler_cpu_s: float = 0.0


def measure(argv: Sequence[str], *, cwd: Path, env: dict[str, str] | None = None, interval: float = 0.2,
            timeout: float | None = None, log: Path | None = None) -> Measured:
    """Run ``argv`` and measure it: wall, CPU of the tree (RUSAGE_CHILDREN delta: every descendant
    reaped by its parent counts), peak summed RSS. Output goes to ``log`` (its tail is kept)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = open(log, "wb") if log else subprocess.DEVNULL
    t0 = time.perf_counter()
    try:
        proc = subprocess.Popen(list(argv), cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
        sampler = TreeSampler(proc.pid, interval).start()
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 15)
            rc = proc.wait()
            rc = rc if rc else 124
        finally:
            sampler.stop()
    finally:
        if log:
            out.close()
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    tail = log.read_text(errors="replace")[-2000:] if log and log.exists() else ""
    return Measured(rc, round(wall, 2), round(cpu, 2), round(sampler.peak_bytes / 2**20, 1),
                    sampler.peak_processes, tail, round(sampler.peak_pss_bytes / 2**20, 1), round(sampler.cpu_s, 2))


def tree_bytes(paths: Sequence[Path]) -> int:
    """Bytes of files under each path (a file or a folder); missing paths count 0."""
    total = 0
    for p in paths:
        if p.is_file():
            total += p.stat().st_size
        elif p.is_dir():
            total += sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
    return total


# --------------------------------------------------------------------------------------------
# Pure parts: fits, extrapolation, targets, table


def power_fit(n: Sequence[float], y: Sequence[float]) -> tuple[float, float] | None:
    """Least squares of log y = log c + a log n: returns (a, c), or None with < 2 distinct n."""
    n, y = np.asarray(n, float), np.asarray(y, float)
    ok = (n > 0) & (y > 0)
    if len(np.unique(n[ok])) < 2:
        return None
    a, logc = np.polyfit(np.log(n[ok]), np.log(y[ok]), 1)
    return float(a), float(math.exp(logc))


def affine_fit(n: Sequence[float], y: Sequence[float]) -> tuple[float, float] | None:
    """Least squares of y = c + k n with k >= 0 (a fixed cost plus a per-product one): (k, c)."""
    n, y = np.asarray(n, float), np.asarray(y, float)
    if len(np.unique(n)) < 2:
        return None
    k, c = np.polyfit(n, y, 1)
    if k < 0:  # shrinking with N: no per-product cost measurable, the mean is the fixed cost
        return 0.0, float(y.mean())
    return float(k), float(c)


def extrapolate(n: Sequence[float], y: Sequence[float], target: float) -> dict[str, float] | None:
    """y at ``target`` products by the power law and by the affine law. The power law fitted at small N
    (where fixed costs dominate) bends down; the affine one is linear from the measured slope; the
    larger of the two is what the targets are judged on."""
    p, a = power_fit(n, y), affine_fit(n, y)
    if p is None or a is None:
        return None
    power = p[1] * target ** p[0]
    affine = a[1] + a[0] * target
    return {"exponent": round(p[0], 3), "power": power, "affine": affine, "worst": max(power, affine)}


@dataclass
class StageResult:
    fraction: float
    stage: str
    train_products: int
    rc: int
    wall_s: float
    cpu_s: float
    peak_rss_mb: float
    processes: int
    out_mb: float
    peak_pss_mb: float = 0.0  # summed PSS (shared pages counted once in all): the tree's real footprint


def group_of(stage: str) -> str:
    """A foreach entry's group (``specific@g3`` -> ``specific``); other stages are their own."""
    return stage.split("@", 1)[0]


def memory_of(r: StageResult, metric: str) -> float:
    """A row's peak memory in MB by ``metric``: "PSS" (the tree's real footprint) or "RSS" (summed)."""
    return r.peak_pss_mb if metric == "PSS" else r.peak_rss_mb


def analyse(results: Sequence[StageResult], *, full: int = REAL_TRAIN_PRODUCTS) -> dict[str, dict[str, Any]]:
    """Per stage: exponents, values at F = 0.1 and F = 1.0 (measured where that fraction ran, else
    extrapolated), and the targets' verdicts.

    Memory is judged on the summed PSS where every row of the stage has one: the summed RSS counts the
    pages a forked worker shares with its parent (torch, the imported libraries) once per process, which
    at 2-3 DataLoader workers doubles a backbone stage's figure without a byte more being needed. Rows
    without PSS (older results, or a platform without ``smaps_rollup``) fall back to RSS; the metric used
    is part of the row (``memory_metric``)."""
    by: dict[str, list[StageResult]] = {}
    for r in results:
        by.setdefault(r.stage, []).append(r)
    out: dict[str, dict[str, Any]] = {}
    for stage, rs in by.items():
        rs = sorted(rs, key=lambda r: r.train_products)
        n = [r.train_products for r in rs]
        done = all(r.rc == 0 for r in rs)
        metric = "PSS" if all(r.peak_pss_mb > 0 for r in rs) else "RSS"
        mem = [memory_of(r, metric) for r in rs]

        def at(fraction: float, values: Sequence[float], fit: dict[str, float] | None) -> tuple[float | None, bool]:
            """The value at ``fraction``: measured if that fraction ran, else the fit's worst case."""
            hit = [v for r, v in zip(rs, values) if abs(r.fraction - fraction) < 1e-9]
            if hit:
                return hit[0], True
            return (fit and round(fit["worst"], 1)), False

        t = extrapolate(n, [r.wall_s for r in rs], full)
        t10 = extrapolate(n, [r.wall_s for r in rs], full / 10)
        m = extrapolate(n, mem, full)
        m10 = extrapolate(n, mem, full / 10)
        wall1, wall1_measured = at(1.0, [r.wall_s for r in rs], t)
        wall10, _ = at(0.1, [r.wall_s for r in rs], t10)
        mem10, mem10_measured = at(0.1, mem, m10)
        mem1, mem1_measured = at(1.0, mem, m)
        rss = extrapolate(n, [r.peak_rss_mb for r in rs], full)
        row: dict[str, Any] = {
            "fractions": [r.fraction for r in rs], "completed": done, "memory_metric": metric,
            "time_exponent": t and t["exponent"], "memory_exponent": m and m["exponent"],
            "rss_exponent": rss and rss["exponent"],
            "wall_s_at_1": wall1, "wall_s_at_1_measured": wall1_measured, "wall_s_at_0.1": wall10,
            "cpu_s_at_1": None,
            "memory_mb_at_0.1": mem10, "memory_mb_at_0.1_measured": mem10_measured,
            "memory_mb_at_1": mem1, "memory_mb_at_1_measured": mem1_measured,
            "out_mb_at_1": None,
        }
        c = extrapolate(n, [r.cpu_s for r in rs], full)
        o = affine_fit(n, [r.out_mb for r in rs])  # outputs are data: linear (a power law breaks on empty outs)
        row["cpu_s_at_1"], _ = at(1.0, [r.cpu_s for r in rs], c)
        row["out_mb_at_1"], _ = at(1.0, [r.out_mb for r in rs], o and {"worst": o[1] + o[0] * full})
        row["targets"] = targets(stage, row)
        out[stage] = row
    return out


def targets(stage: str, row: dict[str, Any]) -> dict[str, str]:
    """PASS / FAIL / n/a per target of issue 11 (deliverable 4) for one stage's analysis row."""
    def verdict(ok: bool | None) -> str:
        return "n/a" if ok is None else ("PASS" if ok else "FAIL")

    a, b = row["time_exponent"], row["memory_exponent"]
    tenth, full = row["memory_mb_at_0.1"], row["memory_mb_at_1"]
    out = {
        "completes": verdict(row["completed"]),
        f"time exponent <= {TIME_EXPONENT_MAX}": verdict(None if a is None else a <= TIME_EXPONENT_MAX),
        f"peak memory at F=0.1 <= {RSS_AT_TENTH_MAX_MB / 1000:g} GB": verdict(None if tenth is None else
                                                                             tenth <= RSS_AT_TENTH_MAX_MB),
    }
    if group_of(stage) in STREAMING:
        out["memory flat (streaming)"] = verdict(None if b is None or full is None else
                                                 b <= FLAT_EXPONENT and full <= RSS_AT_TENTH_MAX_MB)
    else:
        out[f"peak memory at F=1.0 <= {RSS_AT_FULL_MAX_MB / 1000:g} GB"] = verdict(None if full is None else
                                                                                 full <= RSS_AT_FULL_MAX_MB)
    return out


def _fmt(v: Any, spec: str = "") -> str:
    if v is None:
        return "-"
    return format(v, spec) if spec else str(v)


def table(results: Sequence[StageResult], analysis: dict[str, dict[str, Any]]) -> str:
    """One Markdown table: a row per stage, per fraction wall / CPU / peak RSS / outs, then the fit."""
    fractions = sorted({r.fraction for r in results})
    stages = list(dict.fromkeys(r.stage for r in results))
    cell = {(r.stage, r.fraction): r for r in results}
    head = ["stage"]
    for f in fractions:
        head += [f"F={f:g} wall s", "CPU s", "peak RSS MB", "PSS MB", "outs MB"]
    head += ["time exp", "mem exp", "F=1 wall h", "F=1 mem GB", "F=1 outs GB"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for s in stages:
        row = [s]
        for f in fractions:
            r = cell.get((s, f))
            if r is None:
                row += ["", "", "", "", ""]
            else:
                wall = f"{r.wall_s:.1f}" + ("" if r.rc == 0 else f" (rc {r.rc})")
                row += [wall, f"{r.cpu_s:.1f}", f"{r.peak_rss_mb:.0f}", _fmt(round(r.peak_pss_mb) if r.peak_pss_mb else None),
                        f"{r.out_mb:.1f}"]
        a = analysis.get(s, {})
        wall1, mem1, out1 = a.get("wall_s_at_1"), a.get("memory_mb_at_1"), a.get("out_mb_at_1")
        mark = "" if a.get("wall_s_at_1_measured") else "~"  # ~: extrapolated (F = 1.0 did not run)

        def at_full(v: float | None, unit: float, spec: str) -> str:
            return "-" if v is None else f"{mark}{v / unit:{spec}}"

        row += [_fmt(a.get("time_exponent"), ".2f"), _fmt(a.get("memory_exponent"), ".2f"),
                at_full(wall1, 3600, ".2f"), at_full(mem1, 1000, ".1f"), at_full(out1, 1000, ".1f")]
        lines.append("| " + " | ".join(row) + " |")
    totals = ["**total**"]
    for f in fractions:
        rs = [r for r in results if r.fraction == f]
        totals += [f"{sum(r.wall_s for r in rs):.1f}", f"{sum(r.cpu_s for r in rs):.1f}",
                   f"{max(r.peak_rss_mb for r in rs):.0f}", "", f"{sum(r.out_mb for r in rs):.1f}"]
    wall1 = [a["wall_s_at_1"] for a in analysis.values() if a.get("wall_s_at_1")]
    out1 = [a["out_mb_at_1"] for a in analysis.values() if a.get("out_mb_at_1")]
    totals += ["", "", _fmt(sum(wall1) / 3600 if wall1 else None, ".2f"), "",
               _fmt(sum(out1) / 1000 if out1 else None, ".1f")]
    lines.append("| " + " | ".join(totals) + " |")
    return "\n".join(lines)


def targets_report(analysis: dict[str, dict[str, Any]]) -> str:
    lines = []
    for stage, a in analysis.items():
        marks = ", ".join(f"{k}: {v}" for k, v in a["targets"].items())
        lines.append(f"  {stage:<18} [{a['memory_metric']}] {marks}")
    fails = sum(v == "FAIL" for a in analysis.values() for v in a["targets"].values())
    measured = any(a.get("memory_mb_at_0.1_measured") for a in analysis.values())
    lines.append(f"  {fails} FAIL in all" + ("" if measured else " (peak memory at F=0.1 extrapolated, not measured)"))
    lines.append("  memory: [PSS] summed proportional set size of the stage's process tree (shared pages split "
                 "between the processes sharing them), [RSS] summed resident size where no PSS was read; "
                 "F = 0.1 / 1.0 values are measured where that fraction ran, else the worst of the two fits")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# The run: data, a copy of the repository, the stages


#: What the stages run: a change elsewhere (this benchmark, tests, README) keeps earlier results valid.
MEASURED_CODE = ("src", "stages", "dvc.yaml", "params.yaml", "pyproject.toml")


def fingerprint(repo: Path = REPO) -> str:
    """A hash of the code the stages run (:data:`MEASURED_CODE` at HEAD plus the working tree's changes
    to it): results measured on the same code share it, whatever was committed since."""
    def git(*args: str) -> bytes:
        return subprocess.run(["git", *args], cwd=repo, capture_output=True, check=True).stdout

    h = hashlib.sha1()
    for p in MEASURED_CODE:
        h.update(subprocess.run(["git", "rev-parse", f"HEAD:{p}"], cwd=repo, capture_output=True).stdout)
    h.update(git("diff", "HEAD", "--binary", "--", *MEASURED_CODE))
    for p in _changed_files(repo)[1]:
        if p.split("/", 1)[0] in MEASURED_CODE:
            h.update(p.encode() + (repo / p).read_bytes())
    return h.hexdigest()[:12]


def commit_label(repo: Path = REPO) -> str:
    """HEAD's short commit, with ``+changes`` when the working tree differs from it."""
    head = subprocess.run(["git", "rev-parse", "--short=7", "HEAD"], cwd=repo, capture_output=True,
                          text=True, check=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain"], cwd=repo, capture_output=True, text=True).stdout.strip()
    return head + ("+changes" if dirty else "")


def _changed_files(repo: Path) -> tuple[list[str], list[str], list[str]]:
    """(modified, untracked-not-ignored, deleted) paths relative to the repository."""
    def ls(*args: str) -> list[str]:
        out = subprocess.run(["git", "ls-files", "-z", *args], cwd=repo, capture_output=True, check=True).stdout
        return [p for p in out.decode().split("\0") if p]

    deleted = ls("--deleted")
    modified = [p for p in ls("--modified") if p not in set(deleted)]
    return modified, ls("--others", "--exclude-standard"), deleted


def copy_repository(dest: Path, repo: Path = REPO) -> Path:
    """``git clone`` of HEAD into ``dest``, then the working tree's uncommitted changes over it."""
    subprocess.run(["git", "clone", "--quiet", "--no-hardlinks", str(repo), str(dest)], check=True)
    modified, untracked, deleted = _changed_files(repo)
    for p in modified + untracked:
        (dest / p).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(repo / p, dest / p)
    for p in deleted:
        (dest / p).unlink(missing_ok=True)
    return dest


def data_folder(fraction: float, seed: int, pictures: str, px: int, cache: Path = CACHE) -> Path:
    return cache / f"{fraction:g}-{seed}-{pictures}-{px}px"


def generate(fraction: float, seed: int, pictures: str, px: int, cache: Path, env: dict[str, str]) -> tuple[Path, dict]:
    """The synthetic Kaggle folder for ``fraction`` (generated once; the summary says how long it took)."""
    out = data_folder(fraction, seed, pictures, px, cache)
    summary_path = out.with_name(out.name + ".summary.json")
    if (out / "test_solution.csv").exists() and summary_path.exists():
        return out, json.loads(summary_path.read_text())
    print(f"synth F={fraction:g} -> {out}", flush=True)
    cache.mkdir(parents=True, exist_ok=True)  # the log sits beside the data
    m = measure([sys.executable, "-m", "cdiscount.cli", "synth", "--fraction", str(fraction), "--out", str(out),
                 "--seed", str(seed), "--picture-px", str(px), "--pictures", pictures], cwd=REPO, env=env,
                log=cache / f"synth-{out.name}.log")
    if m.rc:
        raise SystemExit(f"synth F={fraction:g} failed (rc {m.rc}):\n{m.log_tail}")
    summary = {"wall_s": m.wall_s, "cpu_s": m.cpu_s, "peak_rss_mb": m.peak_rss_mb,
               "bytes": tree_bytes([out])}
    summary_path.write_text(json.dumps(summary, indent=1))
    return out, summary


def apply_params(clone: Path, overrides: list[str]) -> None:
    """``params.yaml`` of the copy with ``overrides`` applied by DVC's own ``-S`` code."""
    from dvc.utils.hydra import apply_overrides

    apply_overrides(clone / "params.yaml", overrides)


def stage_plan(clone: Path, skip: Sequence[str]) -> list[tuple[str, list[Path]]]:
    """Every stage of the copy's ``dvc.yaml`` (foreach entries expanded) in dependency order (ties in
    file order), with its outs; ``skip`` names stages or foreach groups to leave out."""
    import networkx as nx
    from dvc.repo import Repo

    repo = Repo(str(clone))
    try:
        stages = list(repo.index.stages)
        position = {s.name: i for i, s in enumerate(stages)}  # name: "specific@g0" (addressing is relative to the cwd)
        graph = repo.index.graph.reverse()  # DVC's edges point from a stage to what it depends on
        order = nx.lexicographical_topological_sort(graph, key=lambda s: position[s.name])
        return [(s.name, [clone / o.def_path for o in s.outs]) for s in order
                if s.name in position and s.name not in skip and group_of(s.name) not in skip]
    finally:
        repo.close()


def plain_loop_seconds(bson_path: Path) -> float:
    """The plain Kaggle loop (``bson.decode_file_iter`` + MD5 per picture) over the file, one core."""
    code = ("import bson, hashlib, sys, time\nt = time.perf_counter()\n"
            "for d in bson.decode_file_iter(open(sys.argv[1], 'rb')):\n"
            "    for i in d['imgs']: hashlib.md5(i['picture']).hexdigest()\n"
            "print(time.perf_counter() - t)")
    out = subprocess.run([sys.executable, "-c", code, str(bson_path)], capture_output=True, text=True, check=True)
    return float(out.stdout.strip())


def run_fraction(fraction: float, args: argparse.Namespace, env: dict[str, str], *, io_only: bool = False) -> dict[str, Any]:
    """Generate, copy, run every stage; returns this fraction's measurements."""
    from cdiscount.presets import resolve_preset

    data, synth_summary = generate(fraction, args.seed, args.pictures, args.picture_px, args.cache, env)
    runs = args.cache / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    clone = Path(tempfile.mkdtemp(prefix=f"{fraction:g}-", dir=runs))
    results: list[dict[str, Any]] = []
    try:
        copy_repository(clone / "repo")
        clone = clone / "repo"
        overrides, _ = resolve_preset("scale", sample=False)
        apply_params(clone, [*overrides, f"data.raw_dir={data}", *args.set])
        plan = stage_plan(clone, args.skip)
        if io_only:
            plan = [(s, o) for s, o in plan if s in IO_STAGES]
        stage_env = dict(env, PYTHONPATH=str(clone / "src"))
        n_train = round(fraction * REAL_TRAIN_PRODUCTS)
        for stage, outs in plan:
            print(f"F={fraction:g} {stage} ...", end=" ", flush=True)
            m = measure([str(Path(sys.executable).parent / "dvc"), "repro", "-s", stage], cwd=clone, env=stage_env,
                        interval=args.poll, timeout=args.stage_timeout, log=clone.parent / f"{stage}.log")
            r = StageResult(fraction, stage, n_train, m.rc, m.wall_s, m.cpu_s, m.peak_rss_mb, m.processes,
                            round(tree_bytes(outs) / 1e6, 2), m.peak_pss_mb)
            print(f"rc {m.rc}, {m.wall_s:.1f} s wall, {m.cpu_s:.1f} s CPU, {m.peak_rss_mb:.0f} MB peak "
                  f"(PSS {m.peak_pss_mb:.0f} MB) "
                  f"({m.processes} processes), outs {r.out_mb:.1f} MB, sampler {m.sampler_cpu_s:.1f} s CPU", flush=True)
            results.append(asdict(r))
            if m.rc:
                print(m.log_tail, flush=True)
                break  # what follows needs this stage's outputs
        plain = plain_loop_seconds(data / "train.bson")
        decode = json.loads((clone / "metrics" / "decode.json").read_text()) if (clone / "metrics" / "decode.json").exists() else {}
    finally:
        if not args.keep:
            shutil.rmtree(clone.parent if clone.name == "repo" else clone, ignore_errors=True)
    return {"fraction": fraction, "train_products": round(fraction * REAL_TRAIN_PRODUCTS), "synth": synth_summary,
            "stages": results, "plain_loop_train_s": round(plain, 2),
            "decode_train_mb_per_s": decode.get("train_mb_per_s"),
            "train_bson_mb": round((data / "train.bson").stat().st_size / 1e6, 1)}


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("fractions", nargs="*", type=float, help=f"default: {' '.join(map(str, DEFAULT_FRACTIONS))}")
    ap.add_argument("--io-only", type=float, metavar="F", help="also (or, without fractions, only) run decode -> "
                                                             "dedup -> split at F")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--pictures", choices=["bank", "draw"], default="bank", help="synth's picture mode")
    ap.add_argument("--picture-px", type=int, default=32)
    ap.add_argument("--cache", type=Path, default=CACHE, help=f"data and results cache (default {CACHE})")
    ap.add_argument("--skip", nargs="*", default=["sample"], help="stages (or foreach groups) left out")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                    help="more params overrides after the scale preset (dvc exp run -S syntax)")
    ap.add_argument("--poll", type=float, default=0.2, help="RSS polling interval, s")
    ap.add_argument("--stage-timeout", type=float, default=None, help="seconds before a stage is stopped")
    ap.add_argument("--reuse", action="store_true", help="only report fractions already measured on this code "
                                                        "(the cache's results/); runs nothing")
    ap.add_argument("--other-code", action="store_true", help="with --reuse: where a fraction was not measured on "
                                                             "this code, report its newest measurement (labelled)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary copies (under the cache's runs/)")
    ap.add_argument("--out", type=Path, default=REPO / "metrics", help="where scale.json / .csv / .png go")
    args = ap.parse_args(argv)
    if args.io_only is not None and not args.fractions:
        runs = [(args.io_only, "io")]
    else:
        runs = [(f, "all") for f in (args.fractions or list(DEFAULT_FRACTIONS))]
        if args.io_only is not None:
            runs.append((args.io_only, "io"))
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
               PYTHONPATH=str(REPO / "src"))
    code = fingerprint()
    label = f"{commit_label()} (code {code})"
    (args.cache / "results").mkdir(parents=True, exist_ok=True)
    per_fraction = []
    for f, mode in runs:
        stem = f"{f:g}-{args.seed}-{args.pictures}-{args.picture_px}px-{mode}"
        key = args.cache / "results" / f"{stem}-{code}.json"
        if args.reuse:  # report only: never runs anything
            found = key if key.exists() else None
            if found is None and args.other_code:
                others = sorted(key.parent.glob(f"{stem}-*.json"), key=lambda q: q.stat().st_mtime)
                found = others[-1] if others else None
            if found is None:
                print(f"F={f:g} ({mode}): not measured on this code yet ({key.name}); left out")
                continue
            res = json.loads(found.read_text())
            res["code"], res["mode"] = found.stem.rsplit("-", 1)[1], mode
            if res["code"] != code:
                print(f"F={f:g} ({mode}): measured on other code ({res['code']}, not {code}): {found.name}")
            per_fraction.append(res)
            continue
        res = dict(run_fraction(f, args, env, io_only=mode == "io"), code=code, mode=mode)
        key.write_text(json.dumps(res, indent=1))
        per_fraction.append(res)
    results = [StageResult(**r) for pf in per_fraction for r in pf["stages"]]
    analysis = analyse(results)
    print(f"\nscale benchmark on {os.cpu_count()} cores, commit {label}, synth --pictures {args.pictures} "
          f"--picture-px {args.picture_px} --seed {args.seed}, preset scale\n")
    print(table(results, analysis))
    print("\ngrowth (time ~ N^a, peak memory ~ N^b, least squares in log-log over the fractions); F = 1.0 "
          "values: measured where F = 1.0 ran, else (~) the larger of the power-law and the affine "
          "(fixed + per-product) extrapolation")
    for pf in per_fraction:
        ratio = (pf["train_bson_mb"] / pf["plain_loop_train_s"]) / pf["decode_train_mb_per_s"] \
            if pf.get("decode_train_mb_per_s") else None
        print(f"  F={pf['fraction']:g} ({pf.get('mode', 'all')}, code {pf.get('code', code)}): "
              f"synth {pf['synth']['wall_s']:.0f} s, train.bson {pf['train_bson_mb']} MB; "
              f"plain loop {pf['train_bson_mb'] / max(pf['plain_loop_train_s'], 1e-9):.0f} MB/s, decode "
              f"{_fmt(pf.get('decode_train_mb_per_s'))} MB/s (decode/plain = {_fmt(ratio and 1 / ratio, '.2f')}x)")
    at = {f: [a[f"wall_s_at_{f}"] for a in analysis.values() if a.get(f"wall_s_at_{f}")] for f in ("0.1", "1")}
    if at["1"]:
        print(f"  whole pipeline (these stages), extrapolated on this machine: F=0.1 {sum(at['0.1']) / 3600:.2f} h, "
              f"F=1.0 {sum(at['1']) / 3600:.2f} h")
    print("\ntargets (issue 11, deliverable 4; printed, not asserted):")
    print(targets_report(analysis))
    write_outputs(args.out, label, per_fraction, results, analysis, vars(args))
    return 0


def write_outputs(out: Path, code: str, per_fraction: list[dict], results: Sequence[StageResult],
                  analysis: dict[str, dict[str, Any]], args: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    meta = {k: (str(v) if isinstance(v, Path) else v) for k, v in args.items()}
    (out / "scale.json").write_text(json.dumps({"code": code, "cores": os.cpu_count(), "args": meta,
                                                "fractions": per_fraction, "analysis": analysis}, indent=1))
    with open(out / "scale.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(asdict(results[0])) if results else ["stage"], lineterminator="\n")
        w.writeheader()
        for r in results:
            w.writerow(asdict(r))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    for stage in dict.fromkeys(r.stage for r in results):
        rs = sorted((r for r in results if r.stage == stage), key=lambda r: r.train_products)
        n = [r.train_products for r in rs]
        axes[0].loglog(n, [max(r.wall_s, 1e-2) for r in rs], "o-", label=stage)
        metric = analysis.get(stage, {}).get("memory_metric", "RSS")
        axes[1].loglog(n, [max(memory_of(r, metric), 1.0) for r in rs], "o-", label=stage)
    for ax, title in zip(axes, ("wall s", "peak memory MB (process tree: PSS, else RSS)")):
        ax.set_xlabel("train products")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
    axes[1].legend(fontsize=7, ncol=2)
    fig.suptitle(f"bench/scale.py, code {code}")
    fig.tight_layout()
    fig.savefig(out / "scale.png", dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
