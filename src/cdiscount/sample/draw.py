"""Drawing of synthetic product photos (180x180, like Cdiscount's).

Each level-1 group has its own scene (object shape, background, palette), so level-1 is easy
to tell apart. Inside a group, a category is a point ``theta`` in a 4-d style space (hue shift,
pattern angle, pattern frequency, accent size); a product draws its own theta around its
category's point, so categories of one group overlap by an amount set by a param, as look-alike
level-3 categories do. Books and CDs share one style for every genre and differ only in the
printed title words.
"""
from __future__ import annotations

import colorsys
import io
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

SIZE = 180


@dataclass(frozen=True)
class GroupStyle:
    """How one level-1 group looks."""

    shape: str  # book | cd | phone | device | ring | wheel | blob
    background: tuple[int, int, int]
    hue: float  # base hue of the object, 0..1
    saturation: float
    value: float
    text: bool = False  # covers carry printed titles (books, CDs)


#: Level-1 name -> scene. Unknown groups fall back to a style derived from the name.
STYLES: dict[str, GroupStyle] = {
    "LIBRAIRIE": GroupStyle("book", (236, 232, 224), 0.08, 0.55, 0.80, text=True),
    "MUSIQUE": GroupStyle("cd", (210, 214, 220), 0.60, 0.55, 0.70, text=True),
    "TELEPHONIE - GPS": GroupStyle("phone", (250, 250, 250), 0.55, 0.35, 0.35),
    "INFORMATIQUE": GroupStyle("device", (200, 215, 235), 0.00, 0.05, 0.25),
    "BIJOUX -  LUNETTES - MONTRES": GroupStyle("ring", (255, 255, 255), 0.12, 0.70, 0.85),
    "AUTO - MOTO": GroupStyle("wheel", (70, 70, 75), 0.00, 0.10, 0.60),
    "JEUX - JOUETS": GroupStyle("blob", (255, 236, 120), 0.95, 0.60, 0.95),
}


def style_for(level1: str) -> GroupStyle:
    """The scene of a level-1 group (a deterministic fallback for groups without one)."""
    if level1 in STYLES:
        return STYLES[level1]
    h = (sum(level1.encode()) % 97) / 97
    shapes = ["phone", "device", "ring", "wheel", "blob"]
    return GroupStyle(shapes[len(level1) % len(shapes)], (240, 240, 240), h, 0.6, 0.7)


def _rgb(h: float, s: float, v: float) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, min(max(s, 0), 1), min(max(v, 0), 1))
    return int(r * 255), int(g * 255), int(b * 255)


@lru_cache(maxsize=32)
def font(size: int) -> ImageFont.FreeTypeFont:
    """DejaVu Sans Bold, shipped inside matplotlib's wheel: every French accent, no system font.

    (Pillow's own default font has no glyphs for capital accented letters such as 'É'.)
    """
    import matplotlib

    return ImageFont.truetype(str(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans-Bold.ttf"), size)


def _pattern(color, accent, theta: np.ndarray) -> Image.Image:
    """Stripes whose angle and frequency encode theta[1] and theta[2]."""
    big = Image.new("RGB", (2 * SIZE, 2 * SIZE), color)
    d = ImageDraw.Draw(big)
    n = 2 + int(round(np.clip(theta[2], 0, 1) * 8))
    period = 2 * SIZE / (2 * n)
    for i in range(2 * n):
        y = int(i * period)
        d.rectangle([0, y, 2 * SIZE, y + int(period * 0.45)], fill=accent)
    angle = float(np.clip(theta[1], 0, 1)) * 180
    big = big.rotate(angle, resample=Image.BILINEAR)
    return big.crop((SIZE // 2, SIZE // 2, SIZE // 2 + SIZE, SIZE // 2 + SIZE))


def _shape_mask(shape: str) -> tuple[Image.Image, tuple[int, int, int, int]]:
    mask = Image.new("L", (SIZE, SIZE), 0)
    d = ImageDraw.Draw(mask)
    box = {
        "book": (35, 15, 145, 165),
        "cd": (20, 20, 160, 160),
        "phone": (55, 12, 125, 168),
        "device": (20, 55, 160, 125),
        "ring": (30, 30, 150, 150),
        "wheel": (20, 20, 160, 160),
        "blob": (35, 40, 145, 160),
    }[shape]
    if shape in ("book", "cd"):
        d.rectangle(box, fill=255)
    elif shape in ("phone", "device"):
        d.rounded_rectangle(box, radius=14, fill=255)
    elif shape == "ring":
        d.ellipse(box, fill=255)
        d.ellipse((58, 58, 122, 122), fill=0)
    else:
        d.ellipse(box, fill=255)
    return mask, box


def _fit_font(draw: ImageDraw.ImageDraw, text: str, width: int, start: int) -> ImageFont.FreeTypeFont:
    size = start
    while size > 10 and draw.textlength(text, font=font(size)) > width:
        size -= 1
    return font(size)


def draw_view(
    style: GroupStyle,
    theta: np.ndarray,
    rng: np.random.Generator,
    *,
    title: list[str] | None = None,
    author: str | None = None,
    back: bool = False,
) -> Image.Image:
    """One photo of a product: its group's scene, styled by ``theta``, seen from a jittered view."""
    hue = style.hue + (float(theta[0]) - 0.5) * 0.5
    color = _rgb(hue, style.saturation, style.value)
    accent = _rgb(hue + 0.5, style.saturation * 0.8, min(1.0, style.value + 0.15))
    bg = tuple(int(np.clip(c + rng.normal(0, 6), 0, 255)) for c in style.background)
    img = Image.new("RGB", (SIZE, SIZE), bg)
    mask, box = _shape_mask(style.shape)
    img.paste(_pattern(color, accent, theta), mask=mask)
    d = ImageDraw.Draw(img)
    x0, y0, x1, y1 = box
    r = int(6 + float(np.clip(theta[3], 0, 1)) * 22)  # accent size encodes theta[3]
    cx, cy = (x0 + x1) // 2, (y0 + y1) // 2
    if style.shape == "phone":
        d.rounded_rectangle((x0 + 6, y0 + 14, x1 - 6, y1 - 20), radius=4, fill=(25, 25, 35))
        d.ellipse((cx - 5, y1 - 16, cx + 5, y1 - 6), fill=accent)
    elif style.shape == "device":
        d.line([(x1, cy), (x1 + 10, cy - 25), (x1 + 20, cy - 10)], fill=(30, 30, 30), width=3)
        d.ellipse((cx - r, cy - r // 2, cx + r, cy + r // 2), fill=accent)
    elif style.shape == "wheel":
        d.ellipse((cx - 45, cy - 45, cx + 45, cy + 45), fill=(190, 190, 195))
        for k in range(5):
            a = 2 * np.pi * k / 5
            d.line([(cx, cy), (cx + 44 * np.cos(a), cy + 44 * np.sin(a))], fill=accent, width=4 + r // 4)
        d.ellipse((cx - r // 2, cy - r // 2, cx + r // 2, cy + r // 2), fill=(40, 40, 40))
    elif style.shape == "ring":
        d.ellipse((cx - r // 2, y0 - r // 2 + 10, cx + r // 2, y0 + r // 2 + 10), fill=accent)
    elif style.shape == "blob":
        for ex in (cx - 20, cx + 12):
            d.ellipse((ex, cy - 25, ex + 10, cy - 15), fill=(20, 20, 20))
        d.ellipse((x0 - r // 2, y0 - r // 2, x0 + r // 2 + 10, y0 + r // 2 + 10), fill=color)
        d.ellipse((x1 - r // 2 - 10, y0 - r // 2, x1 + r // 2, y0 + r // 2 + 10), fill=color)
    elif style.shape == "cd" and not back:
        d.ellipse((x1 - 40, cy - 60, x1 + 80, cy + 60), fill=(205, 205, 212), outline=(150, 150, 160))
        d.ellipse((x1 + 12, cy - 8, x1 + 28, cy + 8), fill=bg)
    if style.text:
        _draw_cover_text(d, box, title, author, back, rng)
    return _jitter(img, rng, bg, flip=not style.text)


def _draw_cover_text(d: ImageDraw.ImageDraw, box, title, author, back: bool, rng: np.random.Generator) -> None:
    x0, y0, x1, y1 = box
    if back:  # back cover: a barcode and some neutral small print
        for k in range(24):
            x = x0 + 15 + 3 * k
            d.rectangle((x, y1 - 40, x + int(rng.integers(1, 3)), y1 - 15), fill=(0, 0, 0))
        d.rectangle((x0 + 8, y0 + 10, x1 - 8, y0 + 50), fill=(250, 250, 250))
        return
    if not title:
        return
    band_top = y0 + 18
    words = [w.upper() for w in title]
    joined = " ".join(words)
    fits = d.textlength(joined, font=font(15)) <= x1 - x0 - 12
    lines = [joined] if fits else words  # one word per line rather than unreadably small print
    heights = []
    for line in lines:
        f = _fit_font(d, line, x1 - x0 - 12, 20)
        heights.append((line, f, f.getbbox(line)[3] + 6))
    band_h = sum(h for _, _, h in heights) + 10 + (18 if author else 0)
    d.rectangle((x0 + 3, band_top, x1 - 3, band_top + band_h), fill=(252, 252, 250))
    y = band_top + 6
    for line, f, h in heights:
        w = d.textlength(line, font=f)
        d.text(((x0 + x1 - w) / 2, y), line, fill=(10, 10, 10), font=f)
        y += h
    if author:
        f = font(12)
        w = d.textlength(author, font=f)
        d.text(((x0 + x1 - w) / 2, y + 2), author, fill=(60, 60, 60), font=f)


def _jitter(img: Image.Image, rng: np.random.Generator, bg, *, flip: bool) -> Image.Image:
    """A different photo of the same object: small rotation, shift, zoom, mirror, noise."""
    angle = float(rng.uniform(-7, 7))
    scale = float(rng.uniform(0.92, 1.06))
    dx, dy = (float(v) for v in rng.uniform(-7, 7, size=2))
    img = img.rotate(angle, resample=Image.BILINEAR, translate=(dx, dy), fillcolor=bg)
    if abs(scale - 1) > 1e-3:
        w = int(SIZE * scale)
        img = img.resize((w, w), Image.BILINEAR)
        if w >= SIZE:
            o = (w - SIZE) // 2
            img = img.crop((o, o, o + SIZE, o + SIZE))
        else:
            canvas = Image.new("RGB", (SIZE, SIZE), bg)
            canvas.paste(img, ((SIZE - w) // 2, (SIZE - w) // 2))
            img = canvas
    if flip and rng.random() < 0.5:
        img = img.transpose(Image.FLIP_LEFT_RIGHT)
    arr = np.asarray(img, dtype=np.int16) + rng.normal(0, 4, size=(SIZE, SIZE, 1)).astype(np.int16)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def placeholder_unavailable() -> Image.Image:
    """Cdiscount's 'image non disponible' placeholder, shared by products of every category."""
    img = Image.new("RGB", (SIZE, SIZE), (255, 255, 255))
    d = ImageDraw.Draw(img)
    d.rounded_rectangle((60, 50, 120, 95), radius=6, outline=(190, 190, 190), width=3)
    d.ellipse((77, 60, 103, 86), outline=(190, 190, 190), width=3)
    for i, line in enumerate(["image", "non disponible"]):
        f = font(15)
        w = d.textlength(line, font=f)
        d.text(((SIZE - w) / 2, 110 + 20 * i), line, fill=(150, 150, 150), font=f)
    return img


def placeholder_white() -> Image.Image:
    """A plain white picture (an empty upload), also shared across categories."""
    return Image.new("RGB", (SIZE, SIZE), (255, 255, 255))


def instructions_sheet() -> Image.Image:
    """A compatibility table that sellers repeat on every product of one category."""
    img = Image.new("RGB", (SIZE, SIZE), (255, 255, 255))
    d = ImageDraw.Draw(img)
    d.text((12, 8), "COMPATIBLE AVEC", fill=(0, 0, 0), font=font(16))
    for i, brand in enumerate(["HP DeskJet 3630", "Canon PIXMA", "Epson XP-342", "Brother DCP", "Lexmark"]):
        y = 36 + 26 * i
        d.rectangle((10, y, 170, y + 22), outline=(120, 120, 120))
        d.text((16, y + 4), brand, fill=(20, 20, 20), font=font(13))
    return img


def to_jpeg(img: Image.Image, quality: int) -> bytes:
    """JPEG bytes (baseline, no EXIF), like the competition's pictures."""
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()
