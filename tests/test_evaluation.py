import numpy as np
import pandas as pd

from cdiscount.evaluation import evaluate_products


def test_product_metrics_include_micro_f1_equal_to_accuracy() -> None:
    tax = pd.DataFrame({"idx": range(4), "category_id": [10, 11, 12, 13], "level1_idx": [0, 0, 1, 1],
                        "level2_idx": [0, 1, 2, 3], "level1": ["A", "A", "B", "B"], "level3": list("abcd")})
    true = [10, 10, 11, 12, 13, 13, 13]
    pred = [0, 1, 1, 3, 3, 2, 0]  # class indices: 3 of 7 right
    truth = pd.DataFrame({"_id": range(7), "category_id": true})
    preds = pd.DataFrame({"_id": range(7), "top_idx": [np.array([p, (p + 1) % 4]) for p in pred],
                          "top_prob": [np.array([0.6, 0.4])] * 7})
    metrics, per_cat, hist = evaluate_products(preds, truth, tax)
    assert metrics["product_accuracy"] == metrics["micro_f1"] == 3 / 7
    assert 0 < metrics["macro_f1"] < 1 and hist["products"].sum() == 7
