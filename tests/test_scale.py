"""Local worker processes: results in cell order, and one sentence when a script forgot the guard."""

from __future__ import annotations

import subprocess
import sys
import textwrap

SCRIPT = """
from memlens.scale import run_cells

def cell(x, progress=None):
    return {{"x": x * x}}

{call}
"""
CALL = "print(run_cells([(cell, (i,)) for i in range(3)], workers=2))"


def _run(tmp_path, call: str) -> subprocess.CompletedProcess:
    path = tmp_path / "script.py"
    path.write_text(SCRIPT.format(call=call))
    return subprocess.run(
        [sys.executable, str(path)], capture_output=True, text=True, timeout=300, cwd=tmp_path
    )


def test_guarded_script_runs_cells_in_two_workers(tmp_path):
    guarded = 'if __name__ == "__main__":\n' + textwrap.indent(CALL, "    ")
    done = _run(tmp_path, guarded)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[{'x': 0}, {'x': 1}, {'x': 4}]"


def test_unguarded_script_gets_one_sentence_not_a_bootstrap_traceback(tmp_path):
    done = _run(tmp_path, CALL)
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("memlens.errors.UserError: the local worker processes could not start")
    assert 'if __name__ == "__main__":' in last
    # the re-importing child left quietly: multiprocessing's own explanation never printed
    assert "bootstrapping phase" not in done.stderr
