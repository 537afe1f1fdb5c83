"""One entry point for every capability: :func:`run` dispatches a config to its recipe.

Each capability's recipe has the run contract of :mod:`memlens.results`
(``run(config, out, *, progress=None, ...) -> RunResult``); :data:`RECIPES` maps each config class
to the recipe that runs it, both named as ``"module:name"`` strings so that nothing heavy (torch)
is imported until a config is actually run.

Example
-------
>>> import memlens
>>> from memlens.laws import SizeConfig
>>> memlens.run(SizeConfig(params=1e6, n_sequences=1000, vocab_size=2048)).summary.regime
'memorization'
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from memlens.errors import UserError
from memlens.progress import ProgressFn
from memlens.results import RunResult

#: "module:ConfigClass" -> "module:run function", one line per config, in package order.
RECIPES: dict[str, str] = {
    "memlens.audit.config:AuditConfig": "memlens.audit.recipe:run",
    "memlens.capacity.config:CapacityConfig": "memlens.capacity.recipe:run",
    "memlens.laws.fit:FitMiaConfig": "memlens.laws.fit:run",
    "memlens.laws.settings:DoubleDescentConfig": "memlens.laws.double_descent:run",
    "memlens.laws.settings:MiaExperimentConfig": "memlens.laws.mia_experiment:run",
    "memlens.laws.size:SizeConfig": "memlens.laws.size:run",
    "memlens.mia.config:MIAConfig": "memlens.mia.recipe:run",
    "memlens.mia.config:MIAMetricsConfig": "memlens.mia.recipe:run_metrics",
    "memlens.prior.recipe:DiagnoseConfig": "memlens.prior.recipe:run",
    "memlens.prior.recipe:TheoryConfig": "memlens.prior.recipe:run",
    "memlens.privacy.config:DPAuditConfig": "memlens.privacy.recipe:run",
    "memlens.puzzles.recipe:EvalConfig": "memlens.puzzles.recipe:run",
    "memlens.puzzles.recipe:MakeConfig": "memlens.puzzles.recipe:run",
    "memlens.shadow.config:MemorizationConfig": "memlens.shadow.recipe:run",
    "memlens.shadow.config:ShadowAttackConfig": "memlens.shadow.recipe:run",
    "memlens.shadow.config:ShadowTrainConfig": "memlens.shadow.recipe:run",
    "memlens.sinks.config:SinksConfig": "memlens.sinks.recipe:run",
    "memlens.track.grok:GrokConfig": "memlens.track.grok:run",
    "memlens.track.recipe:QuickConfig": "memlens.track.recipe:run",
    "memlens.track.text:TextTrackConfig": "memlens.track.text:run",
}


def _load(target: str) -> Any:
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def recipe_for(config: Any) -> Any:
    """The recipe function that runs ``config`` (its class, or the nearest base class, in
    :data:`RECIPES`), or :class:`UserError` when ``config`` is not a memlens run config."""
    for cls in type(config).__mro__:
        target = RECIPES.get(f"{cls.__module__}:{cls.__qualname__}")
        if target is not None:
            return _load(target)
    raise UserError(
        "memlens.run needs a capability's config (such as CapacityConfig, AuditConfig or "
        f"SizeConfig; memlens.recipes.RECIPES lists them all), got a {type(config).__name__}."
    )


def run(
    config: Any,
    out: str | Path | None = None,
    *,
    progress: ProgressFn | None = None,
    **options: Any,
) -> RunResult[Any]:
    """Run any capability: the recipe of ``config``'s type, into the run directory ``out``.

    ``memlens.run(CapacityConfig(...), "runs/cap")`` is ``memlens.capacity.run(...)`` with the
    same arguments; the result is the recipe's own (a :class:`~memlens.results.RunResult` whose
    ``summary`` is the typed main JSON).

    Parameters
    ----------
    config:
        A capability's config (see :data:`RECIPES` for the classes).
    out:
        The run directory; ``None`` lets the recipe decide (a fresh timestamped directory for
        recipes that always write one, nothing written for those that only compute).
    progress:
        Called with :class:`memlens.progress.ProgressEvent` values.
    **options:
        The recipe's own keyword options (e.g. ``backend="ray"`` for the sweeps).
    """
    return recipe_for(config)(config, out, progress=progress, **options)
