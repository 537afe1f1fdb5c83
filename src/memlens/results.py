"""The run contract: what every capability's ``run`` returns and writes.

Every recipe has the signature ``run(config, out, *, progress=None, ...) -> RunResult[S]``:

* ``config`` is a :class:`memlens.config.Config` (validated at the door; anything else, a plain
  dict included, is refused in one sentence naming the class to build);
* ``out`` is the run directory (``None``: a fresh timestamped one); the library writes
  everything in it (manifest, tables, plots, the main JSON) through :mod:`memlens.store`;
* ``progress`` receives :class:`memlens.progress.ProgressEvent` values;
* the result is a :class:`RunResult` holding the typed main JSON, a :class:`Summary` subclass
  whose field names are the JSON keys. The producer, the command line's printer and the report
  all read the same attributes, so a key is spelled once.

:func:`summary_model` finds the :class:`Summary` class of a run kind (for the report).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict


class Summary(BaseModel):
    """Base of a capability's main JSON (``capacity.json``, ``audit.json`` ...).

    Subclasses declare the fields (with units in their names or descriptions) and set
    :attr:`kind` (the manifest's run kind) and :attr:`file` (the JSON's file name). Extra keys
    are kept, so a newer field in an older run directory, or the reverse, still loads.
    """

    model_config = ConfigDict(extra="allow", protected_namespaces=())
    kind: ClassVar[str] = ""
    file: ClassVar[str] = ""

    def headline(self) -> list[tuple[str, Any]]:
        """The few numbers a report shows first, as ``(label, value)`` pairs."""
        return []

    def tables(self) -> list[tuple[str, list[str], list[list[Any]]]]:
        """Extra tables a report shows, as ``(title, columns, rows)``."""
        return []

    def to_json(self) -> dict[str, Any]:
        """JSON-ready data (NaN kept as NaN; :mod:`memlens.store` writes it)."""
        return self.model_dump(mode="python")


S = TypeVar("S", bound=Summary)


@dataclass
class RunResult(Generic[S]):
    """What a recipe returns: the typed summary, where it was written, what was reused."""

    summary: S
    out_dir: Path | None = None
    reused: list[str] = field(default_factory=list)

    def __repr__(self) -> str:
        """The run's headline numbers on a few lines (``print(result)`` in a notebook); the
        whole typed summary is ``result.summary``."""
        kind = type(self.summary).kind or type(self.summary).__name__
        where = f" in {self.out_dir}" if self.out_dir is not None else ""
        lines = [f"RunResult: {kind}{where}"]
        lines += [f"  {label}: {_short(value)}" for label, value in self.summary.headline()]
        if self.reused:
            shown = ", ".join(self.reused[:5]) + (", ..." if len(self.reused) > 5 else "")
            lines.append(f"  reused {len(self.reused)} stored: {shown}")
        return "\n".join(lines)


def _short(value: Any) -> str:
    """A headline value for the console: whole floats with thousands separators, other floats
    to 4 significant digits."""
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e15:
            return f"{value:,.0f}"
        return f"{value:.4g}"
    return str(value)


#: run kind -> "module:Class" of its Summary, imported on demand by :func:`summary_model` (the
#: report). One line per kind, kept in alphabetical order.
SUMMARIES: dict[str, str] = {
    "audit": "memlens.audit.summary:AuditSummary",
    "capacity": "memlens.capacity.summary:CapacitySummary",
    "dp-audit": "memlens.privacy.summary:DPAuditSummary",
    "grok": "memlens.track.summary:GrokSummary",
    "laws-double-descent": "memlens.laws.summaries:DoubleDescentSummary",
    "laws-fit-mia": "memlens.laws.summaries:FitMiaSummary",
    "laws-mia-experiment": "memlens.laws.summaries:MiaExperimentSummary",
    "laws-size": "memlens.laws.summaries:SizeReport",
    "mia": "memlens.mia.summary:MIASummary",
    "mia-metrics": "memlens.mia.summary:MIAMetricsSummary",
    "prior-diagnose": "memlens.prior.recipe:DiagnosisSummary",
    "prior-theory": "memlens.prior.recipe:TheorySummary",
    "puzzles-eval": "memlens.puzzles.recipe:EvalSummary",
    "puzzles-make": "memlens.puzzles.recipe:MakeSummary",
    "shadow-attack": "memlens.shadow.summary:ShadowAttackSummary",
    "shadow-memorization": "memlens.shadow.summary:MemorizationSummary",
    "shadow-train": "memlens.shadow.summary:ShadowTrainSummary",
    "sinks": "memlens.sinks.summary:SinksSummary",
    "track": "memlens.track.summary:TrackSummary",
}


def summary_model(kind: str) -> type[Summary] | None:
    """The :class:`Summary` subclass of a run kind, or ``None`` when memlens has none."""
    target = SUMMARIES.get(kind)
    if target is None:
        return None
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)
