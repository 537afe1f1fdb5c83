"""Counterfactual memorization (Zhang et al. 2023, "Counterfactual Memorization in Neural
Language Models", NeurIPS, arXiv:2112.12938).

For an example ``x`` and a measure ``M(f, x)`` of how well model ``f`` does on it::

    mem(x) = E_{k: keep[k, x]} M(f_k, x)  -  E_{k: not keep[k, x]} M(f_k, x)

the mean over the models that trained on ``x`` minus the mean over those that did not. The
paper's ``M`` is per-token accuracy (greedy, teacher forced); memlens also reports it with
``M`` = the sequence's log-likelihood in bits (how many bits cheaper ``x`` became for the models
that saw it) and per token. Each estimate rests on ``n_in`` and ``n_out`` models; its standard
error is ``sqrt(s_in^2 / n_in + s_out^2 / n_out)`` (sample variances, ``ddof=1``; NaN with fewer
than two models on a side).

An example that every model saw, or none, has no counterfactual: its memorization is 0 by
definition (and ``n_out`` or ``n_in`` says so). With the balanced design every example rests on
``K/2`` models each way. An example that occurs several times in the pool is in the training set
of some "OUT" models through its copies, so its counterfactual memorization is low; a unique
random canary's is high (the paper's finding).
"""

from __future__ import annotations

import numpy as np

MEASURES = {
    "accuracy": "per-token greedy accuracy (the paper's M)",
    "bits": "sequence log-likelihood in bits",
    "bits_per_token": "mean token log2-probability in bits",
}


def counterfactual(values: np.ndarray, keep: np.ndarray) -> dict[str, np.ndarray]:
    """``mem``, ``se``, ``mean_in``, ``mean_out``, ``n_in``, ``n_out`` per example.

    ``values`` and ``keep`` are ``[K, n]`` (models by examples).

    Examples
    --------
    >>> import numpy as np
    >>> v = np.array([[0.9, 0.5], [0.3, 0.5], [0.7, 0.5], [0.1, 0.5]])
    >>> keep = np.array([[1, 1], [0, 1], [1, 1], [0, 1]], dtype=bool)
    >>> r = counterfactual(v, keep)
    >>> r["mem"].round(6).tolist(), r["n_out"].tolist()
    ([0.6, 0.0], [2, 0])
    """
    v = np.asarray(values, dtype=np.float64)
    keep = np.asarray(keep, dtype=bool)
    if v.shape != keep.shape:
        raise ValueError(f"values {v.shape} and keep {keep.shape} must have the same shape")
    n_in = keep.sum(axis=0)
    n_out = (~keep).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_in = np.where(keep, v, 0.0).sum(axis=0) / n_in
        mean_out = np.where(~keep, v, 0.0).sum(axis=0) / n_out
        var_in = np.where(keep, (v - mean_in) ** 2, 0.0).sum(axis=0) / (n_in - 1)
        var_out = np.where(~keep, (v - mean_out) ** 2, 0.0).sum(axis=0) / (n_out - 1)
        se = np.sqrt(var_in / n_in + var_out / n_out)
    defined = (n_in > 0) & (n_out > 0)
    mem = np.where(defined, mean_in - mean_out, 0.0)
    se = np.where((n_in > 1) & (n_out > 1), se, np.nan)
    return {
        "mem": mem,
        "se": se,
        "mean_in": np.where(n_in > 0, mean_in, np.nan),
        "mean_out": np.where(n_out > 0, mean_out, np.nan),
        "n_in": n_in.astype(np.int64),
        "n_out": n_out.astype(np.int64),
    }
