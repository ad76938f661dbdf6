"""bigdata.py - large test payloads without holding them in memory.

The bytes are AES-128-CTR of zeros keyed by a seed (`openssl enc`): repeatable, fast
(~1 GB/s), and unlike s3util.payload() never periodic, so parts or buffers delivered in
the wrong order cannot go unnoticed.

    argv = stream_argv(size, seed)          # a shell command printing the bytes
    write_file(path, size, seed)
    digest = sha256_of(size, seed)          # cached per (size, seed)
    rc, digest, n, err = hash_output(argv)  # runs a command, sha256 of its stdout
"""

import hashlib
import shlex
import subprocess
from functools import lru_cache

CHUNK = 1 << 20


def _key(seed):
    return hashlib.sha256(f"s3tee-bigdata:{seed}".encode()).hexdigest()[:32]


def stream_argv(size, seed=0):
    """argv of a shell pipeline that prints `size` bytes of the stream for `seed`."""
    cmd = (f"openssl enc -aes-128-ctr -nosalt -K {_key(seed)} -iv {'0' * 32} -in /dev/zero "
           f"2>/dev/null | head -c {int(size)}")
    return ["/bin/sh", "-c", cmd]


def stream_shell(size, seed=0):
    return stream_argv(size, seed)[2]


def write_file(path, size, seed=0):
    with open(path, "wb") as f:
        subprocess.run(stream_argv(size, seed), stdout=f, check=True, timeout=600)
    return path


@lru_cache(maxsize=None)
def sha256_of(size, seed=0):
    rc, digest, n, err = hash_output(stream_argv(size, seed))
    assert rc == 0 and n == size, (rc, n, err)
    return digest


def hash_output(argv, env=None, timeout=900, stdin=subprocess.DEVNULL):
    """Runs argv; returns (rc, sha256 hex of its stdout, byte count, stderr text). The
    output is hashed as it comes, never kept. stdin may be another Popen's stdout."""
    h = hashlib.sha256()
    n = 0
    p = subprocess.Popen([str(a) for a in argv], stdin=stdin, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=env)
    import threading
    err = []
    t = threading.Thread(target=lambda: err.append(p.stderr.read()))
    t.start()
    try:
        while True:
            chunk = p.stdout.read(CHUNK)
            if not chunk:
                break
            h.update(chunk)
            n += len(chunk)
        rc = p.wait(timeout=timeout)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        t.join()
    return rc, h.hexdigest(), n, (err[0] if err else b"").decode(errors="replace")


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def quote(argv):
    return " ".join(shlex.quote(str(a)) for a in argv)
