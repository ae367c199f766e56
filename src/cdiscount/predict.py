"""``cdiscount predict``: categories of any pictures, with the trained backbone alone.

Several image files make one product (scored like the pipeline scores products: mean of the
pictures' log-probabilities); a BSON file is read as one product per document.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch

from .blocks import iter_documents
from .bson_io import is_jpeg, jpeg_problem
from .errors import InputError
from .images import decode_image, normalise, resize
from .train import load_model


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise InputError(path, "file not found") from None
    except IsADirectoryError:
        raise InputError(path, "is a folder: give picture files, or .bson files of products") from None


def checked_picture(data: bytes, path: Path, *, offset: int | None = None, product_id: int | None = None,
                    what: str = "") -> bytes:
    """``data`` if it is a whole picture OpenCV or Pillow can decode; else an error naming where it is."""
    if not data:
        raise InputError(path, f"{what}empty: no picture", offset=offset, product_id=product_id)
    problem = jpeg_problem(data) if is_jpeg(data) else None
    if problem:
        raise InputError(path, f"{what}not a whole JPEG: {problem}", offset=offset, product_id=product_id)
    try:
        decode_image(data)
    except Exception as e:  # cv2.error, PIL.UnidentifiedImageError, OSError...
        raise InputError(path, f"{what}not a picture OpenCV or Pillow can read ({type(e).__name__})", offset=offset,
                         product_id=product_id) from None
    return data


def _bson_products(path: Path) -> list[tuple[str, list[bytes]]]:
    products = []
    for offset, doc in iter_documents(path):
        pid = doc.get("_id")
        imgs = doc.get("imgs")
        if not isinstance(imgs, list) or not imgs:
            raise InputError(path, "document has no 'imgs' list of pictures", offset=offset, product_id=pid)
        pictures = [checked_picture(img.get("picture", b"") if isinstance(img, dict) else b"", path, offset=offset,
                                    product_id=pid, what=f"imgs[{i}] ") for i, img in enumerate(imgs)]
        products.append((f"{path.name} _id {pid}", pictures))
    return products


def products_from_paths(paths: list[Path]) -> list[tuple[str, list[bytes]]]:
    """BSON files give one product per document; other files together form one product. Anything
    that is not a readable picture is an error naming the file (and the ``_id`` in a BSON)."""
    products: list[tuple[str, list[bytes]]] = []
    loose: list[bytes] = []
    for p in paths:
        if p.suffix.lower() == ".bson":
            if p.is_dir() or not p.exists():
                _read(p)
            products += _bson_products(p)
        else:
            loose.append(checked_picture(_read(p), p))
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
    model, blob = _load(model_path)
    try:
        tax = pd.read_parquet(taxonomy_path).set_index("category_id")
    except FileNotFoundError:
        raise InputError(taxonomy_path, "taxonomy not found (run `dvc repro decode`, or pass --taxonomy)") from None
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


def _load(model_path: Path):
    """The trained backbone, or one line saying why this file is not one."""
    if not Path(model_path).is_file():
        raise InputError(model_path, "model not found (train one with `dvc repro train_backbone@main`, or pass "
                         "--model)")
    try:
        return load_model(model_path)
    except Exception as e:  # a truncated or foreign file: UnpicklingError, RuntimeError, EOFError, KeyError...
        raise InputError(model_path, f"not a model written by train_backbone ({type(e).__name__}: {e})"[:300]) \
            from None
