"""Stage ``train_backbone@<name>``: fine-tune one backbone (resumable), then features + top-K of every picture.

One stage per entry of ``backbones.entries``: the shared ``train`` / ``predict`` sections with the
entry's overrides on top (see README "Several backbones").

Reads   data/interim/, data/processed/split.parquet
Writes  models/backbone/<name>.pt, models/checkpoints/<name>/ (persistent: resume after a kill),
        dvclive/backbone/<name>/, data/features/<name>/{train,test}/ (float16 shards + index; only a note
        with predict.features: false), data/preds/backbone/<name>/ (top-K per picture and per product),
        metrics/backbone/<name>.json, metrics/backbone/<name>_per_category.csv,
        metrics/backbone/<name>_distance.csv
Params  train, predict, backbones.entries.<name>
Multi-GPU: ``torchrun --nproc_per_node=N stages/train_backbone.py <name>`` (rank 0 writes).
"""
from pathlib import Path

from cdiscount import distributed
from cdiscount.backbone import entry_configs, evaluate_component
from cdiscount.infer import run_inference
from cdiscount.runner import run_stage
from cdiscount.train import load_model, train_backbone

INTERIM = Path("data/interim")
SPLIT = Path("data/processed/split.parquet")
MODELS = Path("models/backbone")  # <name>.pt
CHECKPOINTS = Path("models/checkpoints")  # <name>/
LIVE = Path("dvclive/backbone")  # <name>/
FEATURES = Path("data/features")  # <name>/
PREDS = Path("data/preds/backbone")  # <name>/
METRICS = Path("metrics/backbone")  # <name>.json, <name>_per_category.csv, <name>_distance.csv


def options(ap) -> None:
    ap.add_argument("name", help="a name from backbones.entries: the backbone this run trains")


def main(args) -> None:
    cfg, pcfg = entry_configs(args.params, args.name)
    model_path = MODELS / f"{args.name}.pt"
    train_backbone(cfg, INTERIM, SPLIT, model_path, CHECKPOINTS / args.name, LIVE / args.name,
                   progress=args.progress)
    ctx = distributed.setup(cfg.device)
    if not ctx.is_main:
        return
    model, blob = load_model(model_path, ctx.device)
    run_inference(model, blob, INTERIM, FEATURES / args.name, PREDS / args.name, top_k=pcfg.top_k,
                  flip_tta=pcfg.flip_tta, batch_size=pcfg.batch_size, workers=pcfg.workers,
                  shard_rows=pcfg.shard_rows, amp=cfg.amp, progress=args.progress, features=pcfg.features)
    evaluate_component(PREDS / args.name, INTERIM / "taxonomy.parquet", SPLIT, METRICS, args.name)


if __name__ == "__main__":
    raise SystemExit(run_stage(main, __doc__, options=options))
