"""Stage ``train_backbone``: fine-tune the CNN (resumable), then features + top-K of every picture.

Reads   data/interim/, data/processed/split.parquet
Writes  models/backbone.pt, models/checkpoints/ (persistent: resume after a kill), dvclive/train/,
        data/features/{train,test}/ (float16 shards + index), data/preds/backbone/ (top-K per picture
        and per product), metrics/backbone.json, metrics/backbone_per_category.csv,
        metrics/backbone_distance.csv
Params  train, predict
Multi-GPU: ``torchrun --nproc_per_node=N stages/train_backbone.py`` (rank 0 writes).
"""
from pathlib import Path

from cdiscount import distributed
from cdiscount.backbone import PredictConfig, evaluate_component
from cdiscount.infer import run_inference
from cdiscount.params import load_config
from cdiscount.runner import run_stage
from cdiscount.train import TrainConfig, load_model, train_backbone

INTERIM = Path("data/interim")
SPLIT = Path("data/processed/split.parquet")
MODEL = Path("models/backbone.pt")
CHECKPOINTS = Path("models/checkpoints")
LIVE = Path("dvclive/train")
FEATURES = Path("data/features")
PREDS = Path("data/preds/backbone")
METRICS = Path("metrics")


def main(args) -> None:
    cfg = load_config(TrainConfig, args.params)
    pcfg = load_config(PredictConfig, args.params)
    train_backbone(cfg, INTERIM, SPLIT, MODEL, CHECKPOINTS, LIVE, progress=args.progress)
    ctx = distributed.setup(cfg.device)
    if not ctx.is_main:
        return
    model, blob = load_model(MODEL, ctx.device)
    run_inference(model, blob, INTERIM, FEATURES, PREDS, top_k=pcfg.top_k, flip_tta=pcfg.flip_tta,
                  batch_size=pcfg.batch_size, workers=pcfg.workers, shard_rows=pcfg.shard_rows, amp=cfg.amp,
                  progress=args.progress)
    evaluate_component(PREDS, INTERIM / "taxonomy.parquet", SPLIT, METRICS, "backbone")


if __name__ == "__main__":
    raise SystemExit(run_stage(main, __doc__))
