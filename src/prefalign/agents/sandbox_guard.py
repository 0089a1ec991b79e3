"""The guard installed inside a sandboxed Python process before the untrusted code runs.

``GUARD`` is the source of a small program run as ``python -I -S -B -c GUARD main.py``
in the sandbox's working folder. It installs an audit hook (PEP 578) that refuses,
with ``PermissionError("sandbox: ...")``:

- any socket (``socket.__new__`` and every other ``socket.*`` event), so there is no
  network even where no network namespace could be made;
- new processes (``os.fork``, ``os.forkpty``, ``os.posix_spawn``, ``os.spawn``,
  ``os.exec``, ``os.system``, ``subprocess.Popen``) and signals to other processes;
- ``ctypes`` (loading libraries or calling foreign functions would bypass the rest),
  and importing the modules that start processes below the audited functions
  (``_posixsubprocess``, ``_multiprocessing``) or load foreign code (``_ctypes``);
- opening a file outside the working folder, except reading the Python standard
  library; writing, creating, deleting, renaming or linking outside the folder;
  symbolic and hard links anywhere.

An audit hook cannot be removed once added, and the code runs after it in the same
interpreter (``runpy.run_path``). The event names are those of the CPython audit
events table (https://docs.python.org/3/library/audit_events.html).
"""

GUARD = r'''
import os, sys

ROOT = os.path.realpath(os.getcwd())
READABLE = tuple(sorted({os.path.realpath(p) for p in (sys.base_prefix, sys.base_exec_prefix,
                                                         sys.prefix, sys.exec_prefix)}))
DENIED = {"os.fork", "os.forkpty", "os.posix_spawn", "os.spawn", "os.exec", "os.system",
          "subprocess.Popen", "os.kill", "os.killpg", "signal.pthread_kill", "os.symlink",
          "os.link", "ctypes.dlopen", "ctypes.dlsym", "ctypes.call_function",
          "ctypes.cdata", "ctypes.addressof", "os.chroot"}
MODULES = {"_posixsubprocess", "_ctypes", "_multiprocessing", "_xxsubinterpreters"}
PATH_EVENTS = {"os.remove": 0, "os.rmdir": 0, "os.mkdir": 0, "os.rename": (0, 1),
               "os.chmod": 0, "os.chown": 0, "os.utime": 0, "os.truncate": 0,
               "os.listdir": 0, "os.scandir": 0, "os.chdir": 0, "shutil.rmtree": 0,
               "shutil.copyfile": (0, 1), "shutil.move": (0, 1)}
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


def _inside(path, folders):
    real = os.path.realpath(path)
    return any(real == f or real.startswith(f + os.sep) for f in folders)


def _refuse(what):
    raise PermissionError(f"sandbox: {what} is not allowed")


def _check_path(event, path, writing):
    if isinstance(path, int) or path is None:
        return
    path = os.fsdecode(path)
    if _inside(path, (ROOT,)):
        return
    if not writing and event in ("open", "os.listdir", "os.scandir") \
            and _inside(path, READABLE):
        return
    _refuse(f"{event} of {path!r} outside the working folder")


def _hook(event, args):
    if event in DENIED or event.startswith("socket."):
        _refuse(event)
    if event == "import" and args[0] in MODULES:
        _refuse(f"importing {args[0]}")
    if event == "open":
        path, mode, flags = args
        writing = bool(flags & WRITE_FLAGS) if isinstance(flags, int) and flags else \
            any(c in (mode or "") for c in "wax+")
        _check_path(event, path, writing)
    elif event in PATH_EVENTS:
        where = PATH_EVENTS[event]
        for index in (where if isinstance(where, tuple) else (where,)):
            if index < len(args):
                _check_path(event, args[index], event not in ("os.listdir", "os.scandir"))


sys.addaudithook(_hook)
del _hook
import runpy
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
'''
