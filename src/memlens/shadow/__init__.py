"""Shadow models: LiRA, RMIA and counterfactual memorization with K GPTs trained as one stack.

One entry point, :func:`run` (:mod:`memlens.shadow.recipe`), dispatching on the config:

* :class:`ShadowTrainConfig` -> the shadows directory (:class:`ShadowTrainSummary`);
* :class:`ShadowAttackConfig` -> ``mia.json`` in the schema of ``memlens mia``
  (:class:`ShadowAttackSummary`);
* :class:`MemorizationConfig` -> counterfactual memorization (:class:`MemorizationSummary`).

Building blocks:

* :mod:`memlens.shadow.world`: the candidate pool (text or synthetic) and its population;
* :mod:`memlens.shadow.design`: the balanced (paired) keep matrix;
* :mod:`memlens.shadow.train`: the training cell, one batched stack of shadow GPTs;
* :mod:`memlens.shadow.signals`: per-model, per-example signals from the shared scoring pass;
* :mod:`memlens.shadow.attacks`: LiRA (Carlini et al. 2022) and RMIA (Zarifzadeh et al. 2024);
* :mod:`memlens.shadow.counterfactual`: counterfactual memorization (Zhang et al. 2023);
* :mod:`memlens.shadow.directory`: reading a shadows directory (:func:`load_shadows`);
* :mod:`memlens.shadow.config`, :mod:`memlens.shadow.summary`: the settings and the typed JSONs;
* :mod:`memlens.shadow.recipe_train`, :mod:`~memlens.shadow.recipe_attack`,
  :mod:`~memlens.shadow.recipe_memorization`: the three recipes :func:`run` calls.
"""

from memlens.shadow.attacks import (
    SHADOW_ATTACKS,
    AttackSettings,
    calibrate_offline_a,
    fit_online_a,
    lira_offline,
    lira_online,
    rmia,
)
from memlens.shadow.config import MemorizationConfig, ShadowAttackConfig, ShadowTrainConfig
from memlens.shadow.counterfactual import counterfactual
from memlens.shadow.design import balanced_keep, references_for, text_membership
from memlens.shadow.directory import Shadows, load_shadows
from memlens.shadow.recipe import run
from memlens.shadow.recipe_attack import ShadowAttackResult
from memlens.shadow.recipe_memorization import MemorizationResult
from memlens.shadow.summary import MemorizationSummary, ShadowAttackSummary, ShadowTrainSummary

__all__ = [
    "SHADOW_ATTACKS",
    "AttackSettings",
    "MemorizationConfig",
    "MemorizationResult",
    "MemorizationSummary",
    "ShadowAttackConfig",
    "ShadowAttackResult",
    "ShadowAttackSummary",
    "ShadowTrainConfig",
    "ShadowTrainSummary",
    "Shadows",
    "balanced_keep",
    "calibrate_offline_a",
    "counterfactual",
    "fit_online_a",
    "lira_offline",
    "lira_online",
    "load_shadows",
    "references_for",
    "rmia",
    "run",
    "text_membership",
]
