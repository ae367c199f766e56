import numpy as np
import pandas as pd
import pytest

from cdiscount.evaluation import evaluate_products, taxonomy_distance

#: Four categories: 10 and 11 share level 2 (and level 1 'A'), 12 and 13 share level 1 'B' only.
TAX = pd.DataFrame({"idx": range(4), "category_id": [10, 11, 12, 13], "level1_idx": [0, 0, 1, 1],
                    "level2_idx": [0, 0, 2, 3], "level1": ["A", "A", "B", "B"], "level3": list("abcd")})


def test_product_metrics_by_hand() -> None:
    true = [10, 10, 11, 12, 13, 13, 13]  # class indices 0 0 1 2 3 3 3
    pred = [0, 1, 1, 3, 3, 2, 0]  # top-1: rows 0, 2 and 4 right, 3 of 7
    truth = pd.DataFrame({"_id": range(7), "category_id": true})
    preds = pd.DataFrame({"_id": range(7), "top_idx": [np.array([p, (p + 1) % 4]) for p in pred],
                          "top_prob": [np.array([0.6, 0.4])] * 7})
    # the images of products 0 and 1: top-1 classes 0, 1 and 0 against the true class 0 of both
    images = pd.DataFrame({"_id": [0, 0, 1], "top_idx": [np.array([0]), np.array([1]), np.array([0])]})
    metrics, per_cat, hist = evaluate_products(preds, truth, TAX, images)
    # Per class (TP, FP, FN) -> F1: 0: (1, 1, 1) -> 1/2; 1: (1, 1, 0) -> 2/3; 2: (0, 1, 1) -> 0;
    # 3: (1, 1, 2) -> 2/5. Macro = (1/2 + 2/3 + 0 + 2/5) / 4 = 47/120.
    assert metrics == pytest.approx({
        "products": 7,
        "product_accuracy": 3 / 7,
        "top5_accuracy": 4 / 7,  # + row 5, whose second guess (3) is right
        "level1_accuracy": 6 / 7,  # every wrong guess but row 6's (class 0 for a 'B' product) stays in the group
        "macro_f1": 47 / 120,
        "micro_f1": 3 / 7,  # = accuracy: one label per product
        "image_accuracy": 2 / 3,
    }, rel=1e-12)
    assert per_cat[["idx", "category_id", "products"]].to_dict("list") == {
        "idx": [0, 1, 2, 3], "category_id": [10, 11, 12, 13], "products": [2, 1, 1, 3]}
    assert per_cat["accuracy"].tolist() == pytest.approx([1 / 2, 1, 0, 1 / 3])
    # distances: rows 0, 2, 4 exact; row 1 (1 for 0) same level 2; rows 3, 5 same level 1; row 6 another group
    assert hist["products"].tolist() == [3, 1, 2, 1]


def test_taxonomy_distance_by_hand() -> None:
    pred, true = np.array([0, 1, 2, 3, 0]), np.array([0, 0, 3, 2, 3])
    assert taxonomy_distance(pred, true, TAX).tolist() == [0, 1, 2, 2, 3]


def test_products_without_a_prediction_are_an_error() -> None:
    truth = pd.DataFrame({"_id": [1, 2], "category_id": [10, 11]})
    preds = pd.DataFrame({"_id": [1], "top_idx": [np.array([0])], "top_prob": [np.array([1.0])]})
    with pytest.raises(ValueError, match="1 products have no prediction"):
        evaluate_products(preds, truth, TAX)


def test_streamed_file_evaluation_equals_the_in_memory_one(tmp_path) -> None:
    """evaluate_file reads only the truth's rows of a file (in small batches here) and must give
    exactly evaluate_products' numbers; rows of other products in the file are ignored."""
    from cdiscount.evaluation import evaluate_file
    from cdiscount.topk import product_table, writer

    rng = np.random.default_rng(0)
    n = 500
    ids = rng.permutation(10_000)[:n]
    top = np.stack([rng.permutation(4)[:3] for _ in range(n)])
    prob = np.sort(rng.random((n, 3)), axis=1)[:, ::-1]
    with writer(tmp_path / "p.parquet") as w:
        for b in range(0, n, 64):
            w.write_table(product_table(ids[b : b + 64], top[b : b + 64], prob[b : b + 64]))
    truth = pd.DataFrame({"_id": ids[::3], "category_id": rng.choice([10, 11, 12, 13], len(ids[::3]))})
    images = pd.DataFrame({"_id": np.repeat(ids, 2), "img_idx": np.tile([0, 1], n),
                           "top_idx": list(np.repeat(top[:, :1], 2, axis=0)),
                           "top_prob": list(np.repeat(prob[:, :1], 2, axis=0))})
    images.to_parquet(tmp_path / "im.parquet")
    preds = pd.DataFrame({"_id": ids, "top_idx": list(top), "top_prob": list(prob)})
    want = evaluate_products(preds, truth, TAX, images[["_id", "top_idx"]])
    got = evaluate_file(tmp_path / "p.parquet", truth, TAX, tmp_path / "im.parquet")
    assert got[0] == want[0] and want[0]["products"] == len(truth)
    pd.testing.assert_frame_equal(got[1], want[1])
    pd.testing.assert_frame_equal(got[2], want[2])
    with pytest.raises(ValueError, match="1 products have no prediction"):
        evaluate_file(tmp_path / "p.parquet", pd.concat([truth, pd.DataFrame({"_id": [99_999], "category_id": [10]})]),
                      TAX)
