"""One self-contained HTML page for one or several run directories.

The page loads nothing: CSS is inline, every plot is a ``data:image/png;base64`` URI, there is no
script, and a Content-Security-Policy (``default-src 'none'``) tells the browser to refuse any
load that might slip in. Every text taken from a run (configs, tables, file names, commands) is
HTML-escaped. Several runs appear side by side: one column per run in every section, and a
headline table comparing them first.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from memlens.errors import UserError
from memlens.report.headline import ExtraTable, Headline, headline
from memlens.report.runs import Run, Table, load_run, read_png

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
MAX_JSON_CHARS = 60_000
MAX_CELL_CHARS = 160

CSS = """
:root { --fg:#1d232b; --muted:#5b6672; --line:#d9dee4; --bg:#ffffff; --panel:#f6f8fa;
        --accent:#2457a6; }
* { box-sizing: border-box; }
body { margin: 0; padding: 24px 28px 48px; color: var(--fg); background: var(--bg);
       font: 14px/1.45 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 17px; margin: 28px 0 10px; padding-bottom: 4px; border-bottom: 2px solid var(--line); }
h3 { font-size: 14px; margin: 14px 0 6px; }
.sub { color: var(--muted); margin: 0 0 12px; }
.cols { display: grid; gap: 18px; grid-template-columns: repeat(var(--n), minmax(360px, 1fr));
        overflow-x: auto; align-items: start; }
.col { min-width: 0; }
.chip { display: inline-block; font-size: 12px; font-weight: 600; color: #fff;
        background: var(--accent); border-radius: 10px; padding: 1px 9px; margin-bottom: 6px; }
table { border-collapse: collapse; font-size: 12.5px; margin: 2px 0 10px; }
th, td { border: 1px solid var(--line); padding: 3px 7px; text-align: left; vertical-align: top; }
th { background: var(--panel); font-weight: 600; }
tr.differ td { background: #fff8e1; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
table.kv th { width: 40%; font-weight: 500; }
table.kv td { word-break: break-word; }
.scroll { overflow-x: auto; max-width: 100%; }
.plots { display: grid; gap: 12px; grid-template-columns: repeat(auto-fill, minmax(520px, 1fr)); }
.multi .plots { grid-template-columns: 1fr; }
figure { margin: 0; padding: 8px; border: 1px solid var(--line); border-radius: 6px; background: #fff; }
figure img { display: block; max-width: 100%; height: auto; margin: 0 auto; }
figcaption { font-size: 12px; color: var(--muted); margin-top: 4px; text-align: center; }
details { margin: 4px 0 8px; }
summary { cursor: pointer; color: var(--accent); }
pre { background: var(--panel); border: 1px solid var(--line); border-radius: 4px; padding: 8px;
      font-size: 12px; overflow: auto; max-height: 480px; white-space: pre; }
.note { color: #8a4b00; font-size: 12.5px; }
.muted { color: var(--muted); font-size: 12.5px; }
code { font-size: 12.5px; }
nav ol { margin: 6px 0 0; padding-left: 22px; }
"""


@dataclass(frozen=True)
class ReportInfo:
    """What :func:`write_report` wrote."""

    path: Path
    n_runs: int
    n_plots: int
    n_bytes: int


# -- formatting ---------------------------------------------------------------------------------
def esc(x: Any) -> str:
    return html.escape(str(x), quote=True)


def fmt(v: Any, *, max_chars: int = MAX_CELL_CHARS) -> str:
    """A value as escaped text: thousands separators, 4 significant digits, yes/no, —."""
    if v is None:
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if not math.isfinite(v):
            return str(v)
        if v.is_integer() and abs(v) < 1e15:
            return f"{int(v):,}"
        if abs(v) >= 1e3:
            return f"{v:,.0f}" if abs(v) < 1e15 else f"{v:.4g}"
        return f"{v:.4g}"
    s = v if isinstance(v, str) else json.dumps(v, default=str)
    if len(s) > max_chars:
        s = s[: max_chars - 1] + "…"
    return esc(s)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _td(v: Any) -> str:
    return f'<td class="num">{fmt(v)}</td>' if _is_num(v) else f"<td>{fmt(v)}</td>"


def _kv_table(items: Sequence[tuple[str, Any]]) -> str:
    if not items:
        return '<p class="muted">none</p>'
    rows = "".join(f"<tr><th>{esc(k)}</th>{_td(v)}</tr>" for k, v in items)
    return f'<table class="kv">{rows}</table>'


def _grid_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{esc(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(_td(v) for v in r) + "</tr>" for r in rows)
    return f'<div class="scroll"><table><tr>{head}</tr>{body}</table></div>'


def _flatten(obj: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """Nested dicts as dotted keys; lists kept whole (shown as compact JSON)."""
    out: list[tuple[str, Any]] = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            name = f"{prefix}{k}"
            if isinstance(v, dict) and v:
                out.extend(_flatten(v, name + "."))
            else:
                out.append((name, v))
    elif obj is not None:
        out.append((prefix.rstrip(".") or "value", obj))
    return out


def _json_block(name: str, obj: Any) -> str:
    text = json.dumps(obj, indent=2, default=str, allow_nan=True)
    cut = ""
    if len(text) > MAX_JSON_CHARS:
        cut = f" (first {MAX_JSON_CHARS:,} of {len(text):,} characters)"
        text = text[:MAX_JSON_CHARS]
    return f"<details><summary>{esc(name)}{esc(cut)}</summary><pre>{esc(text)}</pre></details>"


# -- sections -----------------------------------------------------------------------------------
PROVENANCE_KEYS = ["kind", "status", "seed", "git_revision", "command", "written_at"]


def _provenance(run: Run) -> str:
    m = run.manifest
    items: list[tuple[str, Any]] = [("directory", str(run.path.resolve()))]
    items += [(k, m[k]) for k in PROVENANCE_KEYS if k in m]
    items += [
        (k, v) for k, v in m.items() if k not in PROVENANCE_KEYS and k not in ("config", "versions")
    ]
    versions = m.get("versions")
    if isinstance(versions, dict):
        items += [(f"versions.{k}", v) for k, v in versions.items()]
    return _kv_table(items)


def _headline_html(h: Headline, extra: list[ExtraTable]) -> str:
    parts = [_kv_table(h)]
    for title, cols, rows in extra:
        parts.append(f"<h3>{esc(title)}</h3>{_grid_table(cols, rows)}")
    return "".join(parts)


def _plots_html(run: Run) -> tuple[str, int]:
    if not run.plots:
        return '<p class="muted">no plots</p>', 0
    figs = []
    for rel in run.plots:
        data = read_png(run.path / rel)
        if data is None:
            run.notes.append(f"{rel} is not a readable PNG and is left out")
            continue
        b64 = base64.b64encode(data).decode("ascii")
        figs.append(
            f'<figure><img alt="{esc(rel)}" src="data:image/png;base64,{b64}">'
            f"<figcaption>{esc(rel)}</figcaption></figure>"
        )
    return f'<div class="plots">{"".join(figs)}</div>', len(figs)


def _table_html(t: Table) -> str:
    if t.error:
        return f'<h3>{esc(t.name)}</h3><p class="note">could not be read: {esc(t.error)}</p>'
    n = "unknown number of" if t.n_rows is None else f"{t.n_rows:,}"
    shown = len(t.rows)
    caption = f"{n} rows × {len(t.columns)} columns" + (
        f"; first {shown} shown" if t.n_rows is None or shown < t.n_rows else ""
    )
    return f'<h3>{esc(t.name)}</h3><p class="muted">{esc(caption)}</p>' + _grid_table(
        t.columns, t.rows
    )


def _tables_html(run: Run) -> str:
    if not run.tables:
        return '<p class="muted">no tables</p>'
    return "".join(_table_html(t) for t in run.tables)


def _config_html(run: Run) -> str:
    cfg = run.manifest.get("config")
    if cfg is None:
        return '<p class="muted">no config in the manifest</p>'
    return _kv_table(_flatten(cfg))


def _results_html(run: Run) -> str:
    parts = []
    if run.main_name is not None:
        parts.append(_json_block(run.main_name, run.main))
    for name, obj in run.jsons.items():
        parts.append(_json_block(name, obj))
    if run.other_files:
        files = ", ".join(f"<code>{esc(f)}</code>" for f in run.other_files)
        parts.append(f'<p class="muted">other files: {files}</p>')
    for note in run.notes:
        parts.append(f'<p class="note">{esc(note)}</p>')
    return "".join(parts) or '<p class="muted">no JSON results</p>'


def _compare_html(runs: list[Run], heads: list[Headline]) -> str:
    labels: list[str] = []
    for h in heads:
        for k, _ in h:
            if k not in labels:
                labels.append(k)
    head = '<th class="muted">highlighted: values differ</th>' + "".join(
        f"<th>{i + 1}. {esc(r.label)}</th>" for i, r in enumerate(runs)
    )
    body = []
    for lab in labels:
        cells, shown = [], set()
        for h in heads:
            d = dict(h)
            cells.append(_td(d[lab]) if lab in d else "<td></td>")
            shown.add(fmt(d[lab]) if lab in d else None)
        differ = ' class="differ"' if len(shown) > 1 else ""
        body.append(f"<tr{differ}><th>{esc(lab)}</th>{''.join(cells)}</tr>")
    return f'<div class="scroll"><table><tr>{head}</tr>{"".join(body)}</table></div>'


def build_report(
    runs: Sequence[Run | str | os.PathLike[str]], *, title: str | None = None, max_rows: int = 20
) -> tuple[str, int]:
    """The HTML text of a report over ``runs`` (run directories or loaded runs).

    Returns ``(html, n_plots)``. Raises :class:`UserError` for a directory that is not a run.
    """
    loaded = [r if isinstance(r, Run) else load_run(r, max_rows=max_rows) for r in runs]
    if not loaded:
        raise UserError("give at least one run directory.")
    from memlens import __version__

    n = len(loaded)
    heads: list[Headline] = []
    extras: list[list[ExtraTable]] = []
    for r in loaded:
        h, x = headline(r)
        heads.append(h)
        extras.append(x)
    plots = [_plots_html(r) for r in loaded]  # before results: unreadable PNGs become notes
    n_plots = sum(k for _, k in plots)
    title = title or (
        f"memlens report: {loaded[0].label}" if n == 1 else f"memlens report: {n} runs"
    )
    now = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")

    def row(name: str, cells: list[str]) -> str:
        cols = "".join(
            f'<div class="col"><span class="chip">{i + 1}. {esc(r.label)}</span>{c}</div>'
            if n > 1
            else f'<div class="col">{c}</div>'
            for i, (r, c) in enumerate(zip(loaded, cells, strict=True))
        )
        cls = "cols multi" if n > 1 else "cols"
        return f'<section><h2>{esc(name)}</h2><div class="{cls}" style="--n:{n}">{cols}</div></section>'

    runs_list = "".join(
        f"<li><b>{esc(r.kind)}</b> <code>{esc(r.path.resolve())}</code></li>" for r in loaded
    )
    body = [
        f"<header><h1>{esc(title)}</h1>"
        f'<p class="sub">Generated {esc(now)} by memlens {esc(__version__)} from {n} '
        f"run director{'y' if n == 1 else 'ies'}. Units are bits unless a label says otherwise."
        f"</p><nav><ol>{runs_list}</ol></nav></header>"
    ]
    if n > 1:
        body.append(f"<section><h2>Side by side</h2>{_compare_html(loaded, heads)}</section>")
    body.append(
        row("Headline numbers", [_headline_html(h, x) for h, x in zip(heads, extras, strict=True)])
    )
    body.append(row("Plots", [p for p, _ in plots]))
    body.append(row("Tables", [_tables_html(r) for r in loaded]))
    body.append(row("Configuration", [_config_html(r) for r in loaded]))
    body.append(row("Provenance", [_provenance(r) for r in loaded]))
    body.append(row("Results and files", [_results_html(r) for r in loaded]))
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head>\n<body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )
    return page, n_plots


def write_report(
    runs: Sequence[str | os.PathLike[str] | Run],
    out: str | os.PathLike[str],
    *,
    title: str | None = None,
    max_rows: int = 20,
) -> ReportInfo:
    """Write the report over ``runs`` to ``out`` atomically and say what was written.

    Examples
    --------
    >>> from memlens.report import write_report                      # doctest: +SKIP
    >>> write_report(["runs/capacity-smoke"], "report.html").n_plots  # doctest: +SKIP
    2
    """
    from memlens.store import write_text_atomic

    out = Path(out)
    if out.is_dir():
        raise UserError(f"`out` {out} is a directory; give a file name such as report.html.")
    page, n_plots = build_report(runs, title=title, max_rows=max_rows)
    try:
        write_text_atomic(out, page)  # with the umask's permissions: a page to share
    except OSError as exc:
        raise UserError(f"cannot write the report to {out}: {exc.strerror or exc}.") from None
    return ReportInfo(out, len(runs), n_plots, len(page.encode("utf-8")))
