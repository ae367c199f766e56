"""The ``cdiscount`` command: every pipeline stage and a few tools, driven by ``params.yaml``.

DVC runs the same commands through the thin scripts in ``stages/``; running them by hand
does exactly what ``dvc repro`` would do for that stage (without DVC's caching).
"""
from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from . import paths
from .errors import InputError
from .models.weights import WeightsUnavailable
from .ocr.engines import OcrEngineUnavailable
from .params import load_params

log = logging.getLogger("cdiscount")


def _sample(args: argparse.Namespace, params: dict[str, Any]) -> None:
    from .atomic import write_json
    from .sample import SampleConfig, generate_sample

    summary = generate_sample(args.out or paths.SAMPLE_DIR, SampleConfig.from_params(params.get("sample", {})),
                              progress=args.progress)
    write_json(paths.METRICS / "sample.json", summary)


def _decode(args: argparse.Namespace, params: dict[str, Any]) -> None:
    from .decode import run_decode

    p = params.get("decode", {})
    run_decode(args.raw_dir or params["data"]["raw_dir"], paths.INTERIM, paths.METRICS,
               on_error=p.get("on_error", "raise"), workers=p.get("workers") or None,
               block_size_mb=p.get("block_size_mb", 32), progress=args.progress)


def _dedup(args: argparse.Namespace, params: dict[str, Any]) -> None:
    from .dedup import run_dedup

    p = params.get("dedup", {})
    run_dedup(paths.INTERIM, paths.DEDUP, paths.METRICS / "dedup.json", buckets=p.get("buckets", 16),
              placeholder_min_categories=p.get("placeholder_min_categories", 2),
              blank_std=p.get("blank_std", 3.0), progress=args.progress)


def _split(args: argparse.Namespace, params: dict[str, Any]) -> None:
    from .split import run_split

    p = params.get("split", {})
    run_split(paths.INTERIM, paths.DEDUP, paths.SPLIT, paths.METRICS / "split.json",
              seed=p.get("seed", 0), val_fraction=p.get("val_fraction", 0.1),
              cap_per_category=p.get("cap_per_category", 0),
              min_products_for_val=p.get("min_products_for_val", 2))


def _train_backbone(args: argparse.Namespace, params: dict[str, Any]) -> None:
    from .backbone import run_backbone

    run_backbone(params.get("train", {}), params.get("predict", {}), progress=args.progress)


def _baseline(args: argparse.Namespace, params: dict[str, Any]) -> None:
    from .baseline import run_baseline_stage

    run_baseline_stage(params.get("baseline", {}), progress=args.progress)


def _predict(args: argparse.Namespace, params: dict[str, Any]) -> None:
    from .predict import run_predict

    print(run_predict(args.paths, args.model, args.taxonomy, args.top))


def _groups(args: argparse.Namespace, params: dict[str, Any]) -> None:
    from .groups import run_groups

    run_groups(params.get("groups", {}))


def _specific(args: argparse.Namespace, params: dict[str, Any]) -> None:
    from .specific import run_specific

    p = params.get("specific", {})
    run_specific(args.slot, p.get("slots", []), p)


def _fusion(args: argparse.Namespace, params: dict[str, Any]) -> None:
    from .fusion import run_fusion

    run_fusion(params.get("fusion", {}), progress=args.progress)


def _hierarchy(args: argparse.Namespace, params: dict[str, Any]) -> None:
    from .hierarchy import run_hierarchy

    run_hierarchy(params.get("hierarchy", {}), progress=args.progress)


def _ocr(args: argparse.Namespace, params: dict[str, Any]) -> None:
    from .ocr.stage import run_ocr

    run_ocr(params.get("ocr", {}), progress=args.progress)


def _ocr_classifier(args: argparse.Namespace, params: dict[str, Any]) -> None:
    from .ocr.stage import run_ocr_classifier

    run_ocr_classifier(params.get("ocr", {}), params.get("ocr_classifier", {}))


def _ensemble(args: argparse.Namespace, params: dict[str, Any]) -> None:
    from .ensemble import run_ensemble

    run_ensemble(params.get("ensemble", {}), progress=args.progress)


def _submission(args: argparse.Namespace, params: dict[str, Any]) -> None:
    from .atomic import write_json
    from .submission import run_submission

    out = args.out or paths.SUBMISSION
    summary = run_submission(paths.PREDS / "ensemble" / "test_labels.parquet", paths.INTERIM, out)
    write_json(paths.METRICS / "submission.json", summary)
    log.info("wrote %s and %s.gz: %s (valid); upload with: cdiscount submit %s.gz", out, out, summary, out)


def _archs(args: argparse.Namespace, params: dict[str, Any]) -> None:
    from .models import available_architectures

    for fam, names in available_architectures().items():
        print(f"{fam} ({len(names)}): {' '.join(names)}")


def _read_image(args: argparse.Namespace, params: dict[str, Any]) -> None:
    from .decode import open_store

    store = open_store(args.interim, args.split)
    data = store.read_image(args.id, args.img_idx)
    if args.output:
        Path(args.output).write_bytes(data)
        print(f"wrote {len(data)} bytes to {args.output}")
    else:
        sys.stdout.buffer.write(data)


def _validate_submission(args: argparse.Namespace, params: dict[str, Any]) -> int:
    from .submission import read_test_ids, validate_submission

    test_ids = read_test_ids(args.test)
    problems = validate_submission(args.file, test_products=test_ids, categories=args.categories)
    if not problems:
        print(f"valid: {len(test_ids)} rows")
        return 0
    print("\n".join(problems))
    print(f"invalid: {args.file} ({len(problems)} problems listed)")
    return 1


def _submit(args: argparse.Namespace, params: dict[str, Any]) -> int:
    from .kaggle_submit import default_message, submit

    return submit(args.file, args.message or default_message(paths.METRICS), competition=args.competition)


def _report(args: argparse.Namespace, params: dict[str, Any]) -> None:
    from .report import write_report

    out = write_report(args.out)
    log.info("wrote %s and %s", out / "report.md", out / "report.html")


def _preset(args: argparse.Namespace, params: dict[str, Any]) -> int | None:
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


#: name -> (handler, help); a handler may return an exit status (None means 0).
COMMANDS: dict[str, tuple[Callable[[argparse.Namespace, dict[str, Any]], int | None], str]] = {
    "sample": (_sample, "generate the embedded mini-Cdiscount (params: sample)"),
    "decode": (_decode, "index train.bson / test.bson: offsets, MD5s, taxonomy (params: data, decode)"),
    "dedup": (_dedup, "exact duplicate pictures, placeholders, test -> train lookup (params: dedup)"),
    "split": (_split, "product-level stratified train / val split (params: split)"),
    "train-backbone": (_train_backbone, "fine-tune the CNN, then features + top-K predictions for every picture "
                                        "(params: train, predict)"),
    "baseline": (_baseline, "the organiser's image-similarity benchmark: perceptual hash, nearest training "
                            "picture (params: baseline)"),
    "groups": (_groups, "sets of categories that get a specific classifier (params: groups)"),
    "specific": (_specific, "train one group's expert on cached features (params: specific)"),
    "fusion": (_fusion, "product-level head over all pictures of a product, on cached features (params: fusion)"),
    "hierarchy": (_hierarchy, "route the flat predictions through the group experts, soft and hard "
                              "(params: hierarchy)"),
    "ocr": (_ocr, "read the covers of the selected level-1 groups; text cached per picture MD5 (params: ocr)"),
    "ocr-classifier": (_ocr_classifier, "TF-IDF text model on the OCR text, fused with the image model "
                                        "(params: ocr.level1, ocr_classifier)"),
    "ensemble": (_ensemble, "weighted mix of every component + duplicate-picture override (params: ensemble)"),
    "submission": (_submission, "write and validate submissions/submission.csv(.gz) from the ensemble"),
    "predict": (_predict, "top-5 categories of image files (one product) or of each product of a BSON"),
    "archs": (_archs, "list the architectures train.arch accepts"),
    "preset": (_preset, "list the reference reports' systems, or print / run / queue one's `dvc exp run -S ...`"),
    "read-image": (_read_image, "write one picture's JPEG bytes, read through the decode index"),
    "validate-submission": (_validate_submission, "check a submission CSV (or .csv.gz) line by line; exit 1 "
                                                  "when invalid"),
    "submit": (_submit, "upload a submission with the kaggle CLI, or print the exact command"),
    "report": (_report, "offline Markdown + self-contained HTML report of the current run (metrics, curves, "
                        "per-category accuracy, confusion distances)"),
}


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="cdiscount", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    ap.add_argument("-q", "--quiet", dest="progress", action="store_false", help="no progress bars")
    ap.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (_, help_) in COMMANDS.items():
        sp = sub.add_parser(name, help=help_, description=help_)
        if name == "sample":
            sp.add_argument("--out", type=Path, help=f"output folder (default: {paths.SAMPLE_DIR})")
        if name == "decode":
            sp.add_argument("--raw-dir", type=Path, help="Kaggle folder (default: params data.raw_dir)")
        if name == "predict":
            sp.add_argument("paths", nargs="+", type=Path, help="image files (any format, any size) or .bson files")
            sp.add_argument("--model", type=Path, default=paths.BACKBONE, help=f"default: {paths.BACKBONE}")
            sp.add_argument("--taxonomy", type=Path, default=paths.INTERIM / "taxonomy.parquet",
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
        if name == "submission":
            sp.add_argument("--out", type=Path, help=f"CSV to write (default: {paths.SUBMISSION})")
        if name == "specific":
            sp.add_argument("slot", help="a name from specific.slots: the expert of the slot's group")
        if name == "read-image":
            sp.add_argument("split", choices=["train", "test"])
            sp.add_argument("id", type=int, help="product _id")
            sp.add_argument("img_idx", type=int, nargs="?", default=0, help="picture index (default 0)")
            sp.add_argument("-o", "--output", help="file to write (default: stdout)")
            sp.add_argument("--interim", type=Path, default=paths.INTERIM, help=argparse.SUPPRESS)
        if name == "validate-submission":
            sp.add_argument("file", type=Path, help="submission .csv or .csv.gz")
            sp.add_argument("--test", type=Path, default=paths.INTERIM / "test_products.parquet",
                            help="test.bson, or the decode stage's test_products.parquet (the default)")
            sp.add_argument("--categories", type=Path, default=paths.INTERIM / "taxonomy.parquet",
                            help="category_names.csv, or the decode stage's taxonomy.parquet (the default)")
        if name == "submit":
            from .kaggle_submit import COMPETITION

            sp.add_argument("file", type=Path, help="submission .csv or .csv.gz")
            sp.add_argument("-m", "--message", help="default: experiment name and validation accuracy")
            sp.add_argument("-c", "--competition", default=COMPETITION, help=f"default: {COMPETITION}")
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    try:
        needs_params = args.command not in ("read-image", "archs", "predict", "validate-submission", "submit",
                                             "report", "preset")
        params = load_params(args.params) if Path(args.params).exists() or needs_params else {}
        status = COMMANDS[args.command][0](args, params)
    except InputError as e:
        log.error("%s", e)
        return 2
    except (WeightsUnavailable, OcrEngineUnavailable) as e:
        log.error("%s", e)
        return 2
    except (FileNotFoundError, KeyError, ValueError) as e:
        log.error("%s: %s", type(e).__name__, e)
        return 2
    return status or 0


if __name__ == "__main__":
    raise SystemExit(main())
