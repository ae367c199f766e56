"""One offline report of the current run: ``reports/report.md`` + a self-contained ``reports/report.html``.

``dvc plots show`` needs vega from a CDN to render, and ``dvc metrics show`` gives no pictures; this
module reads the same files (``metrics/*``, the DVCLive learning curves) and writes Markdown, PNG
figures (matplotlib's Agg canvas: no display, no browser) and one HTML file with the figures embedded
as base64 data URIs, so the report opens anywhere, offline, and can be mailed as one file.

Every section is optional: a missing input (a stage disabled by params, a run not finished yet) gives
a one-line note instead of an error, so the report can be written at any point of the pipeline.
"""
from __future__ import annotations

import base64
import html
import json
import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from .atomic import atomic_dir


#: Headline rows: label -> candidate (metrics file, flattened key); the first one present wins.
#: Each backbone's row (``backbone: <name>``, from ``metrics/backbone/<name>.json``) comes first.
HEADLINE: dict[str, list[tuple[str, str]]] = {
    "baseline": [("baseline.json", "product_accuracy")],
    "fusion": [("fusion.json", "fusion_product_accuracy")],
    "hierarchy: flat": [("hierarchy.json", "flat_product_accuracy")],
    "hierarchy: hierarchical": [("hierarchy.json", "hierarchical_product_accuracy")],
    "hierarchy: hard routing": [("hierarchy.json", "hard_routing_product_accuracy")],
    "ocr_classifier": [("ocr_classifier.json", "product_accuracy"), ("ocr.json", "product_accuracy"),
                       ("ensemble.json", "components.ocr")],
    "ensemble (before override)": [("ensemble.json", "product_accuracy_before_override")],
    "ensemble": [("ensemble.json", "product_accuracy")],
}


@dataclass
class Doc:
    """The report as a list of blocks, rendered twice (Markdown and HTML) so both always agree."""

    out: Path  #: folder the PNGs are written to (referenced by name from the Markdown)
    blocks: list[tuple[Any, ...]] = field(default_factory=list)

    def heading(self, text: str, level: int = 2) -> None:
        self.blocks.append(("h", level, text))

    def para(self, text: str) -> None:
        self.blocks.append(("p", text))

    def skip(self, what: str, why: str = "not found") -> None:
        """The one-line note that replaces a section whose input is absent."""
        self.para(f"_Skipped: {what} {why}._")

    def table(self, header: list[str], rows: list[list[Any]]) -> None:
        self.blocks.append(("table", header, [[_fmt(v) for v in row] for row in rows]))

    def figure(self, fig: Figure, name: str, caption: str) -> None:
        fig.tight_layout()
        FigureCanvasAgg(fig).print_png(self.out / name, metadata={"Software": None})  # no URL in the PNG
        self.blocks.append(("img", name, caption))

    def markdown(self) -> str:
        parts = []
        for kind, *rest in self.blocks:
            if kind == "h":
                parts.append(f"{'#' * rest[0]} {rest[1]}")
            elif kind == "p":
                parts.append(rest[0])
            elif kind == "table":
                header, rows = rest
                esc = [[c.replace("|", "\\|") for c in r] for r in [header, *rows]]
                lines = ["| " + " | ".join(r) + " |" for r in esc]
                lines.insert(1, "|" + "---|" * len(header))
                parts.append("\n".join(lines))
            else:
                parts.append(f"![{rest[1]}]({rest[0]})")
        return "\n\n".join(parts) + "\n"

    def html(self, title: str) -> str:
        e = html.escape
        parts = []
        for kind, *rest in self.blocks:
            if kind == "h":
                parts.append(f"<h{rest[0]}>{_inline(rest[1])}</h{rest[0]}>")
            elif kind == "p":
                parts.append(f"<p>{_inline(rest[0])}</p>")
            elif kind == "table":
                header, rows = rest
                head = "".join(f"<th>{e(c)}</th>" for c in header)
                body = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in rows)
                parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
            else:
                data = base64.b64encode((self.out / rest[0]).read_bytes()).decode("ascii")
                parts.append(f'<figure><img alt="{e(rest[1])}" src="data:image/png;base64,{data}">'
                             f"<figcaption>{e(rest[1])}</figcaption></figure>")
        style = ("body{font-family:sans-serif;max-width:75em;margin:auto;padding:1em}"
                 "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:2px 8px}"
                 "td{text-align:right}td:first-child{text-align:left}img{max-width:100%}")
        return (f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{e(title)}</title>'
                f"<style>{style}</style></head><body>\n" + "\n".join(parts) + "\n</body></html>\n")


def _inline(text: str) -> str:
    """The little Markdown the report uses, as HTML: `code`, and a whole line in _italics_."""
    out = re.sub(r"`([^`]*)`", r"<code>\1</code>", html.escape(text))
    return f"<em>{out[1:-1]}</em>" if len(out) > 1 and out[0] == out[-1] == "_" else out


def _fmt(v: Any) -> str:
    """Numbers rounded to 4 decimals (ints untouched); anything else as text."""
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, float):
        return "" if math.isnan(v) else str(round(v, 4))
    if isinstance(v, (list, dict)):
        return json.dumps(v, ensure_ascii=False)
    return str(v)


def flatten(obj: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts as one level of dotted keys (``weights.backbone``); an empty dict stays a leaf."""
    flat: dict[str, Any] = {}
    for k, v in obj.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            flat.update(flatten(v, f"{key}."))
        else:
            flat[key] = v
    return flat


def _read_csv(doc: Doc, path: Path, columns: list[str]) -> pd.DataFrame | None:
    """The CSV, or None after a skip note when it is absent, empty or lacks a needed column."""
    if not path.exists():
        doc.skip(f"`{path}`")
        return None
    df = pd.read_csv(path)
    missing = [c for c in columns if c not in df.columns]
    if missing or df.empty:
        doc.skip(f"`{path}`", f"lacks columns {missing}" if missing else "is empty")
        return None
    return df


def _load_metrics(metrics: Path) -> dict[str, dict[str, Any]]:
    """Every ``metrics/*.json`` and ``metrics/backbone/*.json``, flattened, by path under ``metrics``."""
    files = [*sorted(metrics.glob("*.json")), *sorted(metrics.glob("backbone/*.json"))]
    return {f.relative_to(metrics).as_posix(): flatten(json.loads(f.read_text())) for f in files}


def _headline(doc: Doc, flat: dict[str, dict[str, Any]], metrics: Path) -> None:
    doc.heading("Product accuracy per component (validation)")
    rows = [[f"backbone: {f.removeprefix('backbone/').removesuffix('.json')}", v["product_accuracy"],
             f"{f}: product_accuracy"]
            for f, v in flat.items() if f.startswith("backbone/") and "product_accuracy" in v]
    for label, candidates in HEADLINE.items():
        hit = next(((f, k) for f, k in candidates if k in flat.get(f, {})), None)
        if hit:
            rows.append([label, flat[hit[0]][hit[1]], f"{hit[0]}: {hit[1]}"])
    if rows:
        doc.table(["component", "product accuracy", "source"], rows)
    else:
        doc.skip("component accuracies:", f"none in `{metrics}/*.json`")


def _all_metrics(doc: Doc, flat: dict[str, dict[str, Any]], metrics: Path) -> None:
    doc.heading("All metrics")
    if not flat:
        doc.skip(f"`{metrics}/*.json`")
    for name, values in flat.items():
        doc.heading(f"`{metrics / name}`", 3)
        doc.table(["metric", "value"], [[k, v] for k, v in values.items()])


def _learning_curves(doc: Doc, live: Path) -> None:
    doc.heading("Learning curves")
    tsvs = sorted((live / "plots" / "metrics").glob("**/*.tsv"))
    if not tsvs:
        doc.skip(f"`{live}/plots/metrics/**.tsv`")
        return
    ncols = min(len(tsvs), 2)
    nrows = math.ceil(len(tsvs) / ncols)
    fig = Figure(figsize=(5.5 * ncols, 3 * nrows))
    for i, tsv in enumerate(tsvs):
        df = pd.read_csv(tsv, sep="\t")
        value = [c for c in df.columns if c not in ("step", "timestamp")][0]
        ax = fig.add_subplot(nrows, ncols, i + 1)
        ax.plot(df["step"], df[value], marker="o")
        ax.set_title(str(tsv.relative_to(live / "plots" / "metrics").with_suffix("")))
        ax.set_xlabel("step (epoch)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    doc.figure(fig, "learning_curves.png", f"DVCLive curves from {live}")


def _level1_spans(df: pd.DataFrame) -> list[tuple[str, int, int]]:
    """(level1, first, last) position of each run of one level1 in taxonomy order."""
    runs = (df["level1"] != df["level1"].shift()).cumsum()
    return [(g["level1"].iloc[0], g.index[0], g.index[-1]) for _, g in df.groupby(runs)]


def _per_category(doc: Doc, metrics: Path, backbone: str) -> None:
    doc.heading(f"Per-category accuracy (backbone {backbone})")
    df = _read_csv(doc, metrics / "backbone" / f"{backbone}_per_category.csv",
                   ["idx", "level1", "products", "accuracy"])
    if df is not None:
        df = df.sort_values("idx").reset_index(drop=True)
        level1 = list(dict.fromkeys(df["level1"]))
        colors = colormaps["tab20"].colors
        color = {name: colors[i % len(colors)] for i, name in enumerate(level1)}
        fig = Figure(figsize=(min(max(8.0, 0.25 * len(df)), 24.0), 4))
        ax = fig.add_subplot()
        ax.bar(range(len(df)), df["accuracy"], width=1.0 if len(df) > 200 else 0.8,
               color=[color[n] for n in df["level1"]])
        if len(level1) <= 20:
            ax.legend(handles=[Patch(color=color[n], label=n) for n in level1], fontsize="small",
                      loc="upper left", bbox_to_anchor=(1.0, 1.0))
        ax.set(xlabel="category (taxonomy order)", ylabel="validation accuracy", ylim=(0, 1.05),
               xlim=(-0.5, len(df) - 0.5))
        doc.figure(fig, "backbone_per_category.png", "backbone accuracy per category, coloured by level 1")
        weighted = (df["accuracy"] * df["products"]).sum() / max(df["products"].sum(), 1)
        doc.para(f"{len(df)} categories; mean per-category accuracy {_fmt(df['accuracy'].mean())}, "
                 f"product-weighted {_fmt(weighted)}.")

    doc.heading("Per-category accuracy: flat vs hierarchical")
    df = _read_csv(doc, metrics / "hierarchy_per_category.csv",
                   ["idx", "level1", "flat_accuracy", "hierarchical_accuracy"])
    if df is not None:
        df = df.sort_values("idx").reset_index(drop=True)
        fig = Figure(figsize=(min(max(8.0, 0.25 * len(df)), 24.0), 4))
        ax = fig.add_subplot()
        for i, (_, first, last) in enumerate(_level1_spans(df)):
            if i % 2:
                ax.axvspan(first - 0.5, last + 0.5, color="0.92", zorder=0)
        x = range(len(df))
        ax.plot(x, df["flat_accuracy"], drawstyle="steps-mid", color="tab:blue", label="flat (backbone)")
        ax.plot(x, df["hierarchical_accuracy"], drawstyle="steps-mid", color="tab:green", alpha=0.8,
                label="hierarchical (group experts)")
        ax.set(xlabel="category (taxonomy order; shaded bands = level 1)", ylabel="validation accuracy",
               ylim=(0, 1.05))
        ax.legend(fontsize="small")
        doc.figure(fig, "hierarchy_per_category.png", "per-category accuracy, flat (blue) vs hierarchical (green)")
        better = int((df["hierarchical_accuracy"] > df["flat_accuracy"]).sum())
        worse = int((df["hierarchical_accuracy"] < df["flat_accuracy"]).sum())
        doc.para(f"Hierarchical better on {better} categories, worse on {worse}, equal on {len(df) - better - worse}.")


def _distance(doc: Doc, metrics: Path, backbone: str) -> None:
    doc.heading(f"Confusion distance (backbone {backbone})")
    df = _read_csv(doc, metrics / "backbone" / f"{backbone}_distance.csv", ["distance", "products"])
    if df is None:
        return
    share = df["products"] / max(df["products"].sum(), 1)
    fig = Figure(figsize=(6, 3.5))
    ax = fig.add_subplot()
    bars = ax.bar(df["distance"].astype(str), df["products"], color="tab:orange")
    ax.bar_label(bars, labels=[f"{s:.1%}" for s in share], fontsize="small")
    ax.margins(y=0.12)
    ax.set(xlabel="taxonomy distance between prediction and truth", ylabel="validation products")
    doc.figure(fig, "backbone_distance.png", "how far the backbone's top-1 lands from the true category")
    doc.table(["distance", "products", "share"], [[d, p, s] for d, p, s in zip(df["distance"], df["products"], share)])


def _groups(doc: Doc, metrics: Path) -> None:
    for name, title in (("groups.csv", "Groups"), ("hierarchy_groups.csv", "Groups: flat vs hierarchical")):
        doc.heading(title)
        path = metrics / name
        if not path.exists():
            doc.skip(f"`{path}`")
            continue
        df = pd.read_csv(path)
        doc.table(list(df.columns), df.astype(object).values.tolist())


def write_report(out: str | Path, metrics: Path, live: Path, backbone: str = "main") -> Path:
    """Write ``report.md``, ``report.html`` and the PNGs into ``out``, replacing it as a whole (so no
    figure of an earlier run lingers, and a failure leaves the previous report intact). ``live`` and
    ``backbone`` name the backbone whose curves, per-category accuracy and distances are drawn."""
    out = Path(out)
    title = "cdiscount-pipeline: report of the current run"
    with atomic_dir(out) as tmp:
        doc = Doc(tmp)
        doc.heading(title, 1)
        doc.para(f"Generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC from `{metrics}` and `{live}`; "
                 "all accuracies are on the validation split.")
        flat = _load_metrics(metrics)
        _headline(doc, flat, metrics)
        _learning_curves(doc, live)
        _per_category(doc, metrics, backbone)
        _distance(doc, metrics, backbone)
        _groups(doc, metrics)
        _all_metrics(doc, flat, metrics)
        (tmp / "report.md").write_text(doc.markdown())
        (tmp / "report.html").write_text(doc.html(title))
    return out
