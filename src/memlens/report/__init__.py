"""The HTML report: any memlens run directory, or several side by side, in one self-contained file.

>>> from memlens.report import write_report                          # doctest: +SKIP
>>> info = write_report(["runs/capacity", "runs/mia"], "report.html")  # doctest: +SKIP

:func:`load_run` reads a run directory generically (manifest, main JSON, tables, every PNG);
:mod:`memlens.report.headline` picks a few headline numbers per run type; :func:`build_report`
renders the page (plots as base64 data URIs, inline CSS, no script, nothing loaded from the
network).
"""

from memlens.report.headline import headline
from memlens.report.html import ReportInfo, build_report, write_report
from memlens.report.runs import Run, Table, load_run

__all__ = ["ReportInfo", "Run", "Table", "build_report", "headline", "load_run", "write_report"]
