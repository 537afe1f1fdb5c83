"""Planning: which interpreter runs the program, and whether it can drop to a unique uid."""

from __future__ import annotations

import os
import shutil
import stat
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from memlens.puzzles.sandbox.limits import Limits
from memlens.puzzles.sandbox.parent import _run


def _world_reachable(path: str, need: int) -> bool:
    """Whether "others" can traverse to ``path`` and have the ``need`` permission bits on it."""
    p = Path(path)
    try:
        for parent in list(p.parents)[::-1]:
            if not os.stat(parent).st_mode & stat.S_IXOTH:
                return False
        return (os.stat(p).st_mode & need) == need
    except OSError:
        return False


def _interpreters() -> list[str]:
    """Candidate interpreters: this one first, then system ones (all with the same major)."""
    seen: list[str] = []
    for c in (
        getattr(sys, "_base_executable", None) or sys.executable,
        sys.executable,
        shutil.which("python3", path="/usr/local/bin:/usr/bin:/bin"),
    ):
        if c and os.path.exists(c):
            real = os.path.realpath(c)
            if real not in seen:
                seen.append(real)
    return seen


def _unprivileged_ok(interp: str) -> bool:
    """An unprivileged uid can run ``interp`` and read its standard library."""
    if not _world_reachable(interp, stat.S_IXOTH | stat.S_IROTH):
        return False
    if interp == os.path.realpath(getattr(sys, "_base_executable", None) or sys.executable):
        stdlib = os.path.dirname(os.__file__)
        return _world_reachable(stdlib, stat.S_IXOTH | stat.S_IROTH)
    prefix = os.path.dirname(os.path.dirname(interp))
    return _world_reachable(os.path.join(prefix, "lib"), stat.S_IXOTH | stat.S_IROTH)


@dataclass(frozen=True)
class _Plan:
    interpreter: str
    drop_uid: bool
    note: str


@lru_cache(maxsize=1)
def _plan() -> _Plan:
    """Choose the interpreter; drop to a unique uid when root and an interpreter allows it."""
    candidates = _interpreters()
    if os.geteuid() != 0:
        return _Plan(candidates[0], False, "not root: runs as the current user")
    for interp in candidates:
        if _unprivileged_ok(interp):
            probe = _run(
                interp,
                "print(6 * 7)",
                Limits(cpu_seconds=10, wall_seconds=30),
                drop_uid=True,
                audit_hook=True,
            )
            if probe.status == "ok" and probe.stdout.strip() == "42":
                return _Plan(interp, True, "")
    return _Plan(
        candidates[0],
        False,
        "no Python interpreter is readable by an unprivileged uid, so the program runs as root",
    )
