"""``cdiscount predict``: categories of any pictures, with the trained backbone alone.

Several image files make one product (scored like the pipeline scores products: mean of the
pictures' log-probabilities); a BSON file is read as one product per document.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch

from .blocks import iter_documents
from .images import decode_image, normalise, resize
from .train import load_model


def products_from_paths(paths: list[Path]) -> list[tuple[str, list[bytes]]]:
    """BSON files give one product per document; other files together form one product."""
    products: list[tuple[str, list[bytes]]] = []
    loose: list[bytes] = []
    for p in paths:
        if p.suffix.lower() == ".bson":
            products += [(f"{p.name} _id {doc['_id']}", [img["picture"] for img in doc["imgs"]])
                         for _, doc in iter_documents(p)]
        else:
            loose.append(p.read_bytes())
    if loose:
        products.insert(0, (" + ".join(p.name for p in paths if p.suffix.lower() != ".bson"), loose))
    return products


@torch.no_grad()
def predict_product(model, image_size: int, pictures: list[bytes], flip_tta: bool = True) -> torch.Tensor:
    """Class probabilities of one product: softmax of the mean image log-probability."""
    x = torch.stack([resize(decode_image(b), image_size) for b in pictures])
    x = normalise(x.to(next(model.parameters()).device), model.norm.mean, model.norm.std)
    views = [x, x.flip(-1)] if flip_tta else [x]
    probs = sum(torch.softmax(model(v).float(), dim=1) for v in views) / len(views)
    return torch.softmax(torch.log(probs.clamp_min(1e-12)).mean(0), dim=0)


def run_predict(paths: list[Path], model_path: Path, taxonomy_path: Path, top: int = 5) -> str:
    """Readable top-``top`` categories (with their three level names) for each product."""
    model, blob = load_model(model_path)
    tax = pd.read_parquet(taxonomy_path).set_index("category_id")
    lines = []
    for name, pictures in products_from_paths(paths):
        probs = predict_product(model, blob["image_size"], pictures)
        p, i = probs.topk(min(top, len(probs)))
        lines.append(f"{name} ({len(pictures)} picture{'s' * (len(pictures) > 1)}):")
        for rank, (pi, ii) in enumerate(zip(p.tolist(), i.tolist()), 1):
            cid = blob["categories"][ii]
            row = tax.loc[cid]
            lines.append(f"  {rank}. {pi:6.1%}  {cid}  {row['level1']} > {row['level2']} > {row['level3']}")
    return "\n".join(lines)
