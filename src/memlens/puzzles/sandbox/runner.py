"""The code that runs first inside the sandboxed interpreter: it installs the audit hook.

:data:`RUNNER` is passed to ``python -c`` in the child, so it is source text, not a function;
the line numbers in a blocked program's traceback (``File "<string>", line ...``) count from
its first line. Each refusal is printed to stderr after :data:`BLOCKED_MARK`.
"""

BLOCKED_MARK = "memlens-sandbox: blocked "

RUNNER = r"""
import sys, os


def _install(work):
    # Everything the hook uses is bound here, so the program cannot swap it out later: builtins,
    # os functions (C functions captured before any user code runs), the path resolver.
    import stat as _stat
    type_, str_, bytes_, int_, len_, reversed_ = type, str, bytes, int, len, reversed
    PermissionError_, OSError_, Exception_ = PermissionError, OSError, Exception
    getcwd, lstat, stat_, readlink, write = os.getcwd, os.lstat, os.stat, os.readlink, os.write
    S_ISDIR, S_ISLNK = _stat.S_ISDIR, _stat.S_ISLNK

    def resolve_str(p):
        # realpath with captured primitives: symlinks followed, '..' applied, missing parts kept.
        if not p.startswith("/"):
            p = getcwd() + "/" + p
        out, todo, links = [], p.split("/"), 0
        todo.reverse()
        while todo:
            part = todo.pop()
            if part == "" or part == ".":
                continue
            if part == "..":
                if out:
                    out.pop()
                continue
            cur = "/" + "/".join(out + [part])
            try:
                is_link = S_ISLNK(lstat(cur).st_mode)
            except OSError_:
                is_link = False
            if not is_link:
                out.append(part)
                continue
            links += 1
            if links > 40:
                return None
            target = readlink(cur)
            if target.startswith("/"):
                out = []
            more = target.split("/")
            more.reverse()
            todo.extend(more)
        return "/" + "/".join(out)

    def resolve(p):
        if type_(p) is bytes_:
            p = p.decode("utf-8", "surrogateescape")
        return resolve_str(p) if type_(p) is str_ else None  # str subclasses and PathLike: no

    work = resolve_str(work)
    roots = tuple(resolve_str(p) for p in (
        sys.prefix, sys.base_prefix, sys.exec_prefix, os.path.dirname(os.__file__),
        "/dev/null", "/dev/urandom", "/dev/random", "/etc/localtime", "/usr/share/zoneinfo",
    ))
    mods = frozenset((
        "socket", "_socket", "ssl", "_ssl", "subprocess", "_posixsubprocess", "multiprocessing",
        "_multiprocessing", "ctypes", "_ctypes", "pty", "asyncio", "_asyncio", "select",
        "selectors", "fcntl", "termios", "mmap",
    ))
    banned = (
        "socket.", "ctypes.", "subprocess.", "os.exec", "os.spawn", "os.posix_spawn", "os.fork",
        "os.forkpty", "os.system", "os.kill", "os.killpg", "os.symlink", "os.link", "pty.",
        "resource.setrlimit", "resource.prlimit", "gc.get_", "signal.pthread_kill",
        "sys.addaudithook", "os.startfile", "webbrowser.", "_posixsubprocess",
    )
    paths = {
        "os.remove": (0,), "os.rmdir": (0,), "os.rename": (0, 1), "os.mkdir": (0,),
        "os.chmod": (0,), "os.chown": (0,), "os.truncate": (0,), "os.utime": (0,),
        "os.setxattr": (0,), "os.removexattr": (0,), "os.chflags": (0,), "os.lchflags": (0,),
        "shutil.rmtree": (0,), "shutil.copyfile": (1,), "shutil.copymode": (1,),
        "shutil.copystat": (1,), "shutil.move": (1,), "shutil.chown": (0,),
        "tempfile.mkstemp": (0,), "tempfile.mkdtemp": (0,), "os.mkfifo": (0,), "os.mknod": (0,),
    }
    dir_fd_events = frozenset(("os.rename", "os.remove", "os.mkdir", "os.rmdir", "os.chmod"))
    writing = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND

    def deny(event, detail):
        try:
            write(2, ("memlens-sandbox: blocked %s %s\n" % (event, detail)).encode("utf-8", "replace"))
        except Exception_:
            pass
        raise PermissionError_("memlens sandbox: %s is not allowed" % event)

    def inside(p, base):
        return p == base or p.startswith(base + "/")

    def readable(p):
        for root in roots:
            if inside(p, root):
                return True
        return False

    def hook(event, args):
        if type_(event) is not str_:
            return
        if event == "import":
            name = args[0]
            if type_(name) is not str_ or name.partition(".")[0] in mods:
                deny(event, name if type_(name) is str_ else "a non-str module name")
            return
        if event == "open":
            path, mode, flags = args
            if type_(path) is int_:
                return
            r = resolve(path)
            if r is None:
                deny(event, "a path that is not a plain str or bytes")
            if inside(r, work):
                return
            wants_write = (type_(mode) is str_ and ("w" in mode or "a" in mode or "x" in mode
                           or "+" in mode)) or (type_(flags) is int_ and flags & writing)
            if wants_write:
                deny(event, "writing " + r)
            try:
                is_dir = S_ISDIR(stat_(r).st_mode)
            except OSError_:
                is_dir = False
            if is_dir or not readable(r):
                deny(event, "reading " + r)
            return
        slots = paths.get(event)
        if slots is not None:
            for i in slots:
                if i < len_(args) and type_(args[i]) is not int_:
                    r = resolve(args[i])
                    if r is None or not inside(r, work):
                        deny(event, "%s" % (r,))
            if event in dir_fd_events:
                for a in args[2:]:
                    if type_(a) is int_:
                        deny(event, "a dir_fd path")
            return
        if event.startswith(banned):
            deny(event, "")

    sys.addaudithook(hook)


def _main():
    work, program = sys.argv[1], sys.argv[2]
    with open(program, encoding="utf-8") as f:
        source = f.read()
    code = compile(source, "program.py", "exec")
    sys.argv = ["program.py"]
    sys.dont_write_bytecode = True
    _install(work)
    exec(code, {"__name__": "__main__", "__builtins__": __builtins__})


_main()
"""
