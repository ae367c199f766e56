"""Text normalisation and the usable-text rule."""
from __future__ import annotations

import pandas as pd

from cdiscount.ocr.text import normalize, product_texts, tokens, usable


def test_normalize_folds_case_accents_ligatures_and_punctuation() -> None:
    assert normalize("ENQUÊTE à l'Opéra — Tome 3!") == "enquete a l opera tome 3"
    assert normalize("Cœur   d'ŒUVRE\nÉté") == "coeur d oeuvre ete"
    assert normalize("SITUATIONS D'ORAL") == "situations d oral"
    assert normalize(None) == "" and normalize("  ... ") == ""
    assert tokens("Samouraï, NINJA & dragon") == ["samourai", "ninja", "dragon"]


def test_usable_needs_real_words_not_ocr_noise() -> None:
    assert usable("MANGA")
    assert usable("jazz")
    assert not usable("1 qu mh q c i 5")  # report 001's example of what OCR mostly returns
    assert not usable("")
    assert not usable("ab 12345 x")
    assert usable("ab cd rap", min_letters=3) and not usable("ab cd rap")


def test_product_texts_join_pictures_in_order() -> None:
    images = pd.DataFrame({"_id": [5, 5, 7, 9], "img_idx": [1, 0, 0, 0], "md5": ["b", "a", "c", "a"]})
    ocr = pd.DataFrame({"md5": ["a", "b"], "text": ["front title", "back blurb"]})
    texts = product_texts(images, ocr)
    assert texts.to_dict() == {5: "front title back blurb", 7: "", 9: "front title"}
