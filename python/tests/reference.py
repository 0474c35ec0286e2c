"""Exact references for the tests."""
import numpy as np


def brute_force(x, q, k, metric):
    """The exact top-k in float64, ties to the smaller id (the C++ contract)."""
    x64, q64 = x.astype(np.float64), q.astype(np.float64)
    if metric == "cosine":
        x64 = x64 / np.maximum(np.linalg.norm(x64, axis=1, keepdims=True), 1e-300)
        q64 = q64 / np.maximum(np.linalg.norm(q64, axis=1, keepdims=True), 1e-300)
    if metric == "l2":
        s = ((q64[:, None, :] - x64[None, :, :]) ** 2).sum(-1)
        key = s
    else:
        s = q64 @ x64.T
        key = -s
    ids = np.empty((len(q), k), dtype=np.int64)
    scores = np.empty((len(q), k))
    for i in range(len(q)):
        order = np.lexsort((np.arange(len(x)), key[i]))[:k]
        ids[i] = order
        scores[i] = s[i, order]
    return scores, ids
