"""The ``cdiscount`` command: user tools around the pipeline.

The pipeline stages themselves are the scripts in ``stages/`` (``dvc repro`` runs them; so can
you: ``python stages/split.py`` does exactly what DVC runs for ``split``). This command holds
what a user runs by hand: predict with a trained model, check and submit a CSV, presets of the
reference systems, the report, one picture out of the BSON, the architectures, the list of
code each stage runs (what ``dvc.yaml`` must list as deps), and a synthetic Cdiscount at any
fraction of the real scale.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from .runner import common_options, guarded, setup_logging

#: Where the pipeline leaves what the tools read by default (as in dvc.yaml).
INTERIM = Path("data/interim")
MODELS = Path("models/backbone")  # <name>.pt per entry of backbones.entries
METRICS = Path("metrics")
LIVES = Path("dvclive/backbone")  # <name>/ per backbone


def primary_backbone(params_path: str | Path = "params.yaml") -> str:
    """``backbones.primary`` of the params file here, or ``main`` where there is none to read (the tools
    default to the primary backbone's model and curves)."""
    try:
        from .backbones import primary_name
        from .params import load_params

        return primary_name(load_params(params_path))
    except Exception:  # noqa: BLE001 -- a default for a help text and a path: never worth an error here
        return "main"


def _predict(args: argparse.Namespace) -> None:
    from .predict import run_predict

    print(run_predict(args.paths, args.model, args.taxonomy, args.top))


def _archs(args: argparse.Namespace) -> None:
    from .models import available_architectures

    for fam, names in available_architectures().items():
        print(f"{fam} ({len(names)}): {' '.join(names)}")


def _read_image(args: argparse.Namespace) -> None:
    from .bson_io import open_store

    store = open_store(args.interim, args.split)
    data = store.read_image(args.id, args.img_idx)
    if args.output:
        Path(args.output).write_bytes(data)
        print(f"wrote {len(data)} bytes to {args.output}")
    else:
        sys.stdout.buffer.write(data)


def _validate_submission(args: argparse.Namespace) -> int:
    from .submission import read_test_ids, validate_submission

    test_ids = read_test_ids(args.test)
    problems = validate_submission(args.file, test_products=test_ids, categories=args.categories)
    if not problems:
        print(f"valid: {len(test_ids)} rows")
        return 0
    print("\n".join(problems))
    print(f"invalid: {args.file} ({len(problems)} problems listed)")
    return 1


def _submit(args: argparse.Namespace) -> int:
    from .kaggle_submit import default_message, submit

    return submit(args.file, args.message or default_message(METRICS), competition=args.competition)


def _report(args: argparse.Namespace) -> None:
    import logging

    from .report import write_report

    primary = primary_backbone()
    out = write_report(args.out, METRICS, LIVES / primary, backbone=primary)
    logging.getLogger("cdiscount").info("wrote %s and %s", out / "report.md", out / "report.html")


def _preset(args: argparse.Namespace) -> int | None:
    from .presets import describe, listing, run_preset

    if not args.name:
        print(listing())
        return None
    print(describe(args.name, sample=not args.faithful, queue=args.queue), flush=True)
    if args.run or args.queue:  # --queue adds it to DVC's queue at once; `dvc queue start` runs it
        status = run_preset(args.name, sample=not args.faithful, queue=args.queue)
        if status == 0 and args.queue:
            print("queued: `dvc queue start` runs it, `dvc queue status` shows failures")
        return status
    return None


def _code_deps(args: argparse.Namespace) -> None:
    from .code_deps import stage_code_deps

    for stage, deps in stage_code_deps(args.root).items():
        print(f"{stage}:")
        print("\n".join(f"  - {d}" for d in deps))


def _synth(args: argparse.Namespace) -> None:
    from .synth import synthesize

    s = synthesize(args.out, args.fraction, args.picture_px, args.seed, progress=True, workers=args.workers,
                   pictures=args.pictures, bank_size=args.bank_size)
    print(f"wrote {args.out}: {s['train_products']} train products ({s['train_pictures']} pictures), "
          f"{s['test_products']} test products ({s['test_pictures']} pictures), {s['categories']} categories, "
          f"{sum(s['megabytes'].values()):.1f} MB in {s['seconds']} s")


#: name -> (handler, help); a handler may return an exit status (None means 0).
COMMANDS: dict[str, tuple[Callable[[argparse.Namespace], int | None], str]] = {
    "predict": (_predict, "top-5 categories of image files (one product) or of each product of a BSON"),
    "validate-submission": (_validate_submission, "check a submission CSV (or .csv.gz) line by line; exit 1 "
                                                  "when invalid"),
    "submit": (_submit, "upload a submission with the kaggle CLI, or print the exact command"),
    "preset": (_preset, "list the reference reports' systems, or print / run / queue one's `dvc exp run -S ...`"),
    "report": (_report, "offline Markdown + self-contained HTML report of the current run (metrics, curves, "
                        "per-category accuracy, confusion distances)"),
    "read-image": (_read_image, "write one picture's JPEG bytes, read through the decode index"),
    "archs": (_archs, "list the architectures train.arch accepts"),
    "code-deps": (_code_deps, "the source files each dvc.yaml stage runs (its code deps), from the imports"),
    "synth": (_synth, "write a Kaggle-format train.bson / test.bson / category_names.csv at a fraction of the "
                      "real scale (real-scale rehearsals)"),
}


def build_parser() -> argparse.ArgumentParser:
    ap = common_options(argparse.ArgumentParser(prog="cdiscount", description=__doc__,
                                                formatter_class=argparse.RawDescriptionHelpFormatter), stage=False)
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (_, help_) in COMMANDS.items():
        sp = sub.add_parser(name, help=help_, description=help_)
        if name == "predict":
            sp.add_argument("paths", nargs="+", type=Path, help="image files (any format, any size) or .bson files")
            model = MODELS / f"{primary_backbone()}.pt"
            sp.add_argument("--model", type=Path, default=model,
                            help=f"default: {model} (the primary backbone, backbones.primary)")
            sp.add_argument("--taxonomy", type=Path, default=INTERIM / "taxonomy.parquet",
                            help="category names (default: the decode stage's taxonomy)")
            sp.add_argument("--top", type=int, default=5)
        if name == "report":
            sp.add_argument("--out", type=Path, default=Path("reports"), help="output folder (default: reports)")
        if name == "preset":
            sp.add_argument("name", nargs="?", help="a preset (none: list them)")
            sp.add_argument("--run", action="store_true", help="run the printed `dvc exp run` (the venv's dvc)")
            sp.add_argument("--queue", action="store_true", help="add --queue: enqueue it for `dvc queue start`")
            sp.add_argument("--faithful", action="store_true",
                            help="only the report's settings: no sample-size overrides, no ImageNet fallback")
        if name == "read-image":
            sp.add_argument("split", choices=["train", "test"])
            sp.add_argument("id", type=int, help="product _id")
            sp.add_argument("img_idx", type=int, nargs="?", default=0, help="picture index (default 0)")
            sp.add_argument("-o", "--output", help="file to write (default: stdout)")
            sp.add_argument("--interim", type=Path, default=INTERIM, help=f"decode's output folder (default: {INTERIM})")
        if name == "validate-submission":
            sp.add_argument("file", type=Path, help="submission .csv or .csv.gz")
            sp.add_argument("--test", type=Path, default=INTERIM / "test_products.parquet",
                            help="test.bson, or the decode stage's test_products.parquet (the default)")
            sp.add_argument("--categories", type=Path, default=INTERIM / "taxonomy.parquet",
                            help="category_names.csv, or the decode stage's taxonomy.parquet (the default)")
        if name == "submit":
            from .kaggle_submit import COMPETITION

            sp.add_argument("file", type=Path, help="submission .csv or .csv.gz")
            sp.add_argument("-m", "--message", help="default: experiment name and validation accuracy")
            sp.add_argument("-c", "--competition", default=COMPETITION, help=f"default: {COMPETITION}")
        if name == "code-deps":
            sp.add_argument("--root", type=Path, default=Path("."), help="repository root (default: .)")
        if name == "synth":
            sp.add_argument("--fraction", type=float, required=True,
                            help="share of the real counts (7,069,896 train / 1,768,182 test products), 0.0001 to 1")
            sp.add_argument("--out", type=Path, required=True,
                            help="folder to write (new, or holding only synth's files)")
            sp.add_argument("--picture-px", type=int, default=32,
                            help="picture size, 16 to 180 (default 32; real: 180)")
            sp.add_argument("--seed", type=int, default=0, help="default 0; the same seed gives the same bytes")
            sp.add_argument("--workers", type=int, default=0,
                            help="processes drawing pictures (default 0: all cores); the output does not depend on it")
            sp.add_argument("--pictures", choices=["draw", "bank"], default="draw",
                            help="draw: every new picture drawn (about 9 ms each); bank: --bank-size drawn per "
                                 "category, later ones reuse them under unique bytes (fast; for time and memory)")
            sp.add_argument("--bank-size", type=int, default=8,
                            help="bank mode: pictures drawn per category (default 8)")
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    return guarded(lambda: COMMANDS[args.command][0](args))


if __name__ == "__main__":
    raise SystemExit(main())
