"""bed.py - the s3tee test bed: start and stop S3 stores, Redis and proxies on loopback.

Importable by the integration tests (conftest.py), the benchmarks and the demo. Debian's
/usr/bin/python3 standard library only.

    import bed
    site = bed.RgwSite(access_key="AKIDSTORE", secret="secretstore", tls=True).start()
    redis = bed.Redis().start()
    proxy = bed.Proxy(upstream=site.url).start()
    ...
    proxy.stop()          # SIGTERM, then checks exit status and sanitizer reports
    bed.stop_all()        # also runs at interpreter exit

Every process gets free loopback ports and a directory under run_root(); everything
started is stopped at exit (atexit), and a later run sweeps what a killed run left behind.
Set S3TEE_BED_KEEP=1 to keep the directories (logs) after a run.

Network namespaces (root only; sites.Deployment uses them by default where they work,
see netns_default(); S3TEE_BED_NETNS=0 keeps loopback, =1 insists): Netns(site) makes a
namespace `s3tee-<run id>-<site>-<k>` joined to the root namespace by a veth pair on /30
number k of 10.201.0.0/16 (k chosen under a lock file, like the ports). RgwSite, Redis and
Proxy take netns=: the process runs inside it (nsenter) and binds the namespace's address
(.host), which the test process reaches over the veth. The namespace has no route but its
/30, so it reaches nothing outside but the root side of its own veth. sweep_stale() deletes
the namespaces of dead runs.
"""

import atexit
import ctypes
import fcntl
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

BED_DIR = Path(__file__).resolve().parent
REPO = BED_DIR.parent.parent
BED_TMP = Path(os.environ.get("TMPDIR", "/tmp")) / "s3tee-bed"

# What the sanitizers print; a proxy whose output contains one of these failed its test.
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "runtime error:", "LeakSanitizer")
SANITIZER_ENV = {
    "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=1",
    "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1",
}


class BedError(Exception):
    """A bed process failed to start, stop or behave."""


class Unavailable(BedError):
    """A tool the bed needs is not installed here; callers skip with this reason."""


class SanitizerError(BedError):
    """A stopped proxy reported an ASan/UBSan/LSan error or exited badly."""


def log(msg):
    print(f"bed: {msg}", file=sys.stderr, flush=True)


def tail(path, lines=20):
    try:
        with open(path, "rb") as f:
            data = f.read()[-16384:]
    except OSError:
        return f"({path}: missing)"
    text = data.decode("utf-8", "replace").splitlines()[-lines:]
    return f"---- {path}\n" + "\n".join(text)


# ---------------------------------------------------------------------------------------
# Bookkeeping: what runs, where it lives, and stopping all of it at exit

_live = []
_live_lock = threading.Lock()


def _register(obj):
    with _live_lock:
        if obj not in _live:
            _live.append(obj)


def _unregister(obj):
    with _live_lock:
        if obj in _live:
            _live.remove(obj)


def stop_all():
    """Stops everything this process started, newest first. Never raises."""
    while True:
        with _live_lock:
            if not _live:
                return
            obj = _live.pop()
        try:
            obj.stop(check=False)
        except Exception as e:  # keep going: the rest must stop too
            log(f"stopping {obj!r}: {e}")


def _at_exit():
    stop_all()
    _remove_run_root()


atexit.register(_at_exit)


def install_signal_handlers():
    """For scripts (demo, benchmarks): SIGTERM/SIGHUP exit through atexit, so the bed is stopped."""

    def on_signal(signum, _frame):
        raise SystemExit(128 + signum)

    for s in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, on_signal)


def _proc_start_time(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


_run_root = None


def run_root():
    """This process's directory for everything the bed starts (created on first use)."""
    global _run_root
    if _run_root is None:
        BED_TMP.mkdir(parents=True, exist_ok=True)
        sweep_stale()
        _run_root = Path(tempfile.mkdtemp(prefix=f"run-{os.getpid()}-", dir=BED_TMP))
        (_run_root / "owner").write_text(f"{os.getpid()} {_proc_start_time(os.getpid())}\n")
    return _run_root


def _remove_run_root():
    if _run_root is None:
        return
    if os.environ.get("S3TEE_BED_KEEP") == "1":
        (_run_root / "kept").write_text("S3TEE_BED_KEEP=1: sweep_stale() leaves this alone\n")
        log(f"kept {_run_root}")
    else:
        shutil.rmtree(_run_root, ignore_errors=True)


def _owner_alive(run_dir):
    try:
        pid, start = (run_dir / "owner").read_text().split()
    except (OSError, ValueError):
        # no owner file yet: a run being created right now, or debris; judge by age
        try:
            return time.time() - run_dir.stat().st_mtime < 60
        except OSError:
            return False
    return _proc_start_time(int(pid)) == start


def _pid_cwd_is(pid, directory):
    try:
        return os.readlink(f"/proc/{pid}/cwd") == str(directory)
    except OSError:
        return False


def sweep_stale():
    """Stops and removes what bed runs that died without cleaning up (e.g. SIGKILL) left.

    Only processes proven to be ours are signalled: Ceph daemons through rgw-down.sh
    (pid files + the config path in their command line), the others by a pid file whose
    process still has that directory as its working directory.
    """
    if not BED_TMP.is_dir():
        return
    for run_dir in BED_TMP.glob("run-*"):
        if _owner_alive(run_dir) or (run_dir / "kept").exists():
            continue
        # The lists are taken before acting: rgw-down.sh removes the directory it stops,
        # and a lazy glob walking into it afterwards raises FileNotFoundError. Another bed
        # process may be sweeping the same debris at the same moment, hence the OSError.
        try:
            confs = list(run_dir.glob("**/ceph.conf"))
            pidfiles = list(run_dir.glob("**/bed.pid"))
        except OSError:
            continue
        for conf in confs:
            subprocess.run([str(BED_DIR / "rgw-down.sh"), str(conf.parent)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
        for pidfile in pidfiles:
            try:
                pid = int(pidfile.read_text())
            except (OSError, ValueError):
                continue
            if _pid_cwd_is(pid, pidfile.parent):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        shutil.rmtree(run_dir, ignore_errors=True)
    _sweep_netns()


def _new_dir(kind, directory=None):
    if directory is not None:
        d = Path(directory).resolve()
        d.mkdir(parents=True, exist_ok=True)
        return d
    return Path(tempfile.mkdtemp(prefix=f"{kind}-", dir=run_root()))


# ---------------------------------------------------------------------------------------
# Ports
#
# Single ports come from the kernel (bind to port 0, which hands out one of the ephemeral
# range, 32768-60999 on Debian). Each Ceph OSD needs a window of 20 ports it binds itself;
# those windows are taken below the ephemeral range, so the two never meet. A flock on a
# file per port/window keeps concurrent bed runs (two developers, CI) from picking the same
# one between the probe and the real bind.

_PORT_LOCKS = BED_TMP / "ports"
_held = {}  # name -> fd of the held lock file
_held_lock = threading.Lock()


def _ephemeral_range():
    try:
        lo, hi = open("/proc/sys/net/ipv4/ip_local_port_range").read().split()
        return int(lo), int(hi)
    except (OSError, ValueError):
        return 32768, 60999


def _lock(name):
    _PORT_LOCKS.mkdir(parents=True, exist_ok=True)
    fd = os.open(_PORT_LOCKS / f"{name}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return False
    with _held_lock:
        _held[name] = fd
    return True


def _unlock(name):
    with _held_lock:
        fd = _held.pop(name, None)
    if fd is not None:
        os.close(fd)


def _bindable(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def free_port():
    """A free loopback TCP port, reserved for this process until release_port()."""
    for _ in range(200):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        finally:
            s.close()
        if _lock(f"p{port}"):
            return port
    raise BedError("no free loopback port found")


def release_port(port):
    if port:
        _unlock(f"p{port}")


def free_port_window(size=20):
    """First port of `size` consecutive free ports outside the ephemeral range (for an OSD)."""
    eph_lo, eph_hi = _ephemeral_range()
    if eph_lo - 10000 >= 1000:
        lo, hi = 10000, eph_lo - size
    else:
        lo, hi = eph_hi + 1, 65535 - size
    for _ in range(200):
        start = random.randrange(lo, hi) // size * size
        if start < lo:
            continue
        if not _lock(f"w{start}"):
            continue
        if all(_bindable(p) for p in range(start, start + size)):
            return start
        _unlock(f"w{start}")
    raise BedError(f"no free window of {size} ports in {lo}-{hi}")


def release_port_window(start):
    if start:
        _unlock(f"w{start}")


def wait_port(port, proc=None, timeout=30.0, what="process", logs=(), host="127.0.0.1"):
    """Waits until host:port accepts; fails early if `proc` (a Popen) exits."""
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and proc.poll() is not None:
            raise BedError(f"{what} exited with status {proc.returncode} before listening "
                           f"on port {port}\n" + "\n".join(tail(p) for p in logs))
        try:
            with socket.create_connection((host, port), timeout=1.0):
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise BedError(f"{what} not listening on port {port} after {timeout:.0f}s\n"
                           + "\n".join(tail(p) for p in logs))
        time.sleep(0.02)


# ---------------------------------------------------------------------------------------
# Child processes

_libc = ctypes.CDLL(None, use_errno=True)


def _die_with_parent():
    """preexec_fn: the child gets SIGKILL when the thread that started it ends."""
    _libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def spawn(argv, directory, env=None, name="process", netns=None):
    """Starts a long-running child in `directory` (its cwd), output to DIR/stdout.log and
    DIR/stderr.log, in its own session (a ^C at the terminal is for pytest, not for it).
    Tied to our life with PDEATHSIG when started from the main thread (the signal follows
    the thread, so children of short-lived threads are not tied). netns: a Netns to run it
    in (nsenter execs the program: the pid is the program's own)."""
    directory = Path(directory)
    if netns is not None:
        argv = netns.wrap(argv)
    out = open(directory / "stdout.log", "ab")
    err = open(directory / "stderr.log", "ab")
    tie = threading.current_thread() is threading.main_thread()
    try:
        proc = subprocess.Popen([str(a) for a in argv], cwd=directory, env=env,
                                stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                start_new_session=True,
                                preexec_fn=_die_with_parent if tie else None)
    except FileNotFoundError as e:
        raise Unavailable(f"{name}: {e}") from None
    finally:
        out.close()
        err.close()
    (directory / "bed.pid").write_text(f"{proc.pid}\n")
    return proc


def terminate(proc, timeout=10.0, sig=signal.SIGTERM):
    """Sends `sig`, waits up to `timeout`, then SIGKILLs. Returns (returncode, killed)."""
    if proc.poll() is not None:
        return proc.returncode, False
    try:
        proc.send_signal(sig)
    except ProcessLookupError:
        pass
    try:
        return proc.wait(timeout), False
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait(), True


def _read_status_kb(pid, field):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _children(pid):
    kids = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                kids += [int(x) for x in f.read().split()]
    except OSError:
        pass
    return kids


def process_tree(pid):
    """pid and all its descendants (those alive now)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += _children(p)
    return out


# ---------------------------------------------------------------------------------------
# Network namespaces: one per site in sites.Deployment(netns=True)
#
# Each namespace gets `lo` and one end of a veth pair (named eth0 inside); the other end
# stays in the root namespace. Subnet k of 10.201.0.0/16 (a /30): root side .1, namespace
# side .2 of 10.201.0.0 + 4k. The namespace has no default route: it reaches the root side
# of its own veth and nothing else, whatever ip_forward says (the root sides also refuse to
# forward), so two sites meet only through relays listening on those root-side addresses.

NETNS_PREFIX = "s3tee-"
_NETNS_DIR = Path("/run/netns")
_NETNS_SUBNETS = 16384        # /30s in 10.201.0.0/16


_netns_probed = {}     # "why": the cached answer of netns_available()


def netns_available():
    """None if namespaces can be made here, else the reason they cannot: root, ip and
    nsenter installed, and a probe that makes a namespace with a veth pair inside and
    deletes it works (a container may refuse either). Probed once per process."""
    if os.geteuid() != 0:
        return "network namespaces need root (ip netns add, veth pairs)"
    for tool in ("ip", "nsenter"):
        if shutil.which(tool) is None:
            return f"{tool} not installed (Debian packages iproute2, util-linux)"
    if "why" not in _netns_probed:
        _netns_probed["why"] = _netns_probe()
    return _netns_probed["why"]


def _netns_probe():
    # named like a site's namespace, so that the sweep removes it if we die in between;
    # the veth pair lives inside it and goes with it
    name = f"{NETNS_PREFIX}{run_id()}-probe"
    try:
        for argv in (("netns", "add", name),
                     ("-n", name, "link", "add", "p0", "type", "veth", "peer", "name", "p1"),
                     ("-n", name, "link", "set", "lo", "up")):
            r = _ip(*argv, check=False)
            if r.returncode != 0:
                return f"ip {' '.join(argv)} failed here: {r.stderr.strip()}"
        return None
    finally:
        _ip("netns", "del", name, check=False)


def netns_default():
    """What sites.Deployment(netns=None) does: $S3TEE_BED_NETNS=1 namespaces (Unavailable
    at start if they cannot be made), =0 loopback; unset or empty: namespaces where
    netns_available() says they can be made, loopback otherwise."""
    v = os.environ.get("S3TEE_BED_NETNS", "").strip()
    if v in ("0", "1"):
        return v == "1"
    if v:
        raise BedError(f"S3TEE_BED_NETNS={v!r}: 0 (loopback) or 1 (namespaces), or unset")
    return netns_available() is None


def _ip(*args, check=True):
    r = subprocess.run(["ip", *map(str, args)], capture_output=True, text=True, timeout=30)
    if check and r.returncode != 0:
        raise BedError(f"ip {' '.join(map(str, args))}: {r.stderr.strip()}")
    return r


def run_id():
    """This bed run's id, as namespace names carry it: `<pid>-<suffix>` of run_root()."""
    return run_root().name[len("run-"):]


class Netns:
    """A network namespace for one site, joined to the root namespace by a veth pair.

    After start(): .name (`s3tee-<run id>-<site>-<subnet index>`), .host (the namespace's
    address: what its processes bind and the test process connects to), .gateway (the root
    side: where the site's relays listen), .veth (root-side interface). wrap(argv) runs argv
    inside it.
    """

    def __init__(self, site):
        self.site = site
        self.name = None
        self.index = None
        self.host = self.gateway = self.veth = None

    def __repr__(self):
        return f"Netns({self.name}, {self.host})"

    def _claim_subnet(self):
        start = random.randrange(_NETNS_SUBNETS)
        for i in range(_NETNS_SUBNETS):
            k = (start + i) % _NETNS_SUBNETS
            if not _lock(f"n{k}"):
                continue
            veth = f"s3t{k}r"
            if Path(f"/sys/class/net/{veth}").exists():
                # the lock was free, so no live run holds it: debris of a killed run whose
                # namespace outlived it (a process still inside); the pair goes with one end
                _ip("link", "del", veth, check=False)
                if Path(f"/sys/class/net/{veth}").exists():
                    _unlock(f"n{k}")
                    continue
            return k
        raise BedError("no free /30 left in 10.201.0.0/16 for a network namespace")

    def start(self):
        why = netns_available()
        if why:
            raise Unavailable(why)
        self.index = self._claim_subnet()
        # the subnet's index keeps two live deployments of one run (a module's fixture and
        # a test's own) apart; the sweep reads the run id from the first two fields
        self.name = f"{NETNS_PREFIX}{run_id()}-{self.site}-{self.index}"
        base = 4 * self.index
        net = f"10.201.{base >> 8}"
        self.gateway, self.host = f"{net}.{(base & 255) + 1}", f"{net}.{(base & 255) + 2}"
        self.veth = f"s3t{self.index}r"
        _register(self)
        _ip("netns", "add", self.name)
        _ip("link", "add", self.veth, "type", "veth", "peer", "name", "eth0", "netns", self.name)
        # no forwarding from our veth, even where the host forwards (docker, routers)
        Path(f"/proc/sys/net/ipv4/conf/{self.veth}/forwarding").write_text("0\n")
        _ip("addr", "add", f"{self.gateway}/30", "dev", self.veth)
        _ip("link", "set", self.veth, "up")
        _ip("-n", self.name, "link", "set", "lo", "up")
        _ip("-n", self.name, "addr", "add", f"{self.host}/30", "dev", "eth0")
        _ip("-n", self.name, "link", "set", "eth0", "up")
        return self

    def wrap(self, argv):
        """argv run inside the namespace (nsenter execs it: same pid, same environment)."""
        return ["nsenter", f"--net={_NETNS_DIR / self.name}", "--", *map(str, argv)]

    def run(self, argv, **kw):
        """subprocess.run of argv inside the namespace."""
        return subprocess.run(self.wrap(argv), **kw)

    def pids(self):
        r = _ip("netns", "pids", self.name, check=False)
        return [int(p) for p in r.stdout.split()] if r.returncode == 0 else []

    def stop(self, check=False):
        """Deletes the veth pair and the namespace; processes still inside are killed first
        (they would keep the namespace alive). Safe to call twice."""
        if self.name is None:
            return self
        _netns_delete(self.name, self.veth)
        _unregister(self)
        _unlock(f"n{self.index}")
        self.name = None
        return self

    close = stop


def _netns_delete(name, veth=None):
    for pid in _ip("netns", "pids", name, check=False).stdout.split():
        try:
            os.kill(int(pid), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass
    if veth:
        _ip("link", "del", veth, check=False)
    _ip("netns", "del", name, check=False)


def _sweep_netns():
    """Deletes the namespaces of bed runs that are gone (their run directory was removed or
    its owner died): everything inside one is ours by its name."""
    try:
        names = os.listdir(_NETNS_DIR)
    except OSError:
        return
    for name in names:
        if not name.startswith(NETNS_PREFIX):
            continue
        rid = "-".join(name[len(NETNS_PREFIX):].split("-")[:2])    # <pid>-<suffix>
        run_dir = BED_TMP / f"run-{rid}"
        if run_dir.is_dir() and _owner_alive(run_dir):
            continue
        log(f"removing network namespace {name} of a dead bed run")
        _netns_delete(name)


# ---------------------------------------------------------------------------------------
# TLS material: a throwaway CA and a server certificate it signed

class TlsFiles:
    def __init__(self, directory, names):
        self.dir = Path(directory)
        self.ca = self.dir / "ca.pem"          # give this to clients (AWS_CA_BUNDLE, --ca-bundle, verify=)
        self.cert = self.dir / "cert.pem"      # server certificate followed by the CA
        self.key = self.dir / "key.pem"
        self.names = list(names)

    def __repr__(self):
        return f"TlsFiles({self.dir})"


_tls_cache = {}
DEFAULT_TLS_NAMES = ("localhost", "*.localhost", "s3.localhost", "*.s3.localhost", "127.0.0.1")


def tls_files(names=DEFAULT_TLS_NAMES, directory=None):
    """CA + server certificate/key for `names` (DNS names or IPs), made with openssl once
    per process and set of names. The certificate is valid for 30 days."""
    names = tuple(names)
    if names in _tls_cache and directory is None:
        return _tls_cache[names]
    d = _new_dir("tls", directory)
    t = TlsFiles(d, names)
    san = ",".join(("IP:" if _is_ip(n) else "DNS:") + n for n in names)
    ext = d / "ext.cnf"
    ext.write_text("[v3]\nbasicConstraints = critical, CA:FALSE\n"
                   "keyUsage = critical, digitalSignature, keyEncipherment\n"
                   "extendedKeyUsage = serverAuth\n"
                   f"subjectAltName = {san}\n")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    steps = [
        ["openssl", "req", "-x509", *ec, "-keyout", d / "ca.key", "-out", t.ca, "-days", "30",
         "-subj", "/CN=s3tee test CA",
         "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
        ["openssl", "req", *ec, "-keyout", t.key, "-out", d / "server.csr",
         "-subj", f"/CN={names[0]}"],
        ["openssl", "x509", "-req", "-in", d / "server.csr", "-CA", t.ca, "-CAkey", d / "ca.key",
         "-CAcreateserial", "-days", "30", "-extfile", ext, "-extensions", "v3",
         "-out", d / "server.pem"],
    ]
    for argv in steps:
        r = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            raise BedError(f"openssl failed: {' '.join(map(str, argv))}\n{r.stderr}")
    t.cert.write_text((d / "server.pem").read_text() + t.ca.read_text())
    os.chmod(t.key, 0o600)
    if directory is None:
        _tls_cache[names] = t
    return t


def _is_ip(name):
    try:
        socket.inet_aton(name)
        return name.count(".") == 3
    except OSError:
        return False


# ---------------------------------------------------------------------------------------
# Redis

class Redis:
    """redis-server on a free loopback port, AOF with appendfsync always, noeviction.

    stop() then start() again keeps the data (same directory and port): that is a restart.
    netns: a started Netns to run in; it then binds the namespace's address (.host).
    """

    def __init__(self, directory=None, port=None, extra_args=(), netns=None):
        self.netns = netns
        self.dir = _new_dir("redis", directory)
        self.port = port
        self._own_port = port is None
        self.extra_args = list(extra_args)
        self.proc = None

    def __repr__(self):
        return f"Redis(port={self.port}, dir={self.dir})"

    @property
    def url(self):
        return f"redis://{self.host}:{self.port}"

    @property
    def host(self):
        return self.netns.host if self.netns else "127.0.0.1"

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    @property
    def log_path(self):
        return self.dir / "redis.log"

    def start(self, timeout=15.0):
        if shutil.which("redis-server") is None:
            raise Unavailable("redis-server not installed (Debian package redis-server)")
        if self.port is None:
            self.port = free_port()
        argv = ["redis-server", "--bind", self.host, "--port", self.port,
                "--dir", self.dir, "--logfile", self.log_path, "--daemonize", "no",
                "--save", "", "--appendonly", "yes", "--appendfsync", "always",
                "--maxmemory-policy", "noeviction", "--protected-mode", "no",
                *self.extra_args]
        self.proc = spawn(argv, self.dir, name="redis-server", netns=self.netns)
        _register(self)
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout):
        wait_port(self.port, self.proc, timeout, "redis-server", [self.log_path], self.host)
        deadline = time.monotonic() + timeout
        while True:  # it accepts before it has loaded the AOF: LOADING errors until then
            try:
                if self.command("PING") == "PONG":
                    return
            except (OSError, RedisReplyError):
                pass
            if time.monotonic() > deadline:
                raise BedError("redis-server does not answer PING\n" + tail(self.log_path))
            time.sleep(0.02)

    def command(self, *args, timeout=10.0):
        """One command over a fresh connection; returns the decoded reply."""
        with socket.create_connection((self.host, self.port), timeout=timeout) as s:
            s.sendall(resp_encode(args))
            return resp_read(s.makefile("rb"))

    def is_alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, check=True, timeout=10.0):
        """SIGTERM (Redis then flushes the AOF and exits), SIGKILL after `timeout`."""
        if self.proc is not None:
            rc, killed = terminate(self.proc, timeout)
            self.proc = None
            if check and (killed or rc != 0):
                raise BedError(f"redis-server exit status {rc}{' (killed)' if killed else ''}\n"
                               + tail(self.log_path))
        return self

    def kill9(self):
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None
        return self

    def restart(self, kill=True):
        """kill -9 (or SIGTERM) and start again on the same port and directory: the AOF
        (appendfsync always) is all it keeps."""
        if kill:
            self.kill9()
        else:
            self.stop(check=False)
        return self.start()

    def close(self):
        """Stops it for good and gives the port back."""
        self.stop(check=False)
        _unregister(self)
        if self._own_port:
            release_port(self.port)


class RedisReplyError(Exception):
    pass


def resp_encode(args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        b = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)


def resp_read(f):
    line = f.readline()
    if not line:
        raise OSError("redis closed the connection")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        raise RedisReplyError(rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        if n < 0:
            return None
        data = f.read(n + 2)[:-2]
        try:
            return data.decode()
        except UnicodeDecodeError:
            return data
    if kind == b"*":
        n = int(rest)
        return None if n < 0 else [resp_read(f) for _ in range(n)]
    raise OSError(f"unexpected reply from redis: {line!r}")


# ---------------------------------------------------------------------------------------
# Ceph radosgw site

class RgwSite:
    """A throwaway Ceph cluster + radosgw (tests/bed/rgw-up.sh), one S3 user with the given
    keys. tls=True also serves https (certificate from tls_files()) on .tls_port.
    netns: a started Netns; the daemons (and admin(), gateway_up()) run inside it, radosgw
    answers on the namespace's address (.host), monitor and OSD on its loopback."""

    region = "us-east-1"

    def __init__(self, access_key="AKIDSTORE", secret="secretstore", tls=False, directory=None,
                 netns=None):
        self.netns = netns
        self.access_key = access_key
        self.secret = secret
        self.tls = tls_files() if tls is True else (tls or None)
        self.dir = _new_dir("rgw", directory) / "ceph"
        self.port = self.tls_port = self.mon_port = self.osd_window = None
        self.started = False
        self.start_seconds = None

    def __repr__(self):
        return f"RgwSite(port={self.port}, dir={self.dir})"

    @property
    def host(self):
        return self.netns.host if self.netns else "127.0.0.1"

    @property
    def url(self):
        return f"http://{self.host}:{self.port}"

    @property
    def tls_url(self):
        return f"https://{self.host}:{self.tls_port}" if self.tls_port else None

    @property
    def ca(self):
        return str(self.tls.ca) if self.tls else None

    def _wrap(self, argv):
        return self.netns.wrap(argv) if self.netns else [str(a) for a in argv]

    @property
    def log_dir(self):
        return self.dir / "log"

    def start(self, timeout=180.0):
        for tool in ("ceph-mon", "ceph-osd", "radosgw", "radosgw-admin", "ceph"):
            if shutil.which(tool) is None:
                raise Unavailable(f"{tool} not installed (Debian packages ceph-mon ceph-osd "
                                  "radosgw ceph-common)")
        self.port, self.mon_port = free_port(), free_port()
        self.osd_window = free_port_window(20)
        env = dict(os.environ, OSD_PORT_MIN=str(self.osd_window), RGW_ADDR=self.host)
        if self.tls:
            self.tls_port = free_port()
            env.update(RGW_SSL_PORT=str(self.tls_port), RGW_SSL_CERT=str(self.tls.cert),
                       RGW_SSL_KEY=str(self.tls.key))
        _register(self)
        self.started = True
        t0 = time.monotonic()
        argv = [str(BED_DIR / "rgw-up.sh"), str(self.dir), str(self.port), self.access_key,
                self.secret, str(self.mon_port)]
        try:
            r = subprocess.run(self._wrap(argv), env=env, capture_output=True, text=True,
                               timeout=timeout)
        except subprocess.TimeoutExpired as e:
            self.stop(check=False, keep=True)
            raise BedError(f"rgw-up.sh took more than {timeout:.0f}s\n{e.stderr or ''}") from None
        if r.returncode != 0:
            self.stop(check=False, keep=True)
            raise BedError(f"rgw-up.sh failed (status {r.returncode}):\n{r.stdout}{r.stderr}")
        self.start_seconds = time.monotonic() - t0
        return self

    @staticmethod
    def start_many(sites):
        """Starts several sites in parallel (threads); raises the first failure."""
        errors = []

        def one(s):
            try:
                s.start()
            except Exception as e:
                errors.append(e)

        threads = [threading.Thread(target=one, args=(s,)) for s in sites]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
        return sites

    @staticmethod
    def stop_many(sites):
        """Stops several sites in parallel; raises the first failure."""
        errors = []

        def one(s):
            try:
                s.stop()
            except Exception as e:
                errors.append(e)

        threads = [threading.Thread(target=one, args=(s,)) for s in sites]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]

    def stop(self, check=True, keep=None):
        if not self.started:
            return self
        if keep is None:
            keep = os.environ.get("S3TEE_BED_KEEP") == "1"
        env = dict(os.environ, KEEP="1" if keep else "0")
        r = subprocess.run([str(BED_DIR / "rgw-down.sh"), str(self.dir)], env=env,
                           capture_output=True, text=True, timeout=120)
        self.started = False
        _unregister(self)
        release_port(self.port)
        release_port(self.mon_port)
        release_port(self.tls_port)
        release_port_window(self.osd_window)
        if check and r.returncode != 0:
            raise BedError(f"rgw-down.sh failed: {r.stderr}")
        return self

    close = stop

    def admin(self, *args, timeout=60):
        """radosgw-admin against this cluster; returns CompletedProcess (text)."""
        return subprocess.run(self._wrap(["radosgw-admin", "-c", self.dir / "ceph.conf", *args]),
                              capture_output=True, text=True, timeout=timeout)

    def pids(self):
        out = {}
        for name in ("mon.a", "osd.0", "client.rgw.a"):
            try:
                out[name] = int((self.dir / "run" / f"{name}.pid").read_text())
            except (OSError, ValueError):
                pass
        return out

    # -- faults: the gateway goes away and comes back; the data (in the OSD) stays

    def _gateway_pid(self):
        pid = self.pids().get("client.rgw.a")
        if pid is None:
            return None
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            return None
        return pid if str(self.dir / "ceph.conf") in cmd else None   # not a recycled pid

    def gateway_down(self, sig=signal.SIGKILL):
        """Kills radosgw (the S3 endpoint); monitor and OSD keep the data."""
        pid = self._gateway_pid()
        if pid is None:
            return self
        os.kill(pid, sig)
        deadline = time.monotonic() + 15
        while self._gateway_pid() is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        if self._gateway_pid() is not None:
            raise BedError(f"radosgw (pid {pid}) in {self.dir} did not die")
        return self

    def gateway_up(self, timeout=60.0):
        """Starts radosgw again (it daemonizes itself) and waits until it answers S3."""
        if self._gateway_pid() is not None:
            return self
        r = subprocess.run(self._wrap(["radosgw", "-c", self.dir / "ceph.conf", "-n", "client.rgw.a"]),
                           capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            raise BedError(f"radosgw did not start again: {r.stderr}")
        wait_port(self.port, None, timeout, "radosgw", [self.log_dir / "client.rgw.a.log"],
                  self.host)
        return self

    def down_for(self, seconds):
        """Gateway down now, up again after `seconds` (a background thread); returns the
        thread (join() it to know the store is back; errors are logged)."""
        self.gateway_down()

        def later():
            time.sleep(seconds)
            try:
                self.gateway_up()
            except Exception as e:
                log(f"store {self.dir}: {e}")

        t = threading.Thread(target=later, daemon=True, name="store down_for")
        t.start()
        return t


# ---------------------------------------------------------------------------------------
# moto

def moto_command():
    """Path of moto_server, or None. It comes with the image's pyenv python; Debian has none."""
    return shutil.which("moto_server")


class Moto:
    """moto_server (in-memory S3, accepts any key, checks no signatures) on a free port.
    tls=True serves https instead of http, with the bed's certificate."""

    region = "us-east-1"

    def __init__(self, access_key="AKIDMOTO", secret="secretmoto", tls=False, directory=None):
        self.access_key, self.secret = access_key, secret
        self.tls = tls_files() if tls is True else (tls or None)
        self.dir = _new_dir("moto", directory)
        self.port = None
        self.proc = None

    def __repr__(self):
        return f"Moto(port={self.port})"

    @property
    def url(self):
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    @property
    def ca(self):
        return str(self.tls.ca) if self.tls else None

    def start(self, timeout=30.0):
        cmd = moto_command()
        if cmd is None:
            raise Unavailable("moto_server not found on PATH (it comes with the image's pyenv "
                              "python; a bare Debian machine has none)")
        self.port = free_port()
        argv = [cmd, "-H", "127.0.0.1", "-p", self.port]
        if self.tls:
            argv += ["-c", self.tls.cert, "-k", self.tls.key]
        self.proc = spawn(argv, self.dir, name="moto_server")
        _register(self)
        wait_port(self.port, self.proc, timeout, "moto_server",
                  [self.dir / "stderr.log", self.dir / "stdout.log"])
        return self

    def stop(self, check=True):
        if self.proc is not None:
            terminate(self.proc, 5.0, signal.SIGINT)
            self.proc = None
        _unregister(self)
        release_port(self.port)
        return self

    close = stop


# ---------------------------------------------------------------------------------------
# s3tee proxy

def build_dir():
    """The build directory the tests use: $S3TEE_BUILD (set by make), else REPO/build."""
    return Path(os.environ.get("S3TEE_BUILD") or REPO / "build").resolve()


def asan_build():
    """The binaries under test are built with AddressSanitizer (make SANITIZER=address)."""
    binary = build_dir() / "s3tee-proxy"
    if not binary.exists():
        return False
    if "libasan" in subprocess.run(["ldd", str(binary)], capture_output=True, text=True).stdout:
        return True
    with open(binary, "rb") as f:
        return b"__asan_init" in f.read()


class Proxy:
    """An s3tee-proxy with a generated config and 0600 credentials file.

    upstream   the store's URL (http://127.0.0.1:PORT)
    store_key  (access_key, secret) the proxy signs with at the store
    clients    [(access_key, secret, buckets)] where buckets is "*" or "b1,b2"
    tls        True: also listen_tls with the bed certificate (a TlsFiles to choose another)
    directives {name: value}; a list value repeats the directive, None removes a default
    binary     another executable (tests of the bed use a stub)
    env        extra environment for the process
    netns      a started Netns to run in; it listens on the namespace's address (.host)

    After start(): .port .tls_port .url .tls_url .ca .pid .access_log .error_log
    .stderr_path .conf_path .creds_path
    """

    region = "us-east-1"

    def __init__(self, upstream, store_key=("AKIDSTORE", "secretstore"),
                 clients=(("AKIDCLIENT", "secretclient", "*"),), tls=True, directives=None,
                 binary=None, env=None, directory=None, build=None, extra_creds=(), netns=None):
        self.netns = netns
        self.upstream = upstream
        self.extra_creds = list(extra_creds)   # raw credential lines ("site b AK SK", "peer b AK SK")
        self.store_key = tuple(store_key)
        self.clients = [tuple(c) for c in clients]
        self.tls = tls_files() if tls is True else (tls or None)
        self.directives = dict(directives or {})
        self.binary = Path(binary) if binary else (Path(build) if build else build_dir()) / "s3tee-proxy"
        self.extra_env = dict(env or {})
        self.dir = _new_dir("proxy", directory)
        self.conf_path = self.dir / "proxy.conf"
        self.creds_path = self.dir / "credentials"
        self.access_log = self.dir / "access.log"
        self.error_log = self.dir / "error.log"
        self.stderr_path = self.dir / "stderr.log"
        self.stdout_path = self.dir / "stdout.log"
        self.port = self.tls_port = None
        self.proc = None
        self.returncode = None
        self._checked_bytes = {}

    def __repr__(self):
        return f"Proxy(port={self.port}, tls_port={self.tls_port}, dir={self.dir})"

    # -- addresses and identity

    @property
    def host(self):
        return self.netns.host if self.netns else "127.0.0.1"

    @property
    def url(self):
        return f"http://{self.host}:{self.port}"

    @property
    def tls_url(self):
        return f"https://{self.host}:{self.tls_port}" if self.tls_port else None

    @property
    def ca(self):
        return str(self.tls.ca) if self.tls else None

    @property
    def access_key(self):
        return self.clients[0][0]

    @property
    def secret(self):
        return self.clients[0][1]

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    # -- files

    def config_text(self):
        d = {"listen": f"{self.host}:{self.port}"}
        if self.tls:
            d.update(listen_tls=f"{self.host}:{self.tls_port}", tls_certificate=self.tls.cert,
                     tls_certificate_key=self.tls.key)
        d.update(upstream=self.upstream, credentials_file=self.creds_path, region=self.region,
                 access_log=self.access_log, error_log=self.error_log, log_level="debug")
        d.update(self.directives)
        lines = ["# written by tests/bed/bed.py"]
        for name, value in d.items():
            for v in (value if isinstance(value, (list, tuple)) else [value]):
                if v is not None:
                    lines.append(f"{name} {v}")
        return "\n".join(lines) + "\n"

    def credentials_text(self):
        lines = [f"client {ak} {sk} {buckets}" for ak, sk, buckets in self.clients]
        lines.append(f"store {self.store_key[0]} {self.store_key[1]}")
        lines.extend(self.extra_creds)
        return "\n".join(lines) + "\n"

    def write_files(self):
        if self.port is None:
            self.port = free_port()
        if self.tls and self.tls_port is None:   # a caller may have chosen .port alone
            self.tls_port = free_port()
        self.conf_path.write_text(self.config_text())
        fd = os.open(self.creds_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(self.credentials_text())
        os.chmod(self.creds_path, 0o600)

    def env(self):
        e = dict(os.environ)
        for k, v in SANITIZER_ENV.items():
            e.setdefault(k, v)
        e.update(self.extra_env)
        return e

    # -- life cycle

    def check_config(self, timeout=30):
        """Runs `s3tee-proxy -t -c CONF`; returns CompletedProcess (text)."""
        self._need_binary()
        self.write_files()
        return subprocess.run([str(self.binary), "-t", "-c", str(self.conf_path)], env=self.env(),
                              capture_output=True, text=True, timeout=timeout)

    def _need_binary(self):
        if not os.access(self.binary, os.X_OK):
            raise BedError(f"{self.binary} is not built: run `make` (or set S3TEE_BUILD)")

    def start(self, timeout=20.0):
        self._need_binary()
        self.write_files()
        self.returncode = None
        self.proc = spawn([self.binary, "-c", self.conf_path], self.dir, env=self.env(),
                          name="s3tee-proxy", netns=self.netns)
        _register(self)
        logs = [self.stderr_path, self.error_log]
        wait_port(self.port, self.proc, timeout, "s3tee-proxy", logs, self.host)
        if self.tls_port:
            wait_port(self.tls_port, self.proc, timeout, "s3tee-proxy", logs, self.host)
        return self

    def is_alive(self):
        return self.proc is not None and self.proc.poll() is None

    def reload(self, **directives):
        """Rewrites the files (with `directives` merged in) and sends SIGHUP."""
        self.directives.update(directives)
        self.write_files()
        self.proc.send_signal(signal.SIGHUP)
        return self

    def set_clients(self, clients, reload=True):
        self.clients = [tuple(c) for c in clients]
        self.write_files()
        if reload and self.is_alive():
            self.proc.send_signal(signal.SIGHUP)
        return self

    def signal(self, sig):
        self.proc.send_signal(sig)

    def kill9(self):
        """SIGKILL, no checks (the test wants a crash)."""
        if self.proc is not None:
            self.proc.kill()
            self.returncode = self.proc.wait()
            self.proc = None
        return self

    def restart(self, kill=True):
        """kill -9 (kill=False: SIGTERM) and start again on the same ports."""
        if kill:
            self.kill9()
        else:
            self.stop(check=False)
        return self.start()

    def stop(self, check=True, timeout=10.0):
        """SIGTERM (drain, exit), SIGKILL after `timeout`. With check, raises SanitizerError
        if the proxy printed a sanitizer report, exited non-zero or had to be killed."""
        problems = []
        if self.proc is not None:
            rc, killed = terminate(self.proc, timeout)
            self.returncode = rc
            self.proc = None
            if killed:
                problems.append(f"did not exit within {timeout:.0f}s of SIGTERM; killed")
            elif rc != 0:
                problems.append(f"exit status {rc} after SIGTERM"
                                + (f" (signal {-rc})" if rc < 0 else ""))
        if check:
            problems += self.sanitizer_reports()
            if problems:
                raise SanitizerError(f"s3tee-proxy in {self.dir}: " + "; ".join(
                    p.splitlines()[0] for p in problems) + "\n" + "\n".join(
                    problems) + "\n" + tail(self.stderr_path, 60))
        return self

    def close(self, check=True):
        """stop() for good: also gives the ports back."""
        try:
            self.stop(check=check)
        finally:
            _unregister(self)
            release_port(self.port)
            release_port(self.tls_port)

    def sanitizer_reports(self):
        """Sanitizer reports in the proxy's stderr/stdout/error log not yet returned."""
        found = []
        for path in (self.stderr_path, self.stdout_path, self.error_log):
            try:
                with open(path, "rb") as f:
                    f.seek(self._checked_bytes.get(path, 0))
                    data = f.read()
                    self._checked_bytes[path] = f.tell()
            except OSError:
                continue
            text = data.decode("utf-8", "replace")
            for marker in SANITIZER_MARKERS:
                i = text.find(marker)
                if i >= 0:
                    start = text.rfind("\n", 0, max(0, i - 200)) + 1
                    found.append(f"{path.name}: {marker!r}:\n{text[start:i + 3000]}")
                    break
        return found

    def rss_peak_kb(self, tree=False):
        """VmHWM of the proxy (kB); tree=True sums it over the proxy and its children."""
        if self.proc is None:
            return 0
        pids = process_tree(self.proc.pid) if tree else [self.proc.pid]
        return sum(_read_status_kb(p, "VmHWM") for p in pids)

    def rss_kb(self, tree=False):
        if self.proc is None:
            return 0
        pids = process_tree(self.proc.pid) if tree else [self.proc.pid]
        return sum(_read_status_kb(p, "VmRSS") for p in pids)


# ---------------------------------------------------------------------------------------
# By hand: python3 tests/bed/bed.py rgw|redis|moto|sweep

def _main(argv):
    import argparse
    ap = argparse.ArgumentParser(description="start bed services by hand; ^C stops them")
    ap.add_argument("what", choices=["rgw", "redis", "moto", "sweep"])
    ap.add_argument("--tls", action="store_true")
    a = ap.parse_args(argv)
    install_signal_handlers()
    if a.what == "sweep":
        sweep_stale()
        return 0
    if a.what == "rgw":
        s = RgwSite(tls=a.tls).start()
        print(f"rgw {s.url} {s.tls_url or ''} key={s.access_key} secret={s.secret} "
              f"ca={s.ca or '-'} ({s.start_seconds:.1f}s)", flush=True)
    elif a.what == "redis":
        r = Redis().start()
        print(f"redis {r.url} dir={r.dir}", flush=True)
    else:
        m = Moto(tls=a.tls).start()
        print(f"moto {m.url}", flush=True)
    try:
        signal.pause()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
