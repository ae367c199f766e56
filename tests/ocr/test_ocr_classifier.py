"""The text classifier and report 001's token-matching baseline, on hand-made cover texts."""
from __future__ import annotations

import numpy as np
import pytest

from cdiscount.ocr.classifier import (category_tokens_from_names, category_tokens_from_texts, fit_text_model,
                                      predict_proba, token_match)

GENRES = {
    1: ["meurtre", "enquête", "inspecteur", "crime", "suspect"],  # a crime genre
    2: ["recettes", "gâteaux", "saveurs", "desserts", "cuisine"],  # cooking
    3: ["ninja", "samouraï", "tome", "dragon", "sensei"],  # manga
}
FILLER = ["le", "la", "grand", "nouveau", "édition", "Martin", "Dubois", "Petit"]


def ocr_noise(word: str, rng: np.random.Generator) -> str:
    """What OCR does to a title word: case, a dropped accent, one wrong or missing letter."""
    w = word.upper() if rng.random() < 0.5 else word
    if rng.random() < 0.3:
        w = w.replace("ê", "e").replace("â", "a").replace("ï", "i").replace("Ê", "E")
    if len(w) > 4 and rng.random() < 0.4:
        i = int(rng.integers(1, len(w) - 1))
        w = w[:i] + ("" if rng.random() < 0.5 else "o") + w[i + 1:]
    return w


def make_texts(n: int, seed: int) -> tuple[list[str], list[int]]:
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for k in range(n):
        label = list(GENRES)[k % 3]
        words = [ocr_noise(str(w), rng) for w in rng.choice(GENRES[label], size=2, replace=False)]
        words.insert(int(rng.integers(0, 3)), str(rng.choice(FILLER)))
        texts.append(" ".join(words) + " " + "".join(rng.choice(list("ab1 "), size=3)))  # + stray marks
        labels.append(label)
    return texts, labels


def test_text_model_recovers_genres_from_noisy_ocr() -> None:
    texts, labels = make_texts(150, seed=0)
    model = fit_text_model(texts, labels)
    test_texts, test_labels = make_texts(60, seed=1)
    pred = predict_proba(model, test_texts)
    assert pred.usable.all()
    accuracy = float((pred.argmax() == np.array(test_labels)).mean())
    assert accuracy >= 0.9, accuracy
    np.testing.assert_allclose(pred.proba.sum(axis=1), 1.0)
    # unseen spellings still land: missing accents, capitals, a typo
    assert list(predict_proba(model, ["ENQUETE DU INSPECTEOR", "Gateaux et desserts", "SAMOURAI"]).argmax()) == [1, 2, 3]


def test_unusable_text_gets_no_prediction() -> None:
    model = fit_text_model(*make_texts(60, seed=2))
    pred = predict_proba(model, ["", "1 qu mh q c i 5", "crime et meurtre", None])  # type: ignore[list-item]
    assert pred.usable.tolist() == [False, False, True, False]
    np.testing.assert_allclose(pred.proba[~pred.usable], 1 / 3)
    assert pred.argmax().tolist()[0] == -1 and pred.argmax().tolist()[2] == 1
    assert pred.coverage == 0.25


def test_unusable_training_texts_are_ignored_and_columns_follow_the_caller() -> None:
    texts, labels = make_texts(60, seed=3)
    model = fit_text_model(texts + ["", "x y 2"] * 10, labels + [9] * 20)  # category 9 only has noise
    assert sorted(model.classes.tolist()) == [1, 2, 3]
    pred = predict_proba(model, ["recettes de desserts"], classes=[3, 9, 2, 1])
    assert pred.proba.shape == (1, 4) and pred.proba[0, 1] == 0.0  # never seen in usable text
    assert pred.argmax().tolist() == [2]
    np.testing.assert_allclose(pred.proba.sum(), 1.0)
    with pytest.raises(ValueError, match="at least 2 categories"):
        fit_text_model(["crime scene", "", "meurtre"], [1, 2, 1])


def test_token_match_on_category_names() -> None:
    names = {1000014238: "POLICIER", 1000014053: "MANGA", 1000014090: "DROIT CIVIL",
             1000018286: "CD JAZZ BLUES", 1000014075: "CUISINE TRADITIONNELLE"}
    tokens = category_tokens_from_names(names)
    assert tokens[1000018286] == {"jazz", "blues"}  # 'cd' is too short to mean anything
    assert token_match("Le MANGA du siècle, tome 3", tokens) == 1000014053
    assert token_match("Code du droit civil", tokens) == 1000014090
    assert token_match("Best of Blues & Jazz", tokens) == 1000018286
    assert token_match("Cuisine traditionnelle de Bretagne", names) == 1000014075  # names given directly
    assert token_match("bonjour", tokens) is None
    assert token_match("", tokens) is None


def test_token_match_with_report_001_pools() -> None:
    pools = category_tokens_from_texts(["Meurtre à Paris", "Enquête sur un crime", "Recettes de Paris"],
                                       [1, 1, 2])
    assert pools[1] == {"meurtre", "a", "paris", "enquete", "sur", "un", "crime"}
    assert token_match("CRIME ET MEURTRE", pools) == 1
    assert token_match("recettes", pools) == 2
    assert token_match("paris", pools) == 1  # a tie: first category in mapping order
    assert token_match("jazz", pools) is None
