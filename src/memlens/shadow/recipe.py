"""The shadow-model experiments behind one entry point, :func:`run`.

``run(config, out=None, *, progress=None)`` dispatches on the config's type:

* :class:`~memlens.shadow.config.ShadowTrainConfig` (``memlens shadow train``): a candidate
  pool, a balanced keep matrix, K shadow GPTs trained as batched stacks (resumable per stack),
  one scoring pass per stack (:mod:`memlens.shadow.recipe_train`); returns the typed
  ``shadow.json``;
* :class:`~memlens.shadow.config.ShadowAttackConfig` (``memlens shadow attack``): LiRA and RMIA
  (online and offline) and the reference-free baselines, leave-one-model-out over the shadows
  or against a user's target (:mod:`memlens.shadow.recipe_attack`); returns the typed
  ``mia.json``, in the schema of ``memlens mia``;
* :class:`~memlens.shadow.config.MemorizationConfig` (``memlens shadow memorization``):
  counterfactual memorization per example (:mod:`memlens.shadow.recipe_memorization`); returns
  the typed ``memorization.json``.

Example (trains 16 GPTs: minutes on a CPU)::

    from memlens import shadow

    shadow.run(shadow.ShadowTrainConfig(pool="pool.jsonl", n_models=16), "shadows")
    attacked = shadow.run(shadow.ShadowAttackConfig(shadows="shadows"), "attack")
    attacked.summary.attacks["lira_online"].auc
"""

from __future__ import annotations

from pathlib import Path

from memlens.errors import UserError
from memlens.progress import ProgressFn
from memlens.results import RunResult
from memlens.shadow.config import MemorizationConfig, ShadowAttackConfig, ShadowTrainConfig
from memlens.shadow.recipe_attack import ShadowAttackResult, attack
from memlens.shadow.recipe_memorization import MemorizationResult, memorization
from memlens.shadow.recipe_train import train
from memlens.shadow.summary import ShadowTrainSummary

ShadowConfig = ShadowTrainConfig | ShadowAttackConfig | MemorizationConfig


def run(
    config: ShadowConfig, out: str | Path | None = None, *, progress: ProgressFn | None = None
) -> RunResult[ShadowTrainSummary] | ShadowAttackResult | MemorizationResult:
    """Run the shadow recipe of ``config`` into the run directory ``out``.

    A :class:`ShadowTrainConfig` trains the shadows (``progress``: task ``"stack i"``, step of
    steps); a :class:`ShadowAttackConfig` attacks them (task ``"targets"``); a
    :class:`MemorizationConfig` measures counterfactual memorization. ``out=None`` writes a
    fresh timestamped directory under ``memlens-runs/``.
    """
    if isinstance(config, ShadowTrainConfig):
        return train(config, out, progress=progress)
    if isinstance(config, ShadowAttackConfig):
        return attack(config, out, progress=progress)
    if isinstance(config, MemorizationConfig):
        return memorization(config, out, progress=progress)
    raise UserError(
        "the shadow recipes run a ShadowTrainConfig, a ShadowAttackConfig or a "
        f"MemorizationConfig, not {type(config).__name__}."
    )
