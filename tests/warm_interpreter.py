"""Fresh interpreters for the tests that run a snippet or a script as a user would, without
paying for the same imports each time.

A fresh ``python`` spends about 5 s of a test's time importing torch, torch._dynamo (which
torch's optimiser loads on its first use), pandas, sktime and aaren_ts before the code under
test starts; the README tour, the examples and the command line run some twenty of them
(issue 19: the suite's time). ``run_python`` instead asks a server process, which imported
them once, to fork: the child is a new process whose ``__main__``, ``sys.argv``,
``sys.path[0]``, working folder, environment, standard streams and exit are those of
``python -c CODE`` / ``python SCRIPT ARGS`` / ``python -m MODULE ARGS``; it only finds those
modules already imported. Whatever their import printed (nothing today) is replayed on the
child's streams, so a test of a quiet run still sees it.

What a warm start cannot reproduce falls back to a plain subprocess: interpreter options, and
an environment that differs from the server's in a variable read at import time (anything
but ``RUNTIME_VARIABLES``). Tests of import behaviour itself (what ``import aaren_ts`` loads,
what an import prints) use plain subprocesses, not this.

Run as a script, this file is the server: it reads one JSON request per line on standard
input and answers on standard output with the child's wait status (the child killed past the
request's timeout).
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

PRELOAD = (
    "torch",
    "torch._dynamo",
    "numpy",
    "pandas",
    "sktime.datasets",
    "sktime.forecasting.base",
    "sktime.classification.base",
    "aaren_ts.estimators",
    "aaren_ts.rl",
)
# read when used, not when the preloaded modules are imported (matplotlib is not preloaded);
# pytest sets PYTEST_CURRENT_TEST to each test's name, which would otherwise start a server per test
RUNTIME_VARIABLES = frozenset(
    {"AAREN_TS_DATA", "AAREN_TS_CACHE", "AAREN_TS_BENCHMARKS", "MPLBACKEND", "PYTEST_CURRENT_TEST"}
)


# ---------------------------------------------------------------- client (in the test process)


class _Server:
    def __init__(self, env: dict[str, str]):
        self.proc = subprocess.Popen(
            [sys.executable, __file__],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            text=True,
            bufsize=1,
        )
        ready = json.loads(self.proc.stdout.readline() or "null")
        if not ready or ready.get("ready") is not True:
            raise RuntimeError(f"warm interpreter failed to start: {ready}")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def run(self, request: dict) -> int:
        """The child's exit code; the server enforces ``request["timeout"]``."""
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        reply = json.loads(self.proc.stdout.readline())
        if reply["timed_out"]:
            raise subprocess.TimeoutExpired(request["argv"], request["timeout"])
        return os.waitstatus_to_exitcode(reply["status"])

    def close(self) -> None:
        """Stop the server (end of its input) and close both pipes: an unclosed pipe would
        print a ResourceWarning when the test worker exits."""
        try:
            if self.alive():
                self.proc.stdin.close()
                self.proc.wait(timeout=30)
        finally:
            for pipe in (self.proc.stdin, self.proc.stdout):
                pipe.close()


_servers: dict[tuple, _Server] = {}


def _server_for(env: dict[str, str]) -> _Server:
    """The server whose import-time environment matches ``env`` (started on first use)."""
    key = tuple(sorted((k, v) for k, v in env.items() if k not in RUNTIME_VARIABLES))
    server = _servers.get(key)
    if server is None or not server.alive():
        if server is not None:
            server.close()  # a server that died (a timeout's kill): its pipes
        server = _servers[key] = _Server({k: v for k, v in key})
    return server


@atexit.register
def _close_servers() -> None:
    for server in _servers.values():
        server.close()


def run_python(
    args: list[str],
    *,
    cwd: str | os.PathLike | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 600,
    check: bool = False,
) -> subprocess.CompletedProcess:
    """``subprocess.run([sys.executable, *args], capture_output=True, text=True, ...)``,
    started warm. ``args`` is ``["-c", code]``, ``[script, *argv]`` or ``["-m", module,
    *argv]``; anything else runs as a plain subprocess."""
    env = dict(os.environ if env is None else env)
    command = [sys.executable, *args]
    if not args or (args[0].startswith("-") and args[0] not in ("-c", "-m")):
        return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True,
                              timeout=timeout, check=check)  # fmt: skip
    with tempfile.TemporaryDirectory() as folder:
        out, err = os.path.join(folder, "stdout"), os.path.join(folder, "stderr")
        request = {
            "argv": list(args),
            "cwd": os.fspath(cwd) if cwd is not None else os.getcwd(),
            "env": env,
            "stdout": out,
            "stderr": err,
            "timeout": timeout,
        }
        returncode = _server_for(env).run(request)
        with open(out) as f_out, open(err) as f_err:
            result = subprocess.CompletedProcess(command, returncode, f_out.read(), f_err.read())
    if check:
        result.check_returncode()
    return result


# --------------------------------------------------------------------- server (its own process)


def _serve() -> None:
    reply = os.dup(1)  # answers go here; fds 1 and 2 are the children's to take
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        saved = os.dup(1), os.dup(2)
        os.dup2(out.fileno(), 1)
        os.dup2(err.fileno(), 2)
        import importlib

        for name in PRELOAD:
            importlib.import_module(name)
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        printed = []
        for f in (out, err):
            f.seek(0)
            printed.append(f.read())
    # the preloaded objects are never collected in the children: their collector then skips
    # them instead of touching (and so copying) the pages they share with this process
    gc.freeze()
    os.write(reply, (json.dumps({"ready": True}) + "\n").encode())
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            os.close(reply)
            _become(request, printed)  # does not return
        status, timed_out = _wait(pid, request["timeout"])
        os.write(reply, (json.dumps({"status": status, "timed_out": timed_out}) + "\n").encode())
    # the client closed the pipe: end without tearing the modules down (triton's bindings
    # report "leaked" objects to stderr when torch._dynamo's imports are torn down)
    os._exit(0)


def _wait(pid: int, timeout: float) -> tuple[int, bool]:
    """``pid``'s wait status, and whether it ran past ``timeout`` (then it and whatever it
    started, its process group, are killed first)."""
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status, False
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            return os.waitpid(pid, 0)[1], True
        time.sleep(0.01)


def _become(request: dict, printed: list[bytes]) -> None:
    """Turn this forked child into ``python *request["argv"]`` and run it to its exit."""
    import builtins
    import runpy
    import threading
    import types

    os.setsid()  # one process group: a timeout kills the child and what it started
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    for fd, path, text in ((1, request["stdout"], printed[0]), (2, request["stderr"], printed[1])):
        target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(target, fd)
        os.close(target)
        os.write(fd, text)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    argv = request["argv"]
    main = types.ModuleType("__main__")
    main.__dict__["__builtins__"] = builtins
    sys.modules["__main__"] = main
    try:
        if argv[0] == "-c":
            sys.argv, sys.path[0] = ["-c", *argv[2:]], ""
            exec(compile(argv[1], "<string>", "exec"), main.__dict__)
        elif argv[0] == "-m":
            sys.argv, sys.path[0] = [argv[1], *argv[2:]], os.getcwd()
            runpy._run_module_as_main(argv[1])  # what ``python -m`` calls
        else:
            script = os.path.abspath(argv[0])
            sys.argv, sys.path[0] = list(argv), os.path.dirname(script)
            main.__file__ = argv[0]
            with open(script, "rb") as f:
                code = compile(f.read(), argv[0], "exec")
            exec(code, main.__dict__)
        status = 0
    except SystemExit as exit:
        status = _exit_status(exit.code)
    except BaseException:
        sys.excepthook(*sys.exc_info())  # the traceback an uncaught error prints
        status = 1
    # an interpreter's exit, in its order: wait for non-daemon threads, run the atexit
    # handlers, flush the streams. Not the teardown of every module that follows (1.3 s
    # here, each object freed touching memory shared with the server); multiprocessing's
    # forked children end the same way
    threading._shutdown()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(status)


def _exit_status(code) -> int:
    """The status ``sys.exit(code)`` ends an interpreter with."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


if __name__ == "__main__":
    # started by run_python: the server must not be found as the tests' own module
    sys.path[0] = os.path.dirname(os.path.abspath(__file__))
    _serve()
