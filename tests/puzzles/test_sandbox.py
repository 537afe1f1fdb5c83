"""The sandbox is a security boundary: hostile programs are contained and stopped within seconds,
and a correct Hanoi program for n = 12 is graded correct."""

from __future__ import annotations

import os
import time
import uuid

import pytest

from memlens.puzzles import make_instance
from memlens.puzzles.grade import grade_response
from memlens.puzzles.sandbox import Limits, layers, run_python
from memlens.puzzles.sandbox.child import _tasks_of

FAST = Limits(cpu_seconds=1, wall_seconds=4, output_bytes=200_000)
LAYERS = layers()


def _on(name: str) -> bool:
    return LAYERS[name].startswith("on")


def _run(source: str, limits: Limits = FAST, **kw):
    t = time.monotonic()
    r = run_python(source, limits, **kw)
    assert time.monotonic() - t < 15, "not stopped within seconds"
    return r


HANOI_PROGRAM = """
Printing 4095 moves by hand is error-prone, so here is a program:

```python
def hanoi(n, src, dst, via, out):
    if n == 0:
        return
    hanoi(n - 1, src, via, dst, out)
    out.append([n, src, dst])
    hanoi(n - 1, via, dst, src, out)

moves = []
hanoi(12, 0, 2, 1, moves)
print("moves =", moves)
```
"""


def test_correct_hanoi_program_for_n12_is_graded_correct():
    v = grade_response(make_instance("hanoi", 12), HANOI_PROGRAM, program=True)
    assert v.correct and v.category == "optimal" and v.source == "program"
    assert v.n_moves == 4095 and v.program["status"] == "ok"


def test_wrong_program_output_is_graded_like_text():
    wrong = HANOI_PROGRAM.replace("hanoi(12, 0, 2, 1, moves)", "hanoi(12, 0, 1, 2, moves)")
    v = grade_response(make_instance("hanoi", 12), wrong, program=True)
    assert not v.correct and v.category == "incomplete" and v.source == "program"


def test_writes_outside_are_blocked():
    target = f"/tmp/memlens-escape-{uuid.uuid4().hex}"
    r = _run(f"open({target!r}, 'w').write('x')")
    assert r.status == "blocked" and not os.path.exists(target)
    r = _run("import os\nos.remove('/etc/hostname')")
    assert r.status == "blocked" and os.path.exists("/etc/hostname")
    r = _run("open('scratch.txt', 'w').write('fine'); print(open('scratch.txt').read())")
    assert r.ok and r.stdout == "fine\n"


def test_network_subprocess_and_fork_are_blocked():
    for src in (
        "import socket\nsocket.create_connection(('1.1.1.1', 53), timeout=2)",
        "import subprocess\nsubprocess.run(['id'])",
        "import os\nos.system('id')",
        "import os\nwhile True:\n    os.fork()",  # fork bomb
        "import ctypes",
    ):
        r = _run(src)
        assert r.status == "blocked" and r.blocked, (src, r.status, r.stderr)


def test_audit_hook_resists_simple_bypasses():
    target = f"/tmp/memlens-escape-{uuid.uuid4().hex}"
    for src in (
        f"import os\nd = os.getcwd()\nos.getcwd = lambda: d\nopen({target!r}, 'w')",  # fake cwd
        f"import posixpath\nposixpath.realpath = lambda p, **k: p\nopen({target!r}, 'w')",
        f"import builtins\nbuiltins.any = lambda *a: False\nbuiltins.type = lambda x: int\nopen({target!r}, 'w')",
        "class S(str):\n    def partition(self, sep):\n        return ('math', '', '')\n__import__(S('socket'))",
        "import os\nfd = os.open('/tmp', os.O_RDONLY)\nos.open('x', os.O_WRONLY | os.O_CREAT, dir_fd=fd)",
        "import posix\nposix.system('id')",  # the C module behind os
        "open('/proc/self/mem', 'r+b')",
        "import os\nos.symlink('/tmp', 'link')",
        "import gc\ngc.get_objects()",
    ):
        r = _run(src)
        assert r.status == "blocked", (src, r.status, r.stderr)
    assert not os.path.exists(target)
    ok = _run(
        "import json, itertools, functools, heapq, dataclasses, logging, pathlib\nprint('fine')"
    )
    assert ok.ok and ok.stdout == "fine\n"


def test_endless_loop_sleep_memory_and_output_are_stopped():
    r = _run("while True:\n    pass")
    assert r.status in ("cpu_limit", "timeout")
    r = _run("import time\ntime.sleep(1000)", Limits(cpu_seconds=1, wall_seconds=1.5))
    assert r.status == "timeout" and r.wall_seconds < 5
    r = _run("x = bytearray(8 * 1024**3)")
    assert r.status == "memory_limit"
    r = _run("while True:\n    print('x' * 1000)")
    assert r.status == "output_limit" and len(r.stdout) == FAST.output_bytes


@pytest.mark.skipif(
    not _on("mounts") or not _on("unique_uid"), reason="needs mount namespaces and a unique uid"
)
def test_kernel_layers_alone_contain_writes():
    # With the audit hook switched off, only the kernel stands between the program and the disk.
    tag = uuid.uuid4().hex
    targets = [
        f"/tmp/memlens-{tag}",
        f"/var/tmp/memlens-{tag}",
        f"/dev/shm/memlens-{tag}",
        f"../memlens-{tag}",
    ]
    src = (
        "import os\n"
        f"for p in {targets!r} + [os.path.expanduser('~/../../memlens-{tag}')]:\n"
        "    try:\n        open(p, 'w').write('x'); print('WROTE', p)\n"
        "    except OSError as e:\n        print('refused', e.errno)\n"
    )
    r = _run(src, audit_hook=False)
    assert r.ok and "WROTE" not in r.stdout and r.stdout.count("refused") == 5
    assert not any(os.path.exists(t) for t in targets[:3])


@pytest.mark.skipif(not _on("network"), reason="needs a network namespace")
def test_kernel_layers_alone_contain_the_network():
    src = (
        "import socket\nprint(socket.if_nameindex())\n"
        "try:\n    socket.create_connection(('1.1.1.1', 53), timeout=2); print('CONNECTED')\n"
        "except OSError as e:\n    print('refused', e.errno)\n"
    )
    r = _run(src, audit_hook=False)
    assert r.ok and "CONNECTED" not in r.stdout and "[(1, 'lo')]" in r.stdout


@pytest.mark.skipif(not _on("unique_uid"), reason="needs a unique uid (run as root)")
def test_kernel_layers_alone_contain_a_fork_bomb_and_escapees():
    bomb = "import os\nn = 0\nwhile True:\n    try:\n        os.fork(); n += 1\n    except OSError:\n        print(n); break\n"
    r = _run(bomb, audit_hook=False)
    assert r.ok and r.stdout.strip() == "0"  # RLIMIT_NPROC = 1: not a single fork
    escape = (
        "import os, time\nfor _ in range(3):\n    if os.fork() == 0:\n        os.setsid(); time.sleep(600)\n"
        "print('forked', flush=True)\n"
    )
    r = _run(escape, Limits(cpu_seconds=1, wall_seconds=1.5, processes=8), audit_hook=False)
    uid = int(r.layers["unique_uid"].split()[-1].rstrip(")"))
    assert _tasks_of(uid) == 0  # the processes that left the group were killed too
    r = _run("import os\nos.kill(1, 0)", audit_hook=False)
    assert r.status == "error" and "Operation not permitted" in r.stderr


def test_layers_are_reported():
    assert set(LAYERS) >= {
        "workdir",
        "rlimits",
        "session",
        "network",
        "mounts",
        "unique_uid",
        "audit_hook",
    }
    assert _on("rlimits") and _on("audit_hook") and _on("isolated_python")
