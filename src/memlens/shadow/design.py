"""The balanced keep matrix of a shadow-model experiment.

A pool of ``n`` candidate examples and ``K`` shadow models (``K`` even). ``keep[k, i]`` is True
when example ``i`` is in model ``k``'s training set. memlens uses a *paired* balanced design:
models ``2j`` and ``2j + 1`` split the pool between them (a fresh random half for every pair), so

* every example is IN for exactly ``K/2`` models (one of each pair), and
* every model trains on ``floor(n/2)`` or ``ceil(n/2)`` examples.

Carlini et al. 2022 ("Membership Inference Attacks From First Principles", arXiv:2112.03570)
draw each example's IN models at random, which balances the examples but lets model sizes vary;
the pairs balance both. The pairs also make leave-one-model-out evaluation clean
(:func:`references_for`): when model ``k`` is the target, its partner is dropped from the
references as well, and the remaining ``K - 2`` models are ``K/2 - 1`` complete pairs, so every
example has exactly ``K/2 - 1`` IN and ``K/2 - 1`` OUT references whatever the target's own
membership. Without that, the number of IN references (``K/2 - 1`` for a member, ``K/2`` for a
non-member) would itself leak the answer into any estimator that depends on it (the public LiRA
code truncates every example to the smallest IN count for the same reason).

A pool may hold several copies of one text. :func:`balanced_keep` over the copies (``split_by
copy``) gives each copy its own halves; :func:`text_keep` draws the halves over the distinct texts
and gives every copy its text's column (``split_by text``), so a model trains on all copies of a
text or on none. Both are balanced per example; only the second is balanced per text.
"""

from __future__ import annotations

import numpy as np

from memlens.errors import UserError


def check_design(n_models: int, n_examples: int) -> None:
    """Refuse an odd or too small ``K`` and a pool of fewer than 2 examples (one sentence each)."""
    if n_models < 2 or n_models % 2:
        raise UserError(
            f"the number of shadow models must be even and at least 2 (each example is IN for "
            f"exactly half of them), got {n_models}."
        )
    if n_examples < 2:
        raise UserError(
            f"the pool needs at least 2 examples to split into halves, got {n_examples}."
        )


def balanced_keep(n_models: int, n_examples: int, seed: int = 0) -> np.ndarray:
    """The paired balanced keep matrix ``[K, n]`` (bool), deterministic in ``seed``.

    Pair ``j`` (models ``2j``, ``2j+1``) takes a random permutation of the examples; model ``2j``
    keeps the first ``n // 2`` (plus one more for odd pairs when ``n`` is odd, alternating so the
    sizes stay within one) and model ``2j + 1`` keeps the rest.

    Examples
    --------
    >>> keep = balanced_keep(4, 6, seed=0)
    >>> keep.sum(axis=0).tolist(), keep.sum(axis=1).tolist()
    ([2, 2, 2, 2, 2, 2], [3, 3, 3, 3])
    """
    check_design(n_models, n_examples)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x5AD0]))
    keep = np.zeros((n_models, n_examples), dtype=bool)
    for j in range(n_models // 2):
        half = n_examples // 2 + (n_examples % 2 if j % 2 == 0 else 0)
        chosen = rng.permutation(n_examples)[:half]
        keep[2 * j, chosen] = True
        keep[2 * j + 1] = ~keep[2 * j]
    return keep


def text_keep(n_models: int, groups: np.ndarray, seed: int = 0) -> np.ndarray:
    """The paired balanced keep matrix drawn over distinct texts: ``[K, n]`` (bool).

    ``groups [n]``: the text of each example (ids ``0..G-1`` as :func:`copy_groups` numbers
    them). The pairs split the ``G`` texts (:func:`balanced_keep` with ``G`` columns) and every
    copy takes its text's column, so each text, with all its copies, is IN for exactly ``K/2``
    models; a model's number of examples varies with the copies of the texts it drew.

    Examples
    --------
    >>> keep = text_keep(4, np.array([0, 1, 1, 2]), seed=0)
    >>> bool((keep[:, 1] == keep[:, 2]).all()), keep.sum(axis=0).tolist()
    (True, [2, 2, 2, 2])
    """
    groups = np.asarray(groups, dtype=np.int64)
    n_texts = int(groups.max()) + 1 if groups.size else 0
    if n_texts < 2:
        raise UserError(
            f"the pool needs at least 2 distinct texts to split by text into halves, got {n_texts}."
        )
    return balanced_keep(n_models, n_texts, seed)[:, groups]


def first_copies(groups: np.ndarray) -> np.ndarray:
    """Positions of the first example of every text (``groups`` as :func:`copy_groups` gives)."""
    _, first = np.unique(np.asarray(groups), return_index=True)
    return np.sort(first)


def partner(k: int) -> int:
    """The model that splits the pool with model ``k`` (``k xor 1``)."""
    return k ^ 1


def references_for(target: int, n_models: int) -> np.ndarray:
    """Reference models of ``target`` in leave-one-model-out evaluation: all but it and its partner."""
    return np.array([j for j in range(n_models) if j not in (target, partner(target))], dtype=int)


def is_balanced(keep: np.ndarray) -> bool:
    """Every example IN for exactly half of the models."""
    keep = np.asarray(keep, dtype=bool)
    return bool(keep.shape[0] % 2 == 0 and np.all(keep.sum(axis=0) == keep.shape[0] // 2))


def copy_groups(tokens: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """``[n]`` group ids: examples with the same token sequence (copies of one text) share an id.

    ``tokens [n, S]`` and ``lengths [n]``: each example is ``tokens[i, :lengths[i]]`` (as the
    pool counts copies). Ids number the groups in order of first occurrence.
    """
    first: dict[bytes, int] = {}
    ids = np.empty(len(lengths), dtype=np.int64)
    for i, m in enumerate(np.asarray(lengths)):
        key = np.ascontiguousarray(tokens[i, : int(m)]).tobytes()
        ids[i] = first.setdefault(key, len(first))
    return ids


def text_membership(keep: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Membership by text: ``[K, n]``, True where model ``k`` trained on *any* copy of example
    ``i``'s text (``groups[i]``, e.g. from :func:`copy_groups`).

    ``keep`` labels each copy of a repeated text on its own; a model that trained on one copy has
    seen the text of every other copy too, so for the question "did the model train on this
    text?" all copies are members. An example that occurs once keeps its ``keep`` label.

    Examples
    --------
    >>> keep = np.array([[True, False, False], [False, True, False]])
    >>> text_membership(keep, np.array([0, 0, 1])).tolist()
    [[True, True, False], [True, True, False]]
    """
    keep = np.asarray(keep, dtype=bool)
    groups = np.asarray(groups)
    if groups.shape != (keep.shape[1],):
        raise UserError(
            f"need one group id per example: {keep.shape[1]} examples, {groups.size} ids."
        )
    _, inv = np.unique(groups, return_inverse=True)
    seen = np.zeros((inv.max() + 1 if inv.size else 0, keep.shape[0]), dtype=np.int64)
    np.add.at(seen, inv, keep.T.astype(np.int64))
    return (seen[inv] > 0).T
