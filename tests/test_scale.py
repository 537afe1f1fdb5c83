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


SLOW = """
import os, sys, time
from pathlib import Path
from memlens.scale import run_cells

def cell(x, progress=None):
    Path(f"started-{{x}}").write_text(str(os.getpid()))
    if x == 1 and {fail}:
        time.sleep(1)
        raise ValueError("cell 1 failed")
    time.sleep(120)
    return {{"x": x}}

if __name__ == "__main__":
    t0 = time.perf_counter()
    try:
        run_cells([(cell, (i,)) for i in range(2)], workers=2)
    except (ValueError, KeyboardInterrupt) as exc:
        print(type(exc).__name__, round(time.perf_counter() - t0))
        sys.exit(3)
"""


def _alive(pid: int) -> bool:
    import os

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (exited, not yet reaped by its parent) counts as gone
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split(")")[-1].split()[0] != "Z"


def test_a_failed_cell_stops_the_running_ones_instead_of_waiting_for_them(tmp_path):
    (tmp_path / "script.py").write_text(SLOW.format(fail=True))
    done = subprocess.run(
        [sys.executable, "script.py"], capture_output=True, text=True, timeout=100, cwd=tmp_path
    )
    name, seconds = done.stdout.split()
    assert (done.returncode, name) == (3, "ValueError"), done.stderr
    assert int(seconds) < 60  # the other cell sleeps 120 s: it was not waited for
    assert not _alive(int((tmp_path / "started-0").read_text()))


def test_ctrl_c_ends_the_workers_at_once(tmp_path):
    import os
    import signal
    import time

    (tmp_path / "script.py").write_text(SLOW.format(fail=False))
    proc = subprocess.Popen(
        [sys.executable, "script.py"], cwd=tmp_path, text=True, start_new_session=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    deadline = time.time() + 90
    while not all((tmp_path / f"started-{i}").exists() for i in range(2)):
        assert time.time() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
    out, err = proc.communicate(timeout=30)
    assert out.split()[0] == "KeyboardInterrupt", err
    assert int(out.split()[1]) < 60
    workers = [int((tmp_path / f"started-{i}").read_text()) for i in range(2)]
    time.sleep(1)
    assert not any(_alive(pid) for pid in workers)
