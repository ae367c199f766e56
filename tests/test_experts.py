import numpy as np
import pytest

from cdiscount.experts import ExpertConfig, fit_expert
from cdiscount.errors import ConfigError
from conftest import config


def _blobs(n: int = 300, k: int = 4, d: int = 8, seed: int = 0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 3, size=(k, d))
    y = rng.integers(0, k, size=n)
    return centers[y] + rng.normal(0, 1, size=(n, d)), y


@pytest.mark.parametrize("cfg", [
    config(ExpertConfig, model="mlp", epochs=5),
    config(ExpertConfig, model="logreg"),
    config(ExpertConfig, model="ovr"),
    config(ExpertConfig, model="xgboost", n_estimators=20, max_depth=3),
    config(ExpertConfig, model="xgboost", grid=True, grid_max_depth=[2], grid_n_estimators=[5, 10], grid_learning_rate=[0.3]),
])
def test_each_expert_learns_separable_classes(cfg: ExpertConfig) -> None:
    x, y = _blobs()
    expert = fit_expert(x[:200], y[:200], 4, cfg)
    p = expert.predict_proba(x[200:])
    assert p.shape == (100, 4) and np.allclose(p.sum(axis=1), 1, atol=1e-5)
    assert (p.argmax(axis=1) == y[200:]).mean() > 0.9


def test_a_class_missing_from_training_gets_zero_probability() -> None:
    x, y = _blobs(k=3)
    keep = y != 1
    for model in ("logreg", "ovr", "xgboost"):
        p = fit_expert(x[keep], y[keep], 3, config(ExpertConfig, model=model, n_estimators=10)).predict_proba(x[:5])
        assert p.shape == (5, 3) and np.allclose(p[:, 1], 0) and np.allclose(p.sum(axis=1), 1, atol=1e-5)


def test_unknown_model_is_rejected() -> None:
    x, y = _blobs(n=20)
    with pytest.raises(ConfigError, match=r"specific.model = 'svm': expected 'mlp' \| 'logreg'"):
        fit_expert(x, y, 4, config(ExpertConfig, model="svm"))


def test_ovr_is_one_binary_head_per_class_renormalised() -> None:
    from sklearn.multiclass import OneVsRestClassifier

    x, y = _blobs(k=5)
    expert = fit_expert(x, y, 5, config(ExpertConfig, model="ovr"))
    assert isinstance(expert.model, OneVsRestClassifier) and len(expert.model.estimators_) == 5
    z = expert.scaler.transform(x[:7].astype(np.float32))
    binary = np.stack([e.predict_proba(z)[:, 1] for e in expert.model.estimators_], axis=1)
    assert np.allclose(expert.predict_proba(x[:7]), binary / binary.sum(axis=1, keepdims=True), atol=1e-6)
