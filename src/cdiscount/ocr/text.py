"""Text normalisation for OCR output, and the test of whether a text is worth using.

OCR of 180x180 covers returns mixed case, stray accents (or missing ones: Tesseract often
reads 'É' as 'E'), punctuation and many fragments of noise ('1 qu mh q c i 5' in reference
report 001). Everything downstream (TF-IDF, token matching, caching by text) compares the
normalised form, so 'ENQUÊTE', 'Enquete' and 'enquête' are one token, and a text counts as
usable only if it carries some real letters.
"""
from __future__ import annotations

import re
import unicodedata

import pandas as pd

#: Letters that Unicode does not decompose into base + accent but French uses.
_LIGATURES = str.maketrans({"œ": "oe", "Œ": "oe", "æ": "ae", "Æ": "ae", "ß": "ss", "ø": "o", "Ø": "o"})
_NON_ALNUM = re.compile(r"[^a-z0-9]+")


def normalize(text: str | None) -> str:
    """Lowercase, accents folded (é -> e, œ -> oe), anything but [a-z0-9] turned into one space.

    Apostrophes split words ("D'ORAL" -> "d oral"), as French elision should.
    """
    if not text:
        return ""
    text = text.translate(_LIGATURES)
    folded = unicodedata.normalize("NFKD", text)
    folded = "".join(c for c in folded if not unicodedata.combining(c)).lower()
    return _NON_ALNUM.sub(" ", folded).strip()


def tokens(text: str | None) -> list[str]:
    """The normalised words of ``text``, in order (duplicates kept)."""
    norm = normalize(text)
    return norm.split() if norm else []


def usable(text: str | None, min_letters: int = 4, min_word: int = 3) -> bool:
    """Whether ``text`` carries enough real letters to be worth classifying.

    Counts the letters of purely alphabetic words of at least ``min_word`` letters, so the
    typical OCR noise of single letters and digit soup ('1 qu mh q c i 5') is not usable, but
    one real word ('manga', 'jazz') is.
    """
    letters = sum(len(t) for t in tokens(text) if len(t) >= min_word and t.isalpha())
    return letters >= min_letters


def product_texts(images: pd.DataFrame, ocr: pd.DataFrame) -> pd.Series:
    """Per-product OCR text: the texts of a product's pictures, in ``img_idx`` order, joined.

    ``images`` has ``_id``, ``img_idx``, ``md5`` (the decode stage's image index); ``ocr`` has
    ``md5``, ``text`` (the OCR cache). Pictures without OCR text contribute nothing; products
    with no text at all get ''. A product is classified from all its pictures because the title
    may be on the front and the genre hint on the back.
    """
    merged = images[["_id", "img_idx", "md5"]].merge(ocr[["md5", "text"]], on="md5", how="left")
    merged["text"] = merged["text"].fillna("").astype(str)
    merged = merged.sort_values(["_id", "img_idx"], kind="stable")
    joined = merged.groupby("_id", sort=True)["text"].agg(lambda s: " ".join(t for t in s if t.strip()))
    joined.name = "text"
    return joined

