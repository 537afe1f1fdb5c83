"""memlens: measure, predict and control memorization in language models.

``import memlens`` is fast and does not import torch: every name below is loaded on first use
(PEP 562). The entry points a notebook needs:

* the capability packages: :mod:`~memlens.capacity`, :mod:`~memlens.laws`,
  :mod:`~memlens.audit`, :mod:`~memlens.mia`, :mod:`~memlens.shadow`, :mod:`~memlens.privacy`,
  :mod:`~memlens.track`, :mod:`~memlens.sinks`, :mod:`~memlens.prior`, :mod:`~memlens.puzzles`,
  :mod:`~memlens.report`, and the shared cores :mod:`~memlens.scoring`,
  :mod:`~memlens.training`, :mod:`~memlens.models`, :mod:`~memlens.data`;
* :func:`run`: any capability's config in, its typed result out (:mod:`memlens.recipes`);
* :func:`load_causal_lm`, :func:`score_tokens`, :func:`score_texts`, :func:`score_sequences`;
* the units of :mod:`memlens.units` (:func:`capacity_bits` ...), :func:`write_report`,
  :class:`UserError`, :class:`RunResult`.

Example
-------
>>> import memlens
>>> memlens.capacity_bits(1_000_000)
3640000.0
"""

from __future__ import annotations

from memlens._lazy import lazy

__version__ = "0.1.0"

_PACKAGES = (
    "audit",
    "capacity",
    "data",
    "laws",
    "mia",
    "models",
    "prior",
    "privacy",
    "puzzles",
    "report",
    "scoring",
    "shadow",
    "sinks",
    "track",
    "training",
)

#: public name -> module that defines it (imported on first access).
_NAMES: dict[str, str] = {
    "run": "memlens.recipes",
    "load_causal_lm": "memlens.models.hf",
    "score_tokens": "memlens.scoring",
    "score_texts": "memlens.scoring",
    "score_sequences": "memlens.scoring",
    "LN2": "memlens.units",
    "PUBLISHED_ALPHA": "memlens.units",
    "ZLIB_LEVEL": "memlens.units",
    "capacity_bits": "memlens.units",
    "memorizable_bits": "memlens.units",
    "published_alpha": "memlens.units",
    "uniform_code_bits": "memlens.units",
    "uniform_entropy_bits": "memlens.units",
    "zlib_bytes": "memlens.units",
    "write_report": "memlens.report",
    "UserError": "memlens.errors",
    "RunResult": "memlens.results",
    "Summary": "memlens.results",
}

__all__ = sorted([*_PACKAGES, *_NAMES])

__getattr__, __dir__ = lazy(__name__, {**{p: f"memlens.{p}" for p in _PACKAGES}, **_NAMES})
