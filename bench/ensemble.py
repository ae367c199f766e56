"""Array rewrites vs the plain loops they replaced (``make bench`` / ``python bench/ensemble.py``).

Prints, measured in one run on the same random inputs shaped like the real ones (5,270 classes,
K = 20, five components of which one is the sparse duplicate vote):
  * the ensemble's weight-grid fit: batched matrix products vs one weighted sum per weight vector;
  * the candidate lookup: sorted row-tagged keys vs the [N, U, K] pairwise comparison;
  * the product aggregator of inference: one ``index_add_`` per batch vs a running sum per picture.
The plain versions are kept here, and the tests check the rewrites against them result for result.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from cdiscount.components import Component, combine, simplex_grid
from cdiscount.ensemble import candidate_probs, fit_weights
from cdiscount.topk import ProductAggregator, topk

N_CLASSES, K = 5270, 20


def plain_fit(probs: np.ndarray, cand: np.ndarray, true: np.ndarray, mean: str, step: float
              ) -> tuple[np.ndarray, float]:
    """The grid fit as first written: every weight vector in grid order, one at a time."""
    logp, rows, is_true = np.log(probs), np.arange(len(cand)), cand == true[:, None]
    best, best_w = (-1.0, np.inf), None
    for w in simplex_grid(len(probs), step):
        s = combine(logp, probs, w, mean)
        acc = float((cand[rows, s.argmax(axis=1)] == true).mean())
        norm = np.logaddexp.reduce(s.astype(np.float64), axis=1)
        hit = np.where(is_true, s, -np.inf).max(axis=1)
        loss = float(np.mean(norm - np.where(np.isfinite(hit), hit, norm - 30.0)))
        if acc > best[0] + 1e-12 or (abs(acc - best[0]) <= 1e-12 and loss < best[1] - 1e-9):
            best, best_w = (acc, loss), w
    return best_w, best[0]


def pairwise_lookup(comp: Component, cand: np.ndarray, n_classes: int) -> np.ndarray:
    """The candidate lookup as first written: an [N, U, K] comparison."""
    hit = (cand[:, :, None] == comp.idx[:, None, :]) & (comp.idx >= 0)[:, None, :]
    value = np.where(hit, comp.prob[:, None, :], 0).sum(axis=2) / np.maximum(hit.sum(axis=2), 1)
    return np.where(hit.any(axis=2), value, comp.floor(n_classes)[:, None]).astype(np.float32)


def loop_aggregate(ids: np.ndarray, logp: torch.Tensor, k: int) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """Product scores as first written: a running sum per picture, one softmax per product."""
    out, cur, total, n = [], None, None, 0
    for pid, row in zip(ids.tolist(), logp.float()):
        if pid != cur and cur is not None:
            idx, prob = topk(torch.softmax(total / n, dim=0)[None], k)
            out.append((cur, idx[0], prob[0]))
        if pid != cur:
            cur, total, n = pid, row.clone(), 1
        else:
            total += row
            n += 1
    if cur is not None:
        idx, prob = topk(torch.softmax(total / n, dim=0)[None], k)
        out.append((cur, idx[0], prob[0]))
    return out


def components(n: int, rng: np.random.Generator) -> list[Component]:
    """Four model components (distinct top-K classes per row) and a sparse duplicate vote."""
    out = []
    for m in range(4):
        idx = np.argsort(rng.random((n, N_CLASSES)), axis=1)[:, :K]
        prob = (np.sort(rng.dirichlet(np.ones(K), n), axis=1)[:, ::-1] * 0.9).astype(np.float32)
        out.append(Component(f"model{m}", idx.astype(np.int64), prob))
    vote = np.full((n, K), -1, np.int64)
    vote[:, 0] = np.where(rng.random(n) < 0.4, out[0].idx[:, 0], -1)
    out.append(Component("dedup_vote", vote, np.where(vote >= 0, 0.9, 0).astype(np.float32)))
    return out


def _time(fn, *args):
    t = time.perf_counter()
    result = fn(*args)
    return time.perf_counter() - t, result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--products", type=int, default=5000, help="validation products in the fit (default 5000)")
    ap.add_argument("--pictures", type=int, default=20000, help="pictures through the aggregator (default 20000)")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    comps = components(args.products, rng)
    true = np.where(rng.random(args.products) < 0.5, comps[0].idx[:, 0], comps[1].idx[:, 0])
    t_new_lookup, (cand, probs) = _time(candidate_probs, comps, N_CLASSES)
    t_old_lookup, old_probs = _time(lambda: np.stack([pairwise_lookup(c, cand, N_CLASSES) for c in comps]))
    assert np.allclose(old_probs, probs)
    t_new_fit, new = _time(fit_weights, probs, cand, true, "geometric", 0.1)
    t_old_fit, old = _time(plain_fit, probs, cand, true, "geometric", 0.1)
    assert np.allclose(new[0], old[0])
    ids = np.repeat(np.arange(args.pictures), rng.integers(1, 4, args.pictures))[: args.pictures]
    logp = torch.log_softmax(torch.from_numpy(rng.normal(0, 3, (len(ids), N_CLASSES)).astype(np.float32)), dim=1)

    def batched():
        agg = ProductAggregator(K)
        out = [r for b in range(0, len(ids), 256) for r in agg.add(ids[b : b + 256], logp[b : b + 256])]
        return out + list(agg.flush())

    t_new_agg, _ = _time(batched)
    t_old_agg, _ = _time(loop_aggregate, ids, logp, K)
    print(f"{args.products} products x {len(comps)} components ({len(simplex_grid(len(comps), 0.1))} weight vectors)")
    print(f"  weight fit      plain loop {t_old_fit:7.2f} s   batched {t_new_fit:6.2f} s   {t_old_fit / t_new_fit:5.1f}x")
    print(f"  lookup          pairwise   {t_old_lookup:7.2f} s   sorted  {t_new_lookup:6.2f} s   "
          f"{t_old_lookup / t_new_lookup:5.1f}x")
    print(f"{len(ids)} pictures x {N_CLASSES} classes")
    print(f"  aggregator      loop {len(ids) / t_old_agg:9.0f} pictures/s   batched {len(ids) / t_new_agg:9.0f} "
          f"pictures/s   {t_old_agg / t_new_agg:5.1f}x")


if __name__ == "__main__":
    main()
