"""What the shadow recipes write as their main JSON, as typed models.

* :class:`ShadowTrainSummary`: ``shadow.json`` of ``memlens shadow train``;
* :class:`ShadowAttackSummary`: ``mia.json`` of ``memlens shadow attack``, the schema of
  ``memlens mia`` (:class:`~memlens.mia.summary.MIASummary`) plus the shadow design;
* :class:`MemorizationSummary`: ``memorization.json`` of ``memlens shadow memorization``.

The field names are the JSON keys; the recipes build these models, the command line prints them
and ``memlens report`` shows their :meth:`headline` and :meth:`tables`. Units: bits (LiRA scores
in nats of likelihood ratio, RMIA scores in fractions of the population).
"""

from __future__ import annotations

from typing import Any, ClassVar

from memlens.mia.summary import MIASummary
from memlens.results import Summary


class ShadowTrainSummary(Summary):
    """``shadow.json``: the world, the models, the timings and how well they fit their halves.

    Attributes
    ----------
    world: one line describing the pool; synthetic: the synthetic source, if any.
    fingerprint, pool_sha256: hashes of the tokenized pool and of the pool's texts.
    n_models, n_examples, n_candidates, n_population, n_repeated_examples: the design's counts.
    split_by: ``copy`` (every candidate drawn on its own) or ``text`` (a text's copies together).
    vocab_size, seq_len, shape (a GPTConfig dict), n_params_per_model, steps: the models.
    stacks: per stack its ``index``, ``models``, ``reused`` and seconds; models_per_stack.
    train_seconds_total, score_seconds_total: worker time of all stacks (seconds).
    in_bits_per_token, out_bits_per_token: per model, its mean loss on the examples it trained
        on and on the others (bits per token); mean_in/out_bits_per_token: their means.
    first_token: how the first token is charged; seconds_this_invocation: wall time.
    warnings: what the user should know about the run (e.g. a population smaller than asked for).
    """

    kind: ClassVar[str] = "shadow-train"
    file: ClassVar[str] = "shadow.json"

    world: str
    synthetic: str | None = None
    fingerprint: str
    pool_sha256: str | None = None
    n_models: int
    n_examples: int
    n_candidates: int
    n_population: int
    n_repeated_examples: int = 0
    split_by: str = "copy"
    vocab_size: int
    seq_len: int
    shape: dict[str, Any]
    n_params_per_model: int
    steps: int
    stacks: list[dict[str, Any]] = []
    models_per_stack: int
    train_seconds_total: float = 0.0
    score_seconds_total: float = 0.0
    in_bits_per_token: list[float] = []
    out_bits_per_token: list[float] = []
    mean_in_bits_per_token: float
    mean_out_bits_per_token: float
    units: str = ""
    first_token: str = ""
    seconds_this_invocation: float = 0.0
    warnings: list[str] = []

    def headline(self) -> list[tuple[str, Any]]:
        return [
            ("world", self.world), ("shadow models", self.n_models),
            ("parameters per model", self.n_params_per_model), ("steps", self.steps),
            ("candidates", self.n_candidates), ("population", self.n_population),
            ("halves drawn per", self.split_by),
            ("loss on own half (bits/token)", self.mean_in_bits_per_token),
            ("loss on other half (bits/token)", self.mean_out_bits_per_token),
            ("training seconds (all stacks)", self.train_seconds_total),
        ]  # fmt: skip


class ShadowAttackSummary(MIASummary):
    """``mia.json`` of ``memlens shadow attack`` (the schema of ``memlens mia``).

    Attributes (beyond :class:`~memlens.mia.summary.MIASummary`)
    ------------------------------------------------------------
    mode: ``leave-one-model-out`` (each shadow in turn is the target) or ``target``.
    pooling: how the K ROC problems were pooled (leave-one-model-out).
    per_target_auc: attack -> mean and standard deviation of the per-target AUCs.
    offline_a: the offline RMIA ``a`` used for each target.
    online_a: the ``a`` fitted for each target's online RMIA ``P(z)`` (empty with
        ``online_pz="out"``; :func:`~memlens.shadow.attacks.fit_online_a`).
    settings: the attack choices (:class:`~memlens.shadow.attacks.AttackSettings`).
    membership: how leave-one-model-out labelled the copies of repeated texts: ``text`` (a
        member of every target that trained on any copy) or ``copy`` (``keep.npy``).
    n_relabelled: (target, example) pairs on which the two conventions differ: non-member copies
        of a text the target trained on through another copy (among the evaluated candidates).
    candidates: which candidates leave-one-model-out evaluated: ``all`` or ``once`` (those whose
        text occurs once in the pool).
    n_candidates_evaluated: how many candidates that is (each scored under every target).
    split_by: the shadows' design (``copy`` or ``text``); split by text, leave-one-model-out
        evaluates one candidate per distinct text and the two labelling conventions agree.
    target_shadow: with a target, the shadow it is (its scores reproduce that shadow's), which
        is then left out of its references with its pair partner; None for any other model.
    """

    kind: ClassVar[str] = "shadow-attack"

    mode: str = ""
    pooling: str | None = None
    per_target_auc: dict[str, dict[str, float]] = {}
    offline_a: list[float] = []
    online_a: list[float] = []
    settings: dict[str, Any] = {}
    membership: str = ""
    n_relabelled: int = 0
    candidates: str = "all"
    n_candidates_evaluated: int | None = None
    split_by: str = "copy"
    target_shadow: int | None = None

    def headline(self) -> list[tuple[str, Any]]:
        out: list[tuple[str, Any]] = [("mode", self.mode), *super().headline()]
        if self.mode in ("leave-one-model-out", "target"):
            out.append(("shadows' halves drawn per", self.split_by))
        if self.target_shadow is not None:
            out.append(("target is shadow (left out of its references)", self.target_shadow))
        if self.candidates == "once":
            out.append(("candidates evaluated (text occurs once)", self.n_candidates_evaluated))
        if self.membership:
            out.append(("labels of repeated texts", self.membership))
            out.append(("pairs relabelled by text", self.n_relabelled))
        loss = self.attacks.get("loss")
        if loss is not None:
            out.append(("loss attack ROC-AUC", loss.auc))
        return out


class MemorizationSummary(Summary):
    """``memorization.json``: counterfactual memorization (Zhang et al. 2023) of every candidate.

    Attributes
    ----------
    n_models, n_examples: shadows and candidate examples; models_per_estimate: the fewest IN and
        OUT models any estimate rests on, and the design's rule.
    measure: what M is; mean_mem_accuracy (per-token accuracy, IN minus OUT), mean_mem_bits
        (sequence log-likelihood, bits); median_se_accuracy: median standard error.
    unique_mean_mem_accuracy, repeated_mean_mem_accuracy, n_repeated: examples that occur once
        in the pool against those that occur several times.
    spearman: ``"<measure>~<other>:<all|positive>"`` -> ``rho``, ``p``, ``n``.
    audit: how many examples were found in the joined audit, if any.
    top: the most memorized examples (rank, pool id, count, measures, TF-IDF, text).
    shadows, world: where the shadows are and what they were trained on.
    split_by: the shadows' design; ``text``: one row per distinct text (``n_examples`` counts
        texts), its copies IN together.
    """

    kind: ClassVar[str] = "shadow-memorization"
    file: ClassVar[str] = "memorization.json"

    n_models: int
    n_examples: int
    models_per_estimate: dict[str, Any]
    measure: str = ""
    mean_mem_accuracy: float | None = None
    mean_mem_bits: float | None = None
    median_se_accuracy: float | None = None
    unique_mean_mem_accuracy: float | None = None
    repeated_mean_mem_accuracy: float | None = None
    n_repeated: int = 0
    spearman: dict[str, dict[str, Any]] = {}
    audit: str | None = None
    top: list[dict[str, Any]] = []
    shadows: str = ""
    world: str | None = None
    split_by: str = "copy"

    def headline(self) -> list[tuple[str, Any]]:
        return [
            ("examples" if self.split_by == "copy" else "distinct texts", self.n_examples),
            ("shadow models", self.n_models), ("shadows' halves drawn per", self.split_by),
            ("IN models per estimate", self.models_per_estimate.get("in")),
            ("OUT models per estimate", self.models_per_estimate.get("out")),
            ("mean counterfactual memorization (accuracy)", self.mean_mem_accuracy),
            ("mean counterfactual memorization (bits)", self.mean_mem_bits),
            ("unique examples (accuracy)", self.unique_mean_mem_accuracy),
            ("repeated examples (accuracy)", self.repeated_mean_mem_accuracy),
            ("median standard error (accuracy)", self.median_se_accuracy),
        ]  # fmt: skip

    def tables(self) -> list[tuple[str, list[str], list[list[Any]]]]:
        if not self.top:
            return []
        cols = ["rank", "mem accuracy", "± se", "mem bits", "count", "TF-IDF", "text"]
        keys = ["rank", "mem_accuracy", "se_accuracy", "mem_bits", "count", "tfidf", "text"]
        rows = [[row.get(k) for k in keys] for row in self.top]
        return [("most memorized examples", cols, rows)]
