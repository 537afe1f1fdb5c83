"""Reading any memlens run directory into one plain description for the report.

A run directory (see :mod:`memlens.store`) always holds ``manifest.json`` whose ``kind`` names the
run type; everything else is discovered: the main JSON result (``<kind>.json`` or the file that
kind is known to write), every other JSON, the tables (CSV, Parquet, JSON Lines) at the top level,
and every PNG anywhere below the directory. Nothing here needs to know a run type in advance, so
a run type added later still gets a report.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from memlens.errors import UserError

# The main JSON result of each run type that memlens writes and that has no typed summary (kinds
# with one name their file in ``Summary.file``, see memlens.results.SUMMARIES). Unknown kinds fall
# back to ``<kind>.json``, then to the only JSON besides the manifest.
MAIN_JSON = {
    "puzzles-grade": "grade.json",
}

TABLE_SUFFIXES = (".csv", ".parquet", ".jsonl")
SKIP_DIRS = {"cells", "__pycache__"}
MAX_PLOTS = 200
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@dataclass
class Table:
    """The first rows of one table file, with its size."""

    name: str
    columns: list[str]
    rows: list[list[Any]]
    n_rows: int | None  # None when it could not be counted
    error: str | None = None


@dataclass
class Run:
    """Everything the report shows about one run directory."""

    path: Path
    manifest: dict[str, Any]
    kind: str
    main_name: str | None = None
    main: Any = None
    jsons: dict[str, Any] = field(default_factory=dict)  # other top-level JSON files
    tables: list[Table] = field(default_factory=list)
    plots: list[Path] = field(default_factory=list)  # PNGs, relative to ``path``
    other_files: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.kind}: {self.path.name}"


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def load_run(path: str | Path, *, max_rows: int = 20) -> Run:
    """Describe the run directory at ``path``.

    Raises :class:`UserError` when ``path`` is missing, is not a directory or has no readable
    ``manifest.json``; anything wrong with other files becomes a note in the report instead.
    """
    path = Path(path)
    if not path.exists():
        raise UserError(f"run directory {path} does not exist.")
    if not path.is_dir():
        raise UserError(f"{path} is not a directory; give a memlens run directory.")
    manifest_path = path / "manifest.json"
    if not manifest_path.is_file():
        raise UserError(f"{path} is not a memlens run directory (it has no manifest.json).")
    try:
        manifest = _read_json(manifest_path)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"cannot read {manifest_path}: {exc}.") from None
    if not isinstance(manifest, dict):
        raise UserError(f"{manifest_path} does not hold a JSON object.")
    kind = str(manifest.get("kind") or "unknown")
    run = Run(path=path, manifest=manifest, kind=kind)

    top = sorted(p for p in path.iterdir() if not p.name.startswith("."))
    for p in top:
        if not p.is_file() or p.suffix != ".json" or p.name == "manifest.json":
            continue
        try:
            run.jsons[p.name] = _read_json(p)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            run.notes.append(f"{p.name} could not be read: {exc}")
    run.main_name = _main_json_name(kind, run.jsons)
    if run.main_name is not None:
        run.main = run.jsons.pop(run.main_name)
    expected = _expected_main_json(kind)
    if run.main_name is None and expected is not None and not (path / expected).exists():
        status = manifest.get("status")
        run.notes.append(
            f"{expected} is missing: the run is still running or was interrupted"
            if status == "running"
            else f"{expected} is missing, so this run has no results (it did not finish, or the "
            "file was removed); rerun it with the same output directory"
        )

    for p in top:
        if p.is_file() and p.suffix in TABLE_SUFFIXES:
            run.tables.append(read_table(p, max_rows=max_rows))

    run.plots = _find_plots(path)
    if len(run.plots) > MAX_PLOTS:
        run.notes.append(f"{len(run.plots)} PNG files; the report shows the first {MAX_PLOTS}.")
        run.plots = run.plots[:MAX_PLOTS]
    shown = {"manifest.json", *run.jsons, *(t.name for t in run.tables)}
    if run.main_name:
        shown.add(run.main_name)
    run.other_files = [
        p.name + ("/" if p.is_dir() else "")
        for p in top
        if p.name not in shown and p.suffix != ".png" and p.name not in SKIP_DIRS
    ]
    return run


def _expected_main_json(kind: str) -> str | None:
    """The main JSON result a known run kind writes (``None`` for a kind memlens does not know)."""
    from memlens.results import summary_model

    model = summary_model(kind)
    return (model.file or None) if model is not None else MAIN_JSON.get(kind)


def _main_json_name(kind: str, jsons: dict[str, Any]) -> str | None:
    from memlens.results import summary_model

    model = summary_model(kind)
    typed = model.file if model is not None else None
    for name in (typed, MAIN_JSON.get(kind), f"{kind}.json", f"{kind.replace('-', '_')}.json"):
        if name and name in jsons:
            return name
    if len(jsons) == 1:
        return next(iter(jsons))
    return None


def _find_plots(root: Path) -> list[Path]:
    found = []
    for p in sorted(root.rglob("*.png")):
        rel = p.relative_to(root)
        if any(part.startswith(".") or part in SKIP_DIRS for part in rel.parts):
            continue
        if p.is_file():
            found.append(rel)
    # top-level plots first, then the ones in subdirectories
    return sorted(found, key=lambda r: (len(r.parts), str(r)))


def read_png(path: Path) -> bytes | None:
    """The bytes of a PNG file, or ``None`` when it is unreadable or not a PNG."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    return data if data.startswith(PNG_MAGIC) else None


def _cell(v: Any) -> Any:
    """A table value as a JSON-like scalar (numpy and pandas values unwrapped)."""
    if v is None:
        return None
    if hasattr(v, "item") and not isinstance(v, (list, dict, str, bytes)):
        try:
            v = v.item()
        except (ValueError, AttributeError):
            pass
    if isinstance(v, float) and math.isnan(v):
        return None
    try:
        import pandas as pd

        if v is pd.NA or v is pd.NaT:
            return None
    except ImportError:  # pragma: no cover
        pass
    if isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, bytes):
        return f"<{len(v)} bytes>"
    return str(v)


def read_table(path: Path, *, max_rows: int = 20) -> Table:
    """A preview: the first ``max_rows`` rows of a CSV, Parquet or JSON Lines file and its row
    count, read in bounded memory (the full reader is :func:`memlens.data.tables.read_table`,
    whose missing-value rule this follows: only an empty CSV cell, a JSON null or a Parquet null
    is missing)."""
    try:
        if path.suffix == ".parquet":
            import pyarrow.parquet as pq

            pf = pq.ParquetFile(path)
            n_rows = pf.metadata.num_rows
            columns = list(pf.schema_arrow.names)
            rows: list[list[Any]] = []
            if n_rows and max_rows:
                batch = next(pf.iter_batches(batch_size=max_rows))
                data = batch.to_pydict()
                rows = [
                    [_cell(data[c][i]) for c in columns]
                    for i in range(min(max_rows, batch.num_rows))
                ]
            return Table(path.name, columns, rows, n_rows)
        if path.suffix == ".jsonl":
            rows_d: list[dict[str, Any]] = []
            n = 0
            with path.open(encoding="utf-8") as f:
                for line in f:
                    if not line.strip():
                        continue
                    if len(rows_d) < max_rows:
                        obj = json.loads(line)
                        rows_d.append(obj if isinstance(obj, dict) else {"value": obj})
                    n += 1
            columns = list(dict.fromkeys(k for r in rows_d for k in r))
            rows = [[_json_cell(r.get(c)) for c in columns] for r in rows_d]
            return Table(path.name, columns, rows, n)
        import pandas as pd

        # the missing-value rule of memlens.data.tables: only an empty cell is missing
        na = {"dtype": str, "keep_default_na": False, "na_values": [""]}
        head = pd.read_csv(path, nrows=max_rows or 0, **na)
        columns = [str(c) for c in head.columns]
        rows = [[_cell(v) for v in rec] for rec in head.itertuples(index=False, name=None)]
        n_rows: int | None
        if path.stat().st_size <= 20_000_000:
            n_rows = sum(len(chunk) for chunk in pd.read_csv(path, chunksize=100_000, **na))
        else:
            n_rows = None
        return Table(path.name, columns, rows, n_rows)
    except Exception as exc:  # noqa: BLE001 - a broken table is a note, not a failed report
        return Table(path.name, [], [], None, error=f"{type(exc).__name__}: {exc}")


def _json_cell(v: Any) -> Any:
    if isinstance(v, (dict, list)):
        return json.dumps(v, default=str)
    return _cell(v)
