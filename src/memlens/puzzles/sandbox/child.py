"""The child side: set up namespaces, limits and identity in the forked child, then exec; and
count or kill what a unique uid left behind."""

from __future__ import annotations

import ctypes
import json
import os
import resource
import subprocess

from memlens.puzzles.sandbox.limits import Limits

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV = 1, 2, 4
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
PR_SET_NO_NEW_PRIVS = 38
WORLD_WRITABLE = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock", "/var/lock")


def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mount.argtypes = [
        ctypes.c_char_p,
        ctypes.c_char_p,
        ctypes.c_char_p,
        ctypes.c_ulong,
        ctypes.c_void_p,
    ]
    libc.unshare.argtypes = [ctypes.c_int]
    libc.prctl.argtypes = [
        ctypes.c_int,
        ctypes.c_ulong,
        ctypes.c_ulong,
        ctypes.c_ulong,
        ctypes.c_ulong,
    ]
    return libc


try:
    _LIBC = _libc()
except (
    OSError,
    AttributeError,
):  # pragma: no cover - not Linux: no namespaces, rlimits still apply
    _LIBC = None


def _child_setup(workdir: str, limits: Limits, uid: int | None, nproc: int, report_fd: int) -> None:
    """Runs in the forked child before exec (``preexec_fn``); reports what it applied."""
    libc = _LIBC
    applied: dict[str, str] = {}

    def err() -> str:
        return os.strerror(ctypes.get_errno())

    root = os.geteuid() == 0
    flags = CLONE_NEWNS | CLONE_NEWNET if root else CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWNET
    if libc is not None and libc.unshare(flags) == 0:
        applied["network"] = "on"
        ok = libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None) == 0
        ok = ok and libc.mount(workdir.encode(), workdir.encode(), None, MS_BIND, None) == 0
        for d in WORLD_WRITABLE:
            if not ok:
                break
            if not os.path.isdir(d) or os.path.islink(d):
                continue
            b = d.encode()
            ok = libc.mount(b, b, None, MS_BIND | MS_REC, None) == 0 and (
                libc.mount(
                    None, b, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV, None
                )
                == 0
            )
        applied["mounts"] = "on" if ok else f"off: mount failed ({err()})"
    else:
        applied["network"] = f"off: unshare failed ({err()})"
        applied["mounts"] = "off: no mount namespace"

    lim = {
        resource.RLIMIT_CPU: (limits.cpu_seconds, limits.cpu_seconds + 1),
        resource.RLIMIT_AS: (limits.memory_mb * 2**20,) * 2,
        resource.RLIMIT_NPROC: (nproc, nproc),
        resource.RLIMIT_FSIZE: (limits.file_bytes,) * 2,
        resource.RLIMIT_NOFILE: (limits.open_files,) * 2,
        resource.RLIMIT_CORE: (0, 0),
    }
    for which, (soft, hard) in lim.items():
        resource.setrlimit(which, (soft, hard))
    applied["rlimits"] = "on"

    if uid is not None:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
        applied["unique_uid"] = f"on (uid {uid})"
    if libc is not None and libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0:
        applied["no_new_privs"] = "on"
    os.chdir(workdir)
    os.write(report_fd, json.dumps(applied).encode())
    os.close(report_fd)


def _tasks_of(uid: int) -> int:
    """Processes and threads owned by ``uid`` (what ``RLIMIT_NPROC`` counts)."""
    count = 0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid != uid:
                    continue
                with open(f"/proc/{entry.name}/stat", "rb") as f:
                    if f.read().rsplit(b")", 1)[-1].split()[0] == b"Z":
                        continue  # killed already, waiting for its parent to reap it
                count += len(os.listdir(f"/proc/{entry.name}/task"))
            except (OSError, IndexError):
                continue
    return count


def _kill_uid(interp: str, uid: int) -> None:
    """Kill every process of ``uid`` (``kill(-1)`` as that uid reaches exactly them)."""
    for _ in range(3):
        if _tasks_of(uid) == 0:
            return
        subprocess.run(
            [interp, "-I", "-S", "-c", "import os; os.kill(-1, 9)"],
            user=uid,
            group=uid,
            extra_groups=[],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=10,
            check=False,
        )
