"""Headline numbers of a run: a few labelled values per run type, and a generic fallback.

A run kind with a typed summary (:data:`memlens.results.SUMMARIES`) gives its own
``summary.headline()`` and ``summary.tables()``. A run type without one, or whose headline is
empty or unreadable, gets the scalar entries of its main JSON.
"""

from __future__ import annotations

from typing import Any

from memlens.report.runs import Run

Headline = list[tuple[str, Any]]
# An extra table built from the JSON: (title, columns, rows).
ExtraTable = tuple[str, list[str], list[list[Any]]]

_MISSING = object()


def get(obj: Any, path: str, default: Any = _MISSING) -> Any:
    """``obj["a"]["b"]`` for ``path="a.b"`` (list indices allowed); ``default`` when absent."""
    cur = obj
    for part in path.split("."):
        if isinstance(cur, dict) and part in cur:
            cur = cur[part]
        elif isinstance(cur, list) and part.isdigit() and int(part) < len(cur):
            cur = cur[int(part)]
        else:
            return default
    return cur


def _typed(run: Run) -> tuple[Headline, list[ExtraTable]] | None:
    """The headline of a run kind with a typed summary (:data:`memlens.results.SUMMARIES`):
    ``summary.headline()`` and ``summary.tables()``; ``None`` when the kind has none."""
    from memlens.results import summary_model

    model = summary_model(run.kind)
    if model is None:
        return None
    summary = model.model_validate(run.main)
    return summary.headline(), summary.tables()


def generic_headline(obj: Any, *, limit: int = 16) -> Headline:
    """Scalar entries of a JSON object, nested names joined by dots, at most ``limit``."""
    out: Headline = []

    def walk(o: Any, prefix: str, depth: int) -> None:
        if not isinstance(o, dict):
            return
        for k, v in o.items():
            if len(out) >= limit:
                return
            name = f"{prefix}{k}"
            if isinstance(v, dict):
                if depth < 1:
                    walk(v, name + ".", depth + 1)
            elif isinstance(v, list):
                continue
            elif isinstance(v, str) and len(v) > 80:
                continue
            else:
                out.append((name, v))

    walk(obj, "", 0)
    return out


def headline(run: Run) -> tuple[Headline, list[ExtraTable]]:
    """The headline numbers and extra tables of ``run`` (never raises on odd JSON)."""
    h: Headline = []
    tables: list[ExtraTable] = []
    if isinstance(run.main, dict):
        try:
            typed = _typed(run)
            if typed is not None:
                h, tables = typed
        except Exception as exc:  # noqa: BLE001 - an odd result file must not sink the report
            run.notes.append(f"headline numbers for {run.kind} failed ({exc}); showing raw values")
            h, tables = [], []
    if not h:
        h = generic_headline(run.main)
    if not h:  # no result JSON (e.g. puzzles make): the manifest's own extra fields
        standard = {"kind", "config", "seed", "versions", "git_revision", "command", "written_at"}
        h = generic_headline(
            {k: v for k, v in run.manifest.items() if k not in standard | {"status"}}
        )
    status = run.manifest.get("status")
    if status is not None:
        h.append(("status", status))
    return h, tables
