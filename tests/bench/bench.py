"""bench.py - what s3tee-proxy costs, next to nginx, in one run on loopback.

An nginx with the WebDAV module (PUT/GET of plain files on tmpfs) is the store. The same
requests reach it along four paths:

    direct        client -> store nginx
    proxy_pass    client -> front nginx (proxy_pass, keepalive upstream) -> store nginx
                  twice: streaming (proxy_request_buffering off, proxy_buffering off),
                  and nginx's buffering defaults
    s3tee         client -> s3tee-proxy (checks SigV4, re-signs) -> store nginx

Measured: requests/s for 4 KiB GET and PUT at 64 connections (wrk, HTTP/1.1; h2load for
HTTP/2 where the target speaks h2c), MB/s for a 1 GiB PUT and GET with curl (median of
N), p50/p99 latency with one connection, and CPU time per request of the middle process
(/proc/PID/stat utime+stime around the rate run; for direct, the store's own workers).

Figures are printed as a table with ratios against the baselines of the same run, and the
targets of the issue are marked met / not met. A missed target never fails the run; the
exit status is non-zero only when the benchmark itself broke (a tool failed, a request was
answered with an error, a process died).

Run through tests/bench/run.sh (make bench); --help for the knobs.
"""

import argparse
import atexit
import hashlib
import json
import os
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR.parent / "bed"))
import bed  # noqa: E402

from botocore.auth import SigV4Auth  # noqa: E402
from botocore.awsrequest import AWSRequest  # noqa: E402
from botocore.credentials import Credentials  # noqa: E402

CLIENT_KEY = ("AKIDBENCH", "secretbench")
STORE_KEY = ("AKIDBENCHSTORE", "secretbenchstore")
REGION = "us-east-1"
BUCKET = "bench"
SMALL = 4096
GIB = 1 << 30
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
CLK_TCK = os.sysconf("SC_CLK_TCK")

# Targets from the issue
TARGETS_RATE = 0.80      # s3tee small-object rate >= 80% of nginx proxy_pass
TARGET_LARGE = 0.90      # s3tee large-object MB/s >= 90% of direct
TARGET_ADDED_P50_MS = 0.3


class BenchError(Exception):
    """The benchmark itself broke (not a missed target)."""


def say(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------
# CPU accounting

def cpu_seconds(pids):
    """utime+stime (seconds) summed over pids; a pid's figure includes all its threads."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
    return total / CLK_TCK


def machine_busy():
    """(busy, total, process) jiffies of the whole machine, from /proc/stat: not idle, all,
    and the part spent in processes (user, nice, system, plus steal: another guest's), which
    excludes interrupt time that the kernel charges to no process."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    user, nice, system, idle, iowait, _irq, _softirq, steal = v
    return sum(v) - idle - iowait, sum(v), user + nice + system + steal


# ---------------------------------------------------------------------------------------
# nginx: the store and the proxy_pass front

NGINX_COMMON = """\
worker_processes 2;
{user}
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 4096; multi_accept on; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_timeout 300s;
    keepalive_requests 100000000;
    types {{ }}
    default_type application/octet-stream;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    client_max_body_size 0;
{servers}
}}
"""

STORE_SERVER = """\
    server {{
        listen 127.0.0.1:{port} reuseport;
        root {root};
        dav_methods PUT DELETE;
        create_full_put_path on;
        client_body_buffer_size 64k;
    }}
    # h2c: the same, without sendfile (nginx 1.22's h2 + sendfile stalls small responses
    # on delayed ACKs: 64 streams made 1,400 GET/s)
    server {{
        listen 127.0.0.1:{h2port} http2;
        root {root};
        sendfile off;
        dav_methods PUT DELETE;
        create_full_put_path on;
        client_body_buffer_size 64k;
    }}
"""

FRONT_SERVERS = """\
    upstream store {{
        server 127.0.0.1:{store_port};
        keepalive 64;
        keepalive_requests 100000000;
        keepalive_timeout 300s;
    }}
    # streaming, like s3tee: bodies flow through as they arrive
    server {{
        listen 127.0.0.1:{stream_port} reuseport;
        listen 127.0.0.1:{stream_h2port} http2;
        location / {{
            proxy_pass http://store;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_request_buffering off;
            proxy_buffering off;
        }}
    }}
    # nginx's defaults: whole request body read before it is sent on, responses buffered
    server {{
        listen 127.0.0.1:{buffered_port} reuseport;
        location / {{
            proxy_pass http://store;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
"""


class Nginx:
    """One nginx master (worker_processes 2) in its own prefix directory."""

    def __init__(self, name, base, servers):
        self.name = name
        self.dir = Path(base) / name
        self.tmp = self.dir / "tmp"
        for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (self.tmp / sub).mkdir(parents=True, exist_ok=True)
        user = "user root root;" if os.getuid() == 0 else ""
        self.conf = self.dir / "nginx.conf"
        self.conf.write_text(NGINX_COMMON.format(user=user, dir=self.dir, tmp=self.tmp,
                                                 servers=servers))
        self.proc = None

    def start(self, ports):
        test = subprocess.run(["nginx", "-t", "-q", "-p", str(self.dir), "-e",
                               str(self.dir / "error.log"), "-c", str(self.conf)],
                              capture_output=True, text=True)
        if test.returncode != 0:
            raise BenchError(f"nginx {self.name}: config test failed:\n{test.stderr}")
        self.proc = bed.spawn(["nginx", "-p", self.dir, "-e", self.dir / "error.log",
                               "-c", self.conf, "-g", "daemon off;"], self.dir,
                              name=f"nginx {self.name}")
        for p in ports:
            bed.wait_port(p, self.proc, 15, f"nginx {self.name}",
                          [self.dir / "error.log", self.dir / "stderr.log"])
        return self

    def workers(self):
        return bed.process_tree(self.proc.pid)[1:] if self.proc else []

    def cpu(self):
        return cpu_seconds(self.workers())

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        if self.proc is not None:
            bed.terminate(self.proc, 10, signal.SIGTERM)
            self.proc = None


# ---------------------------------------------------------------------------------------
# Signing: one request signed now, replayed for the whole run (valid 15 minutes)

def sign(method, host, path, payload_sha256):
    req = AWSRequest(method=method, url=f"http://{host}{path}",
                     headers={"x-amz-content-sha256": payload_sha256})
    SigV4Auth(Credentials(*CLIENT_KEY), "s3", REGION).add_auth(req)
    h = {k: v for k, v in req.headers.items()}
    h["Host"] = host
    return h


def write_spec(path, method, target_path, headers, body_file=None):
    lines = [f"{method} {target_path}"] + [f"{k}: {v}" for k, v in headers.items()]
    text = "\n".join(lines) + "\n"
    if body_file is not None:
        text += f"\nBODY {body_file}\n"
    Path(path).write_text(text)


# ---------------------------------------------------------------------------------------
# Load generators

def parse_kv(line):
    return {k: float(v) for k, v in re.findall(r"(\w+)=([0-9.]+)", line)}


def run_wrk(url, spec, seconds, conns, threads, timeout_s=10):
    cmd = ["wrk", "-t", str(threads), "-c", str(conns), "-d", f"{seconds}s",
           "--timeout", f"{timeout_s}s", "-s", str(BENCH_DIR / "replay.lua"), url]
    env = dict(os.environ, BENCH_SPEC=str(spec))
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=seconds + 60)
    line = next((x for x in p.stdout.splitlines() if x.startswith("BENCH ")), None)
    if p.returncode != 0 or line is None:
        raise BenchError(f"wrk {url} failed (status {p.returncode}):\n{p.stdout}\n{p.stderr}")
    r = parse_kv(line)
    errors = sum(r[k] for k in r if k.startswith("err_"))
    if errors or r["requests"] == 0:
        raise BenchError(f"wrk {url}: {int(errors)} errors in {int(r['requests'])} requests "
                         f"({line})")
    r["rps"] = r["requests"] / (r["duration_us"] / 1e6)
    return r


def run_h2load(url, headers, body_file, seconds, clients, threads, method):
    cmd = ["h2load", "-c", str(clients), "-m", "1", "-t", str(threads), "-D", str(seconds),
           "--warm-up-time", "1"]
    for k, v in headers.items():
        if k.lower() != "host":
            cmd += ["-H", f"{k}: {v}"]
    if body_file is not None:
        cmd += ["-d", str(body_file)]
    if method not in ("GET", "POST"):
        cmd += ["-H", f":method: {method}"]
    cmd.append(url)
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    out = p.stdout
    m_fin = re.search(r"finished in ([0-9.]+)(m?s), ([0-9.]+) req/s", out)
    m_req = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                      r"(\d+) failed, (\d+) errored, (\d+) timeout", out)
    m_st = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
    if p.returncode != 0 or not (m_fin and m_req and m_st):
        raise BenchError(f"h2load {url} failed (status {p.returncode}):\n{out}\n{p.stderr}")
    done, ok, failed = int(m_req.group(3)), int(m_req.group(4)), int(m_req.group(5))
    bad = int(m_st.group(3)) + int(m_st.group(4))
    if failed or bad or done == 0 or "h2" not in out.split("Application protocol:")[-1][:8]:
        raise BenchError(f"h2load {url}: {failed} failed, {bad} 4xx/5xx of {done}:\n{out}")
    return {"rps": float(m_fin.group(3)), "requests": ok}


def run_curl(method, url, headers, src=None):
    """One transfer; returns MB/s (10^6 bytes per second of time_total)."""
    cmd = ["curl", "-sS", "--fail-with-body", "-o", "/dev/null", "-w",
           "%{http_code} %{size_download} %{size_upload} %{time_total}\n"]
    for k, v in headers.items():
        cmd += ["-H", f"{k}: {v}"]
    if method == "PUT":
        cmd += ["-T", str(src)]
    cmd.append(url)
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    parts = p.stdout.split()
    if p.returncode != 0 or len(parts) != 4 or not parts[0].startswith("2"):
        raise BenchError(f"curl {method} {url} failed (status {p.returncode}): "
                         f"{p.stdout} {p.stderr}")
    nbytes = int(parts[1]) if method == "GET" else int(parts[2])
    return nbytes, float(parts[3])


# ---------------------------------------------------------------------------------------
# The run

def sweep_stale(tmpfs):
    """Removes what a killed run (SIGKILL) left: its directory, and its nginx processes
    (an nginx master dies with us, but its workers outlive it). A process is proven to be
    that run's by its working directory, which lies inside the run's directory."""
    for run_dir in Path(tmpfs).glob("s3tee-bench-*"):
        try:
            pid, start = (run_dir / "owner").read_text().split()
        except (OSError, ValueError):
            if time.time() - run_dir.stat().st_mtime < 60:
                continue  # being created right now
            pid, start = "0", ""
        if bed._proc_start_time(int(pid)) == start:
            continue  # its run is alive
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                cwd = os.readlink(proc / "cwd")
            except OSError:
                continue
            if cwd.startswith(str(run_dir) + "/"):
                try:
                    os.kill(int(proc.name), signal.SIGKILL)
                except ProcessLookupError:
                    pass
        shutil.rmtree(run_dir, ignore_errors=True)


class Bench:
    def __init__(self, args):
        self.a = args
        sweep_stale(args.tmpfs)
        self.base = Path(tempfile.mkdtemp(prefix="s3tee-bench-", dir=args.tmpfs))
        (self.base / "owner").write_text(f"{os.getpid()} {bed._proc_start_time(os.getpid())}\n")
        atexit.register(self.cleanup)
        self.root = self.base / "store-root"
        (self.root / BUCKET).mkdir(parents=True)
        self.files = self.base / "files"
        self.files.mkdir()
        self.results = {}   # (test, target) -> dict
        self.procs = []

    def cleanup(self):
        for n in reversed(self.procs):
            try:
                n.stop()
            except Exception as e:  # keep going
                say(f"stopping {n}: {e}")
        self.procs = []
        if os.environ.get("S3TEE_BENCH_KEEP") == "1":
            say(f"kept {self.base}")
        else:
            shutil.rmtree(self.base, ignore_errors=True)

    # -- setup

    def start(self):
        P = {k: bed.free_port() for k in ("store", "store_h2", "stream", "stream_h2",
                                          "buffered")}
        self.ports = P
        self.store = Nginx("store", self.base, STORE_SERVER.format(
            port=P["store"], h2port=P["store_h2"], root=self.root))
        self.procs.append(self.store)
        self.store.start([P["store"], P["store_h2"]])
        self.front = Nginx("front", self.base, FRONT_SERVERS.format(
            store_port=P["store"], stream_port=P["stream"], stream_h2port=P["stream_h2"],
            buffered_port=P["buffered"]))
        self.procs.append(self.front)
        self.front.start([P["stream"], P["stream_h2"], P["buffered"]])
        directives = {"workers": self.a.workers, "access_log": self.a.access_log,
                      "log_level": "warn"}
        self.proxy = bed.Proxy(upstream=f"http://127.0.0.1:{P['store']}", store_key=STORE_KEY,
                               clients=[(CLIENT_KEY[0], CLIENT_KEY[1], "*")], tls=False,
                               directives=directives, directory=self.base / "proxy")
        self.proxy.start()
        self.procs.append(_ProxyStopper(self.proxy))
        self.s3tee_host = f"127.0.0.1:{self.proxy.port}"
        # targets: name -> (h1 base URL, h2c base URL or None, cpu function, pid list fn)
        self.targets = {
            "direct": (f"http://127.0.0.1:{P['store']}", f"http://127.0.0.1:{P['store_h2']}",
                       self.store.cpu),
            "proxy_pass": (f"http://127.0.0.1:{P['stream']}",
                           f"http://127.0.0.1:{P['stream_h2']}", self.front.cpu),
            "proxy_pass_buf": (f"http://127.0.0.1:{P['buffered']}", None, self.front.cpu),
            "s3tee": (f"http://{self.s3tee_host}", f"http://{self.s3tee_host}",
                      lambda: cpu_seconds([self.proxy.pid])),
        }
        say(f"store nginx :{P['store']} (h2c :{P['store_h2']}), proxy_pass :{P['stream']} "
            f"(h2c :{P['stream_h2']}), buffered :{P['buffered']}, s3tee :{self.proxy.port}, "
            f"dir {self.base}")

        # the objects: a 4 KiB body for PUT, the same bytes stored for GET, 1 GiB source
        body = (b"s3tee benchmark 4 KiB object. " * 200)[:SMALL]
        self.small_body = self.files / "small.bin"
        self.small_body.write_bytes(body)
        (self.root / BUCKET / "small-get").write_bytes(body)
        self.small_sha = hashlib.sha256(body).hexdigest()
        self.large_size = self.a.large_mib << 20
        self.large_src = self.files / "large.bin"
        chunk = bytes(8 << 20)
        with open(self.large_src, "wb") as f:
            left = self.large_size
            while left > 0:
                f.write(chunk[:min(left, len(chunk))])
                left -= len(chunk)
        os.link(self.large_src, self.root / BUCKET / "large-get")

    def check_alive(self):
        for n, ok in (("store nginx", self.store.alive()), ("front nginx", self.front.alive()),
                      ("s3tee-proxy", self.proxy.is_alive())):
            if not ok:
                raise BenchError(f"{n} died during the run")

    # -- specs: the signed requests, fresh for each phase (15-minute window)

    def small_specs(self):
        get_path, put_path = f"/{BUCKET}/small-get", f"/{BUCKET}/small-put"
        get_h = sign("GET", self.s3tee_host, get_path, EMPTY_SHA256)
        put_h = sign("PUT", self.s3tee_host, put_path, self.small_sha)
        write_spec(self.files / "get.spec", "GET", get_path, get_h)
        write_spec(self.files / "put.spec", "PUT", put_path, put_h, self.small_body)
        return {"GET": (get_path, get_h, self.files / "get.spec", None),
                "PUT": (put_path, put_h, self.files / "put.spec", self.small_body)}

    # -- phases

    def phase_rate(self):
        """Rounds of one run per target, interleaved, so that a load change on the machine
        (other jobs) hits every target alike; the median round counts."""
        specs = self.small_specs()
        for method in ("GET", "PUT"):
            path, _, spec, _ = specs[method]
            runs = {name: [] for name in self.targets}
            for rnd in range(self.a.rounds):
                for name, (url, _, cpu) in self.targets.items():
                    self.check_alive()
                    if rnd == 0:
                        run_wrk(url + path, spec, 1, self.a.conns, 2)  # connections, caches
                    ours0, busy0, c0 = self.our_cpu(), machine_busy(), cpu()
                    r = run_wrk(url + path, spec, self.a.seconds, self.a.conns, 2)
                    c1, busy1, ours1 = cpu(), machine_busy(), self.our_cpu()
                    r["cpu_s"] = c1 - c0
                    span = max(1, busy1[1] - busy0[1])
                    r["machine_busy"] = (busy1[0] - busy0[0]) / span
                    ours = (ours1 - ours0) * CLK_TCK
                    r["other_load"] = max(0.0, (busy1[2] - busy0[2] - ours) / span)
                    runs[name].append(r)
                    say(f"{method} 4 KiB x{self.a.conns} round {rnd + 1} {name:15s} "
                        f"{r['rps']:7.0f} req/s  "
                        f"cpu/req {r['cpu_s'] / r['requests'] * 1e6:6.1f} us"
                        f"  machine busy {r['machine_busy']:4.0%}, other jobs "
                        f"{r['other_load']:4.0%}")
            for name, rs in runs.items():
                rps = [x["rps"] for x in rs]
                self.results[(f"rate_{method}", name)] = {
                    "rps": statistics.median(rps), "all": rps,
                    "cpu_us_per_req": sum(x["cpu_s"] for x in rs)
                    / sum(x["requests"] for x in rs) * 1e6,
                    "machine_busy": statistics.mean(x["machine_busy"] for x in rs),
                    "other_load": max(x["other_load"] for x in rs)}

    def our_cpu(self):
        """CPU seconds of everything this benchmark runs: nginx masters and workers, the
        proxy, and the finished load generators (RUSAGE_CHILDREN)."""
        ru = resource.getrusage(resource.RUSAGE_CHILDREN)
        pids = bed.process_tree(self.store.proc.pid) + bed.process_tree(self.front.proc.pid) \
            + [self.proxy.pid]
        return cpu_seconds(pids) + ru.ru_utime + ru.ru_stime

    def phase_h2(self):
        specs = self.small_specs()
        for method in ("GET", "PUT"):
            path, headers, _, body = specs[method]
            for name, (_, url, _) in self.targets.items():
                if url is None:
                    continue
                self.check_alive()
                r = run_h2load(url + path, headers, body, self.a.seconds, self.a.conns, 2, method)
                self.results[(f"h2_{method}", name)] = r
                say(f"{method} 4 KiB h2 x{self.a.conns} {name:12s} {r['rps']:9.0f} req/s")

    def phase_latency(self):
        specs = self.small_specs()
        for method in ("GET", "PUT"):
            path, _, spec, _ = specs[method]
            for name, (url, _, _) in self.targets.items():
                self.check_alive()
                run_wrk(url + path, spec, 1, 1, 1)
                r = run_wrk(url + path, spec, self.a.lat_seconds, 1, 1)
                self.results[(f"lat_{method}", name)] = r
                say(f"{method} 4 KiB x1 {name:15s} p50 {r['lat_p50_us'] / 1000:.3f} ms  "
                    f"p99 {r['lat_p99_us'] / 1000:.3f} ms")

    def phase_large(self):
        for method in ("PUT", "GET"):
            path = f"/{BUCKET}/large-put" if method == "PUT" else f"/{BUCKET}/large-get"
            for name, (url, _, cpu) in self.targets.items():
                rates, cpus, machine = [], [], []
                for _ in range(self.a.reps):
                    self.check_alive()
                    h = sign(method, self.s3tee_host, path, "UNSIGNED-PAYLOAD")
                    h.pop("Host")  # curl sends the target's own; only s3tee checks it
                    c0 = cpu()
                    m0 = machine_busy()[0]
                    nbytes, secs = run_curl(method, url + path, h, self.large_src)
                    cpus.append(cpu() - c0)
                    machine.append((machine_busy()[0] - m0) / CLK_TCK)
                    if nbytes != self.large_size:
                        raise BenchError(f"{method} {name}: {nbytes} bytes moved, "
                                         f"{self.large_size} expected")
                    rates.append(nbytes / secs / 1e6)
                if method == "PUT":
                    got = (self.root / BUCKET / "large-put").stat().st_size
                    if got != self.large_size:
                        raise BenchError(f"PUT {name}: stored {got} bytes")
                    (self.root / BUCKET / "large-put").unlink()
                r = {"mbps": statistics.median(rates), "all": rates,
                     "cpu_s_per_gib": statistics.median(cpus) * GIB / self.large_size,
                     # everything the transfer cost the machine: client, middle tier, store,
                     # and the kernel's loopback work charged to each
                     "machine_cpu_s_per_gib": statistics.median(machine) * GIB / self.large_size}
                self.results[(f"large_{method}", name)] = r
                say(f"{method} {self.a.large_mib} MiB {name:15s} {r['mbps']:7.0f} MB/s  "
                    f"({', '.join(f'{x:.0f}' for x in rates)})  "
                    f"cpu {r['cpu_s_per_gib']:.2f} s/GiB")

    def phase_profile(self):
        """perf record of s3tee during one more rate run per method and one large transfer
        each way; perf report's top symbols go next to the data."""
        specs = self.small_specs()
        url = self.targets["s3tee"][0]
        work = []
        for method in ("GET", "PUT"):
            path, _, spec, _ = specs[method]
            work.append((f"small-{method}", lambda p=path, s=spec: run_wrk(
                url + p, s, self.a.seconds, self.a.conns, 2)))
        for method in ("GET", "PUT"):
            path = f"/{BUCKET}/large-{method.lower()}"

            def large(m=method, p=path):
                h = sign(m, self.s3tee_host, p, "UNSIGNED-PAYLOAD")
                h.pop("Host")
                run_curl(m, url + p, h, self.large_src)
            work.append((f"large-{method}", large))
        for name, fn in work:
            data = self.a.profile_dir / f"perf-{name}.data"
            # DWARF unwinding: the distribution's libraries have no frame pointers
            rec = subprocess.Popen(["perf", "record", "--call-graph", "dwarf,16384", "-F",
                                    "499", "-o", str(data), "-p", str(self.proxy.pid)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(0.5)
            fn()
            rec.send_signal(signal.SIGINT)
            rec.wait(120)
            rep = subprocess.run(["perf", "report", "-i", str(data), "--no-children",
                                  "--stdio", "--percent-limit", "0.7", "-g", "none",
                                  "--sort", "dso,symbol"], capture_output=True, text=True)
            incl = subprocess.run(["perf", "report", "-i", str(data), "--children",
                                   "--stdio", "--percent-limit", "1", "-g", "none",
                                   "--sort", "symbol"], capture_output=True, text=True)
            out = self.a.profile_dir / f"perf-{name}.txt"
            out.write_text(rep.stdout)
            (self.a.profile_dir / f"perf-{name}-inclusive.txt").write_text(incl.stdout)
            say(f"profile of s3tee, {name}: {data}; self time by symbol in {out}, "
                f"inclusive in perf-{name}-inclusive.txt")
            lines = [x for x in rep.stdout.splitlines() if x.strip() and not x.startswith("#")]
            for x in lines[:12]:
                print(f"    {x.strip()}", file=sys.stderr)

    def run(self):
        t0 = time.monotonic()
        self.start()
        phases = [self.phase_rate]
        if not self.a.no_h2:
            phases.append(self.phase_h2)
        phases += [self.phase_latency, self.phase_large]
        if self.a.profile_dir:
            phases.append(self.phase_profile)
        for ph in phases:
            ph()
        self.check_alive()
        self.elapsed = time.monotonic() - t0
        self.cleanup_processes()

    def cleanup_processes(self):
        for n in reversed(self.procs):
            n.stop()
        self.procs = []

    # -- report

    def get(self, test, target, key):
        r = self.results.get((test, target))
        return None if r is None else r.get(key)

    def report(self):
        T = ["direct", "proxy_pass", "proxy_pass_buf", "s3tee"]
        rows = []  # (label, unit fmt, test, key, scale, higher_is_better)

        def row(label, test, key, fmt, scale=1.0):
            vals = [self.get(test, t, key) for t in T]
            vals = [None if v is None else v * scale for v in vals]
            d, pp, _, s = vals
            rp = f"{s / pp:.2f}" if s and pp else "-"
            rd = f"{s / d:.2f}" if s and d else "-"
            rows.append([label] + [("-" if v is None else fmt.format(v)) for v in vals]
                        + [rp, rd])

        c = self.a.conns
        row(f"GET 4 KiB, {c} conns, HTTP/1.1 (req/s)", "rate_GET", "rps", "{:.0f}")
        row(f"PUT 4 KiB, {c} conns, HTTP/1.1 (req/s)", "rate_PUT", "rps", "{:.0f}")
        if not self.a.no_h2:
            row(f"GET 4 KiB, {c} conns, h2c (req/s)", "h2_GET", "rps", "{:.0f}")
            row(f"PUT 4 KiB, {c} conns, h2c (req/s)", "h2_PUT", "rps", "{:.0f}")
        size = f"{self.a.large_mib // 1024} GiB" if self.a.large_mib % 1024 == 0 \
            else f"{self.a.large_mib} MiB"
        row(f"GET {size}, 1 stream (MB/s, median of {self.a.reps})", "large_GET", "mbps",
            "{:.0f}")
        row(f"PUT {size}, 1 stream (MB/s, median of {self.a.reps})", "large_PUT", "mbps",
            "{:.0f}")
        for m in ("GET", "PUT"):
            row(f"{m} 4 KiB, 1 conn, p50 (ms)", f"lat_{m}", "lat_p50_us", "{:.3f}", 1e-3)
            row(f"{m} 4 KiB, 1 conn, p99 (ms)", f"lat_{m}", "lat_p99_us", "{:.3f}", 1e-3)
        for m in ("GET", "PUT"):
            row(f"CPU per {m} at {c} conns (us; direct: the store)", f"rate_{m}",
                "cpu_us_per_req", "{:.1f}")
        for m in ("GET", "PUT"):
            # the same figure turned into a rate: what one core of the middle tier could
            # serve. Steadier than req/s when other jobs share the machine.
            for t in T:
                r = self.results.get((f"rate_{m}", t))
                if r is not None:
                    r["req_per_cpu_s"] = 1e6 / r["cpu_us_per_req"]
            row(f"{m} 4 KiB per CPU-second of the middle tier (req)", f"rate_{m}",
                "req_per_cpu_s", "{:.0f}")
        for m in ("GET", "PUT"):
            row(f"CPU per {size} {m} (s/GiB; direct: the store)", f"large_{m}",
                "cpu_s_per_gib", "{:.2f}")
        for m in ("GET", "PUT"):
            # with every process on the same cores, this bounds the rate: a path that needs
            # more CPU-seconds per GiB than the machine has cores cannot keep up with one
            # that needs fewer
            row(f"CPU per {size} {m}, whole machine (s/GiB: client + middle + store)",
                f"large_{m}", "machine_cpu_s_per_gib", "{:.2f}")

        head = ["measure", "direct", "proxy_pass", "proxy_pass buffered", "s3tee",
                "s3tee / proxy_pass", "s3tee / direct"]
        lines = ["| " + " | ".join(head) + " |",
                 "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in rows]

        added = []
        for m in ("GET", "PUT"):
            s = self.get(f"lat_{m}", "s3tee", "lat_p50_us")
            d = self.get(f"lat_{m}", "direct", "lat_p50_us")
            pp = self.get(f"lat_{m}", "proxy_pass", "lat_p50_us")
            s99 = self.get(f"lat_{m}", "s3tee", "lat_p99_us")
            d99 = self.get(f"lat_{m}", "direct", "lat_p99_us")
            pp99 = self.get(f"lat_{m}", "proxy_pass", "lat_p99_us")
            added.append((m, (s - d) / 1000, (s - pp) / 1000, (s99 - d99) / 1000,
                          (pp - d) / 1000, (pp99 - d99) / 1000))
        lines.append("")
        lines.append("| added latency, 1 conn (ms) | s3tee - direct | s3tee - proxy_pass "
                     "| proxy_pass - direct |")
        lines.append("|---|---:|---:|---:|")
        for m, sd, sp, sd99, pd, pd99 in added:
            lines.append(f"| {m} p50 | {sd:.3f} | {sp:.3f} | {pd:.3f} |")
        for m, sd, sp, sd99, pd, pd99 in added:
            lines.append(f"| {m} p99 | {sd99:.3f} | - | {pd99:.3f} |")

        checks = []

        def check(label, value, ok, want):
            checks.append(f"- {label}: {value} (target {want}): "
                          f"{'met' if ok else 'NOT met'}")

        for m in ("GET", "PUT"):
            s, pp = self.get(f"rate_{m}", "s3tee", "rps"), self.get(f"rate_{m}", "proxy_pass",
                                                                    "rps")
            check(f"{m} 4 KiB rate, s3tee / proxy_pass", f"{s / pp:.0%}",
                  s / pp >= TARGETS_RATE, f">= {TARGETS_RATE:.0%}")
        for m in ("GET", "PUT"):
            s, d = self.get(f"large_{m}", "s3tee", "mbps"), self.get(f"large_{m}", "direct",
                                                                     "mbps")
            check(f"{size} {m} throughput, s3tee / direct", f"{s / d:.0%}",
                  s / d >= TARGET_LARGE, f">= {TARGET_LARGE:.0%}")
        for m, sd, *_ in added:
            check(f"added p50 latency, {m}, s3tee - direct", f"{sd:.3f} ms",
                  sd < TARGET_ADDED_P50_MS, f"< {TARGET_ADDED_P50_MS} ms")

        busy = [self.get(f"rate_{m}", t, "machine_busy") for m in ("GET", "PUT") for t in T]
        busy = [b for b in busy if b is not None]
        other = max(self.get(f"rate_{m}", t, "other_load") or 0 for m in ("GET", "PUT")
                    for t in T)
        env = (f"{os.cpu_count()} CPUs ({_cpu_model()}), {_kernel()}, nginx {_nginx_version()}, "
               f"s3tee-proxy workers {self.a.workers}, access_log {self.a.access_log}; "
               f"client, proxies and store share the CPUs (machine busy "
               f"{min(busy):.0%}-{max(busy):.0%} during the rate runs, other jobs up to "
               f"{other:.0%} of it); rate figures are medians of {self.a.rounds} interleaved "
               f"rounds of {self.a.seconds} s; run took "
               f"{self.elapsed:.0f} s, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC")
        text = "\n".join(lines) + "\n\nTargets:\n" + "\n".join(checks) + "\n\n" + env + "\n"
        print(text, flush=True)
        if self.a.json:
            Path(self.a.json).write_text(json.dumps(
                {"results": {f"{k[0]}/{k[1]}": v for k, v in self.results.items()},
                 "table": text}, indent=1))
        return text


class _ProxyStopper:
    def __init__(self, proxy):
        self.proxy = proxy

    def __repr__(self):
        return repr(self.proxy)

    def stop(self):
        self.proxy.close(check=False)


def _cpu_model():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return " ".join(line.split(":", 1)[1].split())
    except OSError:
        pass
    return "?"


def _kernel():
    return "Linux " + os.uname().release


def _nginx_version():
    p = subprocess.run(["nginx", "-v"], capture_output=True, text=True)
    return p.stderr.strip().rsplit("/", 1)[-1]


def main(argv):
    ap = argparse.ArgumentParser(description="s3tee-proxy vs nginx benchmark (loopback)")
    ap.add_argument("--seconds", type=int, default=int(os.environ.get("BENCH_SECONDS", 4)),
                    help="length of each rate run (default 4)")
    ap.add_argument("--rounds", type=int, default=3,
                    help="interleaved rounds of the rate runs; the median counts (default 3)")
    ap.add_argument("--lat-seconds", type=int, default=4,
                    help="length of each 1-connection latency run (default 4)")
    ap.add_argument("--conns", type=int, default=64, help="connections for rate runs")
    ap.add_argument("--large-mib", type=int, default=1024, help="large object size (MiB)")
    ap.add_argument("--reps", type=int, default=3, help="large transfers per target (median)")
    ap.add_argument("--workers", type=int, default=2, help="s3tee-proxy workers (default 2)")
    ap.add_argument("--access-log", default="off",
                    help="s3tee access_log directive (default off, as nginx's here)")
    ap.add_argument("--no-h2", action="store_true", help="skip the h2load runs")
    ap.add_argument("--profile-dir", type=Path,
                    help="also perf record s3tee during a GET and a PUT rate run")
    ap.add_argument("--json", help="write raw results and the table to this file")
    ap.add_argument("--tmpfs", default="/dev/shm" if os.path.isdir("/dev/shm") else None,
                    help="where the store's files live (default /dev/shm)")
    a = ap.parse_args(argv)
    a.seconds, a.lat_seconds = max(1, a.seconds), max(1, a.lat_seconds)
    if a.profile_dir:
        if shutil.which("perf") is None:
            say("--profile-dir needs perf (apt-get install linux-perf)")
            return 2
        a.profile_dir = a.profile_dir.resolve()
        a.profile_dir.mkdir(parents=True, exist_ok=True)
    bed.install_signal_handlers()
    b = Bench(a)
    try:
        b.run()
    except (BenchError, bed.BedError) as e:
        say(f"FAILED: {e}")
        if os.environ.get("S3TEE_BENCH_KEEP") != "1":
            say("rerun with S3TEE_BENCH_KEEP=1 to keep the configs and logs")
        return 1
    b.report()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
