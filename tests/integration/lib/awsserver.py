"""awsserver.py - run many awscli commands in one long-lived interpreter.

Starting `aws` costs ~0.8 s of CPU (imports, the S3 model) before it sends a byte; a test
that runs a dozen commands spends most of its time there, and the suite runs hundreds.
A Server is the same CLI (awscli.clidriver, the code `aws` itself calls: v1 under the
pyenv python, v2 under Debian's) in one process per aws binary, environment and global
options (--endpoint-url, --ca-bundle), fed one command line at a time. The driver and its
session (loaded models, resolved credentials and config: all fixed by that key) are kept
from one command to the next, which brings a command from ~0.8 s to ~0.06 s; each
command builds its own client and request as `aws` would. After a failing command the
next one gets a fresh driver.

Used by clients.AwsCli(persistent=True). Not for commands that read stdin or write bytes
to stdout (`s3 cp - ...`, `... -`): those run as processes.

As a script (the server side): python awsserver.py, then one JSON list of arguments per
line on stdin; one JSON {"rc", "out", "err"} per line back on the original stdout (fd 1
itself goes to stderr, so nothing a command prints can break the framing).
"""

import atexit
import json
import os
import subprocess
import sys
import threading
from collections import OrderedDict
from pathlib import Path

HERE = Path(__file__).resolve()
MAX_SERVERS = 6


def _interpreter(binary):
    """The python that runs an `aws` script: its #! line."""
    with open(binary, "rb") as f:
        first = f.readline().decode(errors="replace").strip()
    if not first.startswith("#!"):
        return None
    parts = first[2:].split()
    if parts and os.path.basename(parts[0]) == "env" and len(parts) > 1:
        import shutil
        return shutil.which(parts[1])
    return parts[0] if parts else None


class Server:
    def __init__(self, binary, env):
        python = _interpreter(binary)
        if python is None:
            raise OSError(f"{binary}: not a python script")
        self.proc = subprocess.Popen([python, str(HERE)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env,
                                     text=True, errors="replace", bufsize=1)
        self.lock = threading.Lock()

    def alive(self):
        return self.proc.poll() is None

    def run(self, args, timeout):
        """(rc, stdout, stderr) of `aws ARGS`; rc 124 and the server killed on timeout."""
        with self.lock:
            self.proc.stdin.write(json.dumps([str(a) for a in args]) + "\n")
            self.proc.stdin.flush()
            result = []
            t = threading.Thread(target=lambda: result.append(self.proc.stdout.readline()))
            t.daemon = True
            t.start()
            t.join(timeout)
            if not result:
                self.close()
                return 124, "", f"(timed out after {timeout}s in the awscli server)"
            if not result[0]:
                self.close()
                return 255, "", "(the awscli server died)"
            r = json.loads(result[0])
            return r["rc"], r["out"], r["err"]

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


_servers = OrderedDict()
_lock = threading.Lock()


def run(binary, env, global_args, args, timeout):
    """(rc, stdout, stderr) of `binary GLOBAL_ARGS ARGS` in the server for that key."""
    key = (str(binary), tuple(sorted(env.items())), tuple(global_args))
    with _lock:
        s = _servers.pop(key, None)
        if s is None or not s.alive():
            s = Server(binary, env)
        _servers[key] = s
        while len(_servers) > MAX_SERVERS:
            _, old = _servers.popitem(last=False)
            old.close()
    return s.run(list(global_args) + list(args), timeout)


def close_all():
    with _lock:
        while _servers:
            _servers.popitem()[1].close()


atexit.register(close_all)


# ---------------------------------------------------------------------------------------
# server side

def _serve():
    import contextlib
    import io
    import traceback

    chan = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)        # stray writes to fd 1 (none expected) must not reach the channel
    from awscli.clidriver import create_clidriver
    driver = None
    for line in sys.stdin:
        args = json.loads(line)
        out, err = io.StringIO(), io.StringIO()
        rc = 255
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                if driver is None:
                    driver = create_clidriver()
                rc = driver.main(args)
            except SystemExit as e:
                rc = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            except BaseException:
                traceback.print_exc()
                rc = 255
        if rc != 0:
            driver = None
        chan.write(json.dumps({"rc": rc, "out": out.getvalue(), "err": err.getvalue()}) + "\n")


if __name__ == "__main__":
    _serve()
