"""Genre from cover text: a TF-IDF + logistic regression model, and report 001's token matching.

The text model: character n-grams (``char_wb``, 2-5) survive OCR's typical damage (one wrong
or dropped letter still leaves most n-grams of 'inspecteur' intact, and they catch word
stems: 'poème', 'poèmes', 'poésie'); word unigrams + bigrams add exact title words and
names. Both are TF-IDF weighted (sublinear tf) on the normalised text, and a multinomial
logistic regression gives calibrated-enough probabilities for fusion with the image model.
Products whose text is not :func:`~cdiscount.ocr.text.usable` get no text prediction: their
row is uniform and flagged, which is exactly neutral in a product of experts.

The baseline, reference report 001 (section 6.7.2): lowercase alphanumeric tokens, no
stemming, no stopword removal; the tokens of the training covers are pooled per category, and
a cover goes to the category with the most matched tokens. :func:`category_tokens_from_texts`
builds those pools; :func:`category_tokens_from_names` is the variant needing no training text
(the words of the level-3 names, e.g. 'POLICIER', 'MANGA', 'CD JAZZ BLUES').
"""
from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import FeatureUnion, Pipeline

from cdiscount.ocr.text import normalize, tokens, usable


@dataclass
class TextModel:
    """A fitted text classifier over ``classes`` (category ids, in column order)."""

    pipeline: Pipeline
    classes: np.ndarray
    min_letters: int

    def usable(self, texts: Sequence[str]) -> np.ndarray:
        return np.fromiter((usable(t, self.min_letters) for t in texts), dtype=bool, count=len(texts))


@dataclass
class TextPrediction:
    """Per-product text probabilities; rows without usable text are uniform and ``usable`` False."""

    proba: np.ndarray  # [n, len(classes)] float64, rows sum to 1
    usable: np.ndarray  # [n] bool
    classes: np.ndarray

    @property
    def coverage(self) -> float:
        """Share of products with a text prediction."""
        return float(self.usable.mean()) if len(self.usable) else 0.0

    def argmax(self) -> np.ndarray:
        """Predicted category per product, -1 where the text is not usable."""
        pred = self.classes[self.proba.argmax(axis=1)].astype(np.int64)
        pred[~self.usable] = -1
        return pred


def _features(char_ngrams: tuple[int, int], word_ngrams: tuple[int, int], min_df: int,
              max_features: int | None) -> FeatureUnion:
    common = dict(preprocessor=normalize, lowercase=False, sublinear_tf=True, min_df=min_df,
                  max_features=max_features, dtype=np.float32)
    return FeatureUnion([
        ("char", TfidfVectorizer(analyzer="char_wb", ngram_range=char_ngrams, **common)),
        ("word", TfidfVectorizer(analyzer="word", ngram_range=word_ngrams, token_pattern=r"(?u)\b\w\w+\b", **common)),
    ])


def fit_text_model(
    texts: Sequence[str],
    labels: Sequence[Hashable],
    *,
    min_letters: int = 4,
    C: float = 4.0,
    char_ngrams: tuple[int, int] = (2, 5),
    word_ngrams: tuple[int, int] = (1, 2),
    min_df: int = 1,
    max_features: int | None = 300_000,
    class_weight: str | None = None,
    max_iter: int = 2000,
) -> TextModel:
    """Fit on the products whose text is usable (the others carry no signal, only noise).

    ``C`` is the inverse L2 strength; ``min_df`` drops n-grams seen in fewer products (raise it
    to 2-3 at real scale, where OCR noise invents millions of one-off n-grams); ``max_features``
    caps each vectoriser's vocabulary.
    """
    texts = [t if isinstance(t, str) else "" for t in texts]
    labels_arr = np.asarray(labels)
    if len(texts) != len(labels_arr):
        raise ValueError(f"{len(texts)} texts but {len(labels_arr)} labels")
    keep = np.fromiter((usable(t, min_letters) for t in texts), dtype=bool, count=len(texts))
    if len(np.unique(labels_arr[keep])) < 2:
        raise ValueError(f"need usable texts of at least 2 categories to fit a text model "
                         f"({int(keep.sum())} usable texts of {len(texts)})")
    pipeline = Pipeline([
        ("features", _features(char_ngrams, word_ngrams, min_df, max_features)),
        ("clf", LogisticRegression(C=C, max_iter=max_iter, class_weight=class_weight)),
    ])
    pipeline.fit([t for t, k in zip(texts, keep) if k], labels_arr[keep])
    return TextModel(pipeline=pipeline, classes=pipeline.classes_, min_letters=min_letters)


def predict_proba(model: TextModel, texts: Sequence[str], classes: Sequence[Hashable] | None = None) -> TextPrediction:
    """Text probabilities per product, in the column order of ``classes`` (default the model's).

    A category of ``classes`` the model never saw gets probability 0 where text is usable
    (callers fusing in log space floor it); rows with unusable text are uniform over ``classes``.
    """
    texts = [t if isinstance(t, str) else "" for t in texts]
    out_classes = np.asarray(model.classes if classes is None else classes)
    ok = model.usable(texts)
    proba = np.full((len(texts), len(out_classes)), 1.0 / max(len(out_classes), 1))
    if ok.any():
        p = model.pipeline.predict_proba([t for t, k in zip(texts, ok) if k])
        col = {c: j for j, c in enumerate(model.classes.tolist())}
        full = np.zeros((p.shape[0], len(out_classes)))
        for j, c in enumerate(out_classes.tolist()):
            if c in col:
                full[:, j] = p[:, col[c]]
        sums = full.sum(axis=1, keepdims=True)
        full = np.where(sums > 0, full / np.where(sums > 0, sums, 1), 1.0 / len(out_classes))
        proba[ok] = full
    return TextPrediction(proba=proba, usable=ok, classes=out_classes)


def category_tokens_from_names(names: Mapping[Hashable, str], min_len: int = 3) -> dict[Hashable, frozenset[str]]:
    """Category -> normalised words of its (level-3) name, words of at least ``min_len`` characters
    ('CD JAZZ BLUES' -> {'jazz', 'blues'}; 'DE', 'CD' carry no genre)."""
    return {c: frozenset(t for t in tokens(n) if len(t) >= min_len) for c, n in names.items()}


def category_tokens_from_texts(texts: Iterable[str], labels: Iterable[Hashable]) -> dict[Hashable, frozenset[str]]:
    """Report 001's pools: every token of the training covers of a category (no stopwords removed)."""
    pools: dict[Hashable, set[str]] = {}
    for text, label in zip(texts, labels):
        pools.setdefault(label, set()).update(tokens(text))
    return {c: frozenset(s) for c, s in pools.items()}


def token_match(text: str, category_tokens: Mapping[Hashable, Iterable[str] | str]) -> Hashable | None:
    """Report 001's rule: the category sharing the most distinct tokens with ``text``.

    ``category_tokens`` maps category -> its tokens (from :func:`category_tokens_from_texts` or
    :func:`category_tokens_from_names`), or -> a name string (tokenised as the names variant).
    None when no token matches; a tie goes to the first category in mapping order (the report
    does not say; taxonomy order keeps it deterministic).
    """
    words = set(tokens(text))
    if not words:
        return None
    best, best_n = None, 0
    for category, toks in category_tokens.items():
        pool = category_tokens_from_names({category: toks})[category] if isinstance(toks, str) else toks
        n = len(words.intersection(pool))
        if n > best_n:
            best, best_n = category, n
    return best
