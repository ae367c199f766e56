import io

import numpy as np
import torch
from PIL import Image

from cdiscount.images import decode_image, normalise, resize


def _encode(img: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def test_decodes_any_format_to_rgb_chw() -> None:
    rgb = Image.new("RGB", (40, 30), (200, 10, 50))
    for fmt, img in [("JPEG", rgb), ("PNG", rgb), ("GIF", rgb.convert("P")), ("PNG", rgb.convert("L"))]:
        t = decode_image(_encode(img, fmt))
        assert t.shape == (3, 30, 40) and t.dtype == torch.uint8, fmt
    t = decode_image(_encode(rgb, "PNG"))
    assert t[:, 0, 0].tolist() == [200, 10, 50]  # RGB order, not OpenCV's BGR


def test_resize_and_normalise() -> None:
    x = torch.full((3, 180, 180), 255, dtype=torch.uint8)
    assert resize(x, 180) is x
    assert resize(x, 64).shape == (3, 64, 64)
    y = normalise(resize(x, 64)[None], (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    assert torch.allclose(y, torch.ones_like(y))
    assert np.isclose(float(normalise(torch.zeros(1, 3, 2, 2, dtype=torch.uint8), (0.5,) * 3, (0.25,) * 3)[0, 0, 0, 0]), -2)
