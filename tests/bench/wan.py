"""wan.py - replication across an emulated WAN (issue 4, "Benchmark"), in one run.

Two full sites (RGW store, Redis, s3tee-proxy, s3tee-replicator each; tests/bed/sites.py)
whose replicators reach each other through the userspace relays of tests/bed/wan.py, set
to 20 ms one way in each direction (40 ms RTT). Every figure has a baseline measured in the
same run, on the same machine:

 0. RTT. Signed HEADs at site b's proxy over one kept-alive TLS connection, through the a->b
    relay and directly; the difference of the medians is what the WAN adds per round trip.
    A replica write crosses the link once before site b applies it, so RTT / 2 is the floor
    of the replication lag.
 1. Lag. 4 KiB PUTs at site a at a steady rate (500/s) for --seconds: request i is due at
    t0 + i / rate, sent on one of 64 kept-alive connections in turn (pre-signed raw
    requests, so Python's cost per request stays small). When site a answers slower than
    64 / rate, the connections are all busy and the rate falls short: the run says so
    ("NOT sustained", with the share sent within 50 ms of schedule). Lag = the moment site
    b's proxy logged the replica PUT as done (access log, as repl.py) minus the moment the
    client at a had its acknowledgement. p50 / p99 / max, and the excess over the floor.
    Run twice: first with the relays adding no latency (the LAN baseline: what the
    machine costs), then with the 40 ms RTT; the ratio WAN / LAN is the WAN's share.
 2. Throughput. The relays capped at 100 Mbit/s (12.5e6 B/s; the cap is per connection
    and direction). 64 MiB objects PUT at site a (curl -T of a file on tmpfs), each alone;
    time = b's log of the replica PUT minus the client's acknowledgement. Baseline: the
    same file PUT by curl straight to site b's proxy through the same capped relay (a
    bucket with replication off, so nothing travels back), i.e. what one connection over
    that link carries with the same relay, TLS and store. And the relay alone: the file
    sent through a fresh relay with the same latency and cap to a sink that only counts
    (what the Python relay itself carries on this machine).
 3. Resync compare. N keys (100,000; --quick 10,000) with identical small bodies written
    directly into both stores (around s3tee: no replication traffic), then
    `s3tee resync --dry-run` at site a against peer b, whose listing crosses the WAN.
    Baseline: a plain paged ListObjectsV2 (1,000 keys a page, as resync) of a's store and
    of b's proxy through the relay, one after the other (resync also lists one page at a
    time).

Not a pass/fail test: the targets (lag figures reported; >= 90% of the cap; resync < 60 s)
are marked met / not met. Exit status non-zero only when the benchmark itself broke.

    /usr/bin/python3 tests/bench/wan.py [--quick] [--seconds 20] [--rate 500] [--keys 100000]
"""

import argparse
import datetime
import hashlib
import hmac
import json
import os
import re
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import quote

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR.parent / "bed"))
import bed  # noqa: E402
import sites as sitesmod  # noqa: E402
import wan as wanlink  # noqa: E402  (tests/bed/wan.py: the bed's dir comes first on the path)

ONE_WAY_S = 0.020            # per direction: 40 ms RTT
CAP_BPS = 12_500_000         # 100 Mbit/s in bytes per second
TARGET_CAP_RATIO = 0.90
TARGET_RESYNC_S = 60.0
SMALL = 4096
LARGE = 64 << 20
CLIENT = ("AKIDCLIENT", "secretclient")
REGION = "us-east-1"
LAG_CONNS = 64
FILL_CONNS = 16              # per store


class BenchError(Exception):
    pass


def say(msg):
    print(f"wan-bench: {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------
# SigV4 by hand: botocore's signer costs ~150 us a request, too much for 200,000 PUTs.
# Header-signed, path-style, x-amz-content-sha256 given (a body hash or UNSIGNED-PAYLOAD).

_keys = {}


def _signing_key(secret, day):
    k = _keys.get((secret, day))
    if k is None:
        k = ("AWS4" + secret).encode()
        for part in (day, REGION, "s3", "aws4_request"):
            k = hmac.new(k, part.encode(), hashlib.sha256).digest()
        _keys[(secret, day)] = k
    return k


def _enc(s, safe="-_.~"):
    return quote(s, safe=safe)


def sign(method, host, path, key, payload_sha, query=None):
    """Request line target and headers (dict) for METHOD host path?query, signed with key
    (access key, secret)."""
    now = datetime.datetime.now(datetime.timezone.utc)
    amz, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    cpath = _enc(path, "/-_.~")
    cq = "&".join(f"{_enc(k)}={_enc(v)}" for k, v in sorted((query or {}).items()))
    creq = (f"{method}\n{cpath}\n{cq}\nhost:{host}\nx-amz-content-sha256:{payload_sha}\n"
            f"x-amz-date:{amz}\n\nhost;x-amz-content-sha256;x-amz-date\n{payload_sha}")
    scope = f"{day}/{REGION}/s3/aws4_request"
    sts = f"AWS4-HMAC-SHA256\n{amz}\n{scope}\n{hashlib.sha256(creq.encode()).hexdigest()}"
    sig = hmac.new(_signing_key(key[1], day), sts.encode(), hashlib.sha256).hexdigest()
    target = cpath + (f"?{cq}" if cq else "")
    return target, {
        "Host": host, "x-amz-date": amz, "x-amz-content-sha256": payload_sha,
        "Authorization": f"AWS4-HMAC-SHA256 Credential={key[0]}/{scope}, "
                         f"SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature={sig}"}


def raw_request(method, host, path, key, body=b"", query=None):
    sha = hashlib.sha256(body).hexdigest()
    target, h = sign(method, host, path, key, sha, query)
    h["Content-Length"] = str(len(body))
    head = f"{method} {target} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in h.items())
    return head.encode() + b"\r\n" + body


class Conn:
    """One kept-alive HTTP/1.1 connection sending pre-formatted requests (reconnects when
    the server closed it)."""

    def __init__(self, port, ca=None):
        self.port, self.ca = port, ca
        self.sock = self.f = None

    def _connect(self):
        s = socket.create_connection(("127.0.0.1", self.port), timeout=60)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.ca:
            s = ssl.create_default_context(cafile=self.ca).wrap_socket(
                s, server_hostname="127.0.0.1")
        self.sock, self.f = s, s.makefile("rb", buffering=65536)

    def close(self):
        for x in (self.f, self.sock):
            if x is not None:
                try:
                    x.close()
                except OSError:
                    pass
        self.sock = self.f = None

    def request(self, data, head=False):
        """(status, headers, body); one retry on a fresh connection if a kept-alive one
        was closed under us before any answer."""
        for attempt in (0, 1):
            if self.sock is None:
                self._connect()
            try:
                self.sock.sendall(data)
                line = self.f.readline()
                if not line:
                    raise ConnectionError("closed")
            except (ConnectionError, BrokenPipeError, ssl.SSLError):
                self.close()
                if attempt:
                    raise
                continue
            break
        status = int(line.split()[1])
        hdrs = {}
        while True:
            ln = self.f.readline()
            if ln in (b"\r\n", b"\n", b""):
                break
            k, _, v = ln.decode("latin-1").partition(":")
            hdrs[k.strip().lower()] = v.strip()
        body = b""
        if not head:
            if hdrs.get("transfer-encoding", "").lower() == "chunked":
                parts = []
                while True:
                    n = int(self.f.readline().split(b";")[0], 16)
                    if n == 0:
                        while self.f.readline() not in (b"\r\n", b"\n", b""):
                            pass
                        break
                    parts.append(self.f.read(n))
                    self.f.readline()
                body = b"".join(parts)
            elif "content-length" in hdrs:
                body = self.f.read(int(hdrs["content-length"]))
        if hdrs.get("connection", "").lower() == "close":
            self.close()
        return status, hdrs, body


# ---------------------------------------------------------------------------------------
# helpers

def access_entries(proxy):
    text = Path(proxy.access_log).read_text()
    if not text.endswith("\n"):
        text = text[:text.rfind("\n") + 1]
    return [json.loads(x) for x in text.splitlines() if x.strip()]


def utc_ms(ts):
    dt = datetime.datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ")
    return (dt - datetime.datetime(1970, 1, 1)).total_seconds() * 1000.0


def pct(values, p):
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100.0 * (len(s) - 1))))]


def replica_puts(proxy, bucket):
    """key -> time (ms) site b's proxy logged a successful replica PUT of it."""
    out = {}
    for e in access_entries(proxy):
        if e.get("bucket") == bucket and e.get("method") == "PUT" and e.get("status") == 200 \
                and str(e.get("access_key", "")).startswith("AKSITE"):
            out.setdefault(e["key"], utc_ms(e["time"]))
    return out


def make_bucket(site_store, bucket):
    c = Conn(int(site_store.url.rsplit(":", 1)[1]))
    try:
        st, _, body = c.request(raw_request("PUT", f"127.0.0.1:{c.port}", f"/{bucket}",
                                            (site_store.access_key, site_store.secret)))
    finally:
        c.close()
    if st != 200 and b"BucketAlreadyOwnedByYou" not in body:
        raise BenchError(f"create bucket {bucket} at {site_store.url}: {st} {body[:200]!r}")


def machine_load():
    return os.getloadavg()[0]


# ---------------------------------------------------------------------------------------
# 0. RTT through the relay

def rtt(d, n):
    b = d["b"]
    make_bucket(b.store, "rtt")
    out = {}
    for name, port in (("direct", b.proxy.tls_port), ("relay", d.wan[("a", "b")].port)):
        c = Conn(port, ca=str(bed.tls_files().ca))
        host = f"127.0.0.1:{port}"
        times = []
        try:
            for i in range(n + 3):
                req = raw_request("HEAD", host, "/rtt", CLIENT)
                t0 = time.perf_counter()
                st, _, _ = c.request(req, head=True)
                dt = (time.perf_counter() - t0) * 1000.0
                if st != 200:
                    raise BenchError(f"rtt: HEAD /rtt at b ({name}) answered {st}")
                if i >= 3:                 # the first ones pay for the TLS handshake
                    times.append(dt)
        finally:
            c.close()
        out[name] = statistics.median(times)
    out["rtt_ms"] = out["relay"] - out["direct"]
    say(f"rtt: HEAD at b direct {out['direct']:.2f} ms, through the relay {out['relay']:.2f} ms: "
        f"the WAN adds {out['rtt_ms']:.1f} ms per round trip")
    return out


# ---------------------------------------------------------------------------------------
# 1. lag at a steady rate

def lag(d, bucket, rate, seconds):
    a, b = d["a"], d["b"]
    for s in (a, b):
        make_bucket(s.store, bucket)
    host = f"127.0.0.1:{a.proxy.port}"
    body = (b"wan lag " * 512)[:SMALL]
    total = int(rate * seconds)
    say(f"lag: signing {total} PUTs")
    reqs = [raw_request("PUT", host, f"/{bucket}/k{i:07d}", CLIENT, body) for i in range(total)]
    warm = [raw_request("PUT", host, f"/{bucket}/warm{i:03d}", CLIENT, body) for i in range(64)]
    acks = [0.0] * total
    late = [0.0] * total
    put_ms = [0.0] * total
    errors = []
    conns = [Conn(a.proxy.port) for _ in range(LAG_CONNS)]

    # warm-up, not counted: opens every connection here and the replicator's to b
    for i, r in enumerate(warm):
        st, _, _ = conns[i % LAG_CONNS].request(r)
        if st != 200:
            raise BenchError(f"lag: warm-up PUT answered {st}")
    if not d.wait_drained(60):
        raise BenchError("lag: the warm-up did not drain in 60 s")
    interval = 1.0 / rate
    t0 = time.monotonic() + 0.2
    wall0 = time.time() - time.monotonic()    # monotonic -> epoch seconds

    def sender(tid):
        c = conns[tid]
        try:
            for i in range(tid, total, LAG_CONNS):
                due = t0 + i * interval
                now = time.monotonic()
                if due > now:
                    time.sleep(due - now)
                    now = time.monotonic()
                late[i] = (now - due) * 1000.0
                st, _, rb = c.request(reqs[i])
                done = time.monotonic()
                acks[i] = (done + wall0) * 1000.0
                put_ms[i] = (done - now) * 1000.0
                if st != 200:
                    errors.append(f"k{i:07d}: {st} {rb[:200]!r}")
                    return
        except Exception as e:  # reported below; the other senders go on
            errors.append(f"sender {tid}: {e!r}")
        finally:
            c.close()

    load0 = machine_load()
    threads = [threading.Thread(target=sender, args=(t,)) for t in range(LAG_CONNS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = (max(acks) / 1000.0 - wall0) - t0
    if errors:
        raise BenchError(f"lag: {len(errors)} PUTs failed, e.g. {errors[:3]}")
    say(f"lag: {total} PUTs sent in {elapsed:.1f} s ({total / elapsed:.0f}/s); waiting for b")
    if not d.wait_drained(180):
        raise BenchError("lag: site a's backlog did not drain in 180 s")
    time.sleep(0.3)
    applied = replica_puts(b.proxy, bucket)
    keys = [f"k{i:07d}" for i in range(total)]
    missing = [k for k in keys if k not in applied]
    if missing:
        raise BenchError(f"lag: {len(missing)} objects never applied at b, e.g. {missing[:3]}")
    lags = [applied[k] - acks[i] for i, k in enumerate(keys)]
    worst = sorted(range(total), key=lambda i: lags[i])[-3:]
    say("lag: slowest " + ", ".join(f"{keys[i]} {lags[i]:.0f} ms" for i in worst))
    # sustained: the generator kept its schedule (nearly every request left on time) and
    # the whole run took no longer than planned plus a little
    on_time = sum(1 for x in late if x <= 50.0) / total
    span = (max(applied[k] for k in keys) - min(applied[k] for k in keys)) / 1000.0
    got, target = total / elapsed, rate
    return {"puts": total, "target_rate": target, "rate": got, "elapsed_s": elapsed,
            "send_late_p99_ms": pct(late, 99), "put_p50_ms": pct(put_ms, 50),
            "put_p99_ms": pct(put_ms, 99), "sent_on_time": on_time,
            "sustained": got >= 0.95 * target and on_time >= 0.95,
            "p50_ms": pct(lags, 50), "p99_ms": pct(lags, 99), "max_ms": max(lags),
            "min_ms": min(lags), "applied_rate": total / span if span > 0 else 0.0,
            "load_before": load0, "load_after": machine_load()}


# ---------------------------------------------------------------------------------------
# 2. throughput of 64 MiB objects against the cap

def curl_put(url, path, key, src, ca=None):
    host = url.split("//", 1)[1]
    target, h = sign("PUT", host, path, key, "UNSIGNED-PAYLOAD")
    cmd = ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{time_total}", "-T", str(src),
           "-H", "Expect:"]
    if ca:
        cmd += ["--cacert", ca]
    for k, v in h.items():
        cmd += ["-H", f"{k}: {v}"]
    p = subprocess.run(cmd + [url + target], capture_output=True, text=True, timeout=600)
    fields = p.stdout.split()
    if p.returncode != 0 or len(fields) != 2 or fields[0] != "200":
        raise BenchError(f"curl PUT {url}{path}: rc {p.returncode} {p.stdout} {p.stderr}")
    return float(fields[1])


def raw_relay(src):
    """Seconds to carry the file through a fresh Relay with the bench's latency and cap to a
    sink that only counts (no TLS, no proxy, no store), until the sink's answer is back."""
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(1)
    got = [0]

    def sink():
        c, _ = lsock.accept()
        with c:
            while True:
                b = c.recv(1 << 16)
                if not b:
                    break
                got[0] += len(b)
            c.sendall(b"ok")

    t = threading.Thread(target=sink)
    t.start()
    relay = wanlink.Relay(lsock.getsockname()[1], name="raw").start()
    try:
        relay.set(latency=ONE_WAY_S, bandwidth=CAP_BPS)
        t0 = time.monotonic()
        with socket.create_connection(("127.0.0.1", relay.port)) as c, open(src, "rb") as f:
            c.sendfile(f)
            c.shutdown(socket.SHUT_WR)
            answer = c.recv(16)
        took = time.monotonic() - t0
    finally:
        relay.stop()
        t.join(30)
        lsock.close()
    if answer != b"ok" or got[0] != LARGE:
        raise BenchError(f"raw relay transfer: sink got {got[0]} bytes, answered {answer!r}")
    return took


def throughput(args, d, base):
    a, b = d["a"], d["b"]
    for s in (a, b):
        make_bucket(s.store, "thr")
    make_bucket(b.store, "wanbase")            # replication off (proxy directive)
    src = base / "large.bin"
    with open(src, "wb") as f:                 # 1 MiB at a time: never 64 MiB in memory
        for _ in range(LARGE >> 20):
            f.write(os.urandom(1 << 20))
    raw_s = [raw_relay(src) for _ in range(args.large_objects)]
    say("throughput: raw bytes through a relay alone " +
        ", ".join(f"{t:.2f} s ({LARGE / t / 1e6:.2f} MB/s)" for t in raw_s))
    d.wan.set(bandwidth=CAP_BPS)
    try:
        # baseline: one client connection through the same relay, same TLS, proxy, store
        base_s = []
        for i in range(args.large_objects):
            t = curl_put(f"https://127.0.0.1:{d.wan[('a', 'b')].port}", f"/wanbase/o{i}", CLIENT,
                         src, ca=str(bed.tls_files().ca))
            base_s.append(t)
            say(f"throughput: baseline PUT {i + 1} through the relay {t:.2f} s "
                f"({LARGE / t / 1e6:.2f} MB/s)")
        rep_s = []
        for i in range(args.large_objects):
            key = f"o{i}"
            curl_put(a.proxy.url, f"/thr/{key}", CLIENT, src)
            ack = time.time() * 1000.0
            deadline = time.time() + 120
            while True:
                applied = replica_puts(b.proxy, "thr")
                if key in applied:
                    break
                if time.time() > deadline:
                    raise BenchError(f"throughput: thr/{key} not applied at b in 120 s")
                time.sleep(0.05)
            t = (applied[key] - ack) / 1000.0
            rep_s.append(t)
            say(f"throughput: replica {i + 1} readable at b {t:.2f} s after the ack "
                f"({LARGE / t / 1e6:.2f} MB/s)")
            if not d.wait_drained(60):
                raise BenchError("throughput: backlog did not drain")
    finally:
        d.wan.set(bandwidth=None)
        src.unlink()
    rep, bas = statistics.median(rep_s), statistics.median(base_s)
    raw = statistics.median(raw_s)
    return {"raw_s": raw_s, "raw_Bps": LARGE / raw, "raw_ratio_cap": LARGE / raw / CAP_BPS,
            "ratio_raw": raw / rep,
            "objects": args.large_objects, "replica_s": rep_s, "baseline_s": base_s,
            "replica_Bps": LARGE / rep, "baseline_Bps": LARGE / bas,
            "ratio_cap": LARGE / rep / CAP_BPS, "baseline_ratio_cap": LARGE / bas / CAP_BPS,
            "ratio_baseline": bas / rep, "counters": d.wan.counters()}


# ---------------------------------------------------------------------------------------
# 3. resync compare of two identical sites

def fill(store, bucket, n):
    """n keys with the same small body straight into one store, FILL_CONNS at once."""
    port = int(store.url.rsplit(":", 1)[1])
    host = f"127.0.0.1:{port}"
    key = (store.access_key, store.secret)
    body = b"identical\n"
    errors = []

    def worker(tid):
        c = Conn(port)
        try:
            for i in range(tid, n, FILL_CONNS):
                st, _, rb = c.request(raw_request("PUT", host, f"/{bucket}/r{i:07d}", key, body))
                if st != 200:
                    errors.append(f"r{i:07d}: {st} {rb[:200]!r}")
                    return
        except Exception as e:
            errors.append(repr(e))
        finally:
            c.close()

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(FILL_CONNS)]
    for t in threads:
        t.start()
    return threads, errors


def list_all(port, key, bucket, ca=None):
    """Paged ListObjectsV2 (1,000 a page) of bucket at 127.0.0.1:port: (keys, pages)."""
    c = Conn(port, ca=ca)
    host = f"127.0.0.1:{port}"
    keys = pages = 0
    token = None
    try:
        while True:
            q = {"list-type": "2", "max-keys": "1000"}
            if token:
                q["continuation-token"] = token
            st, _, body = c.request(raw_request("GET", host, f"/{bucket}", key, query=q))
            if st != 200:
                raise BenchError(f"list {bucket} at :{port}: {st} {body[:200]!r}")
            pages += 1
            keys += body.count(b"<Key>")
            m = re.search(rb"<NextContinuationToken>([^<]*)</NextContinuationToken>", body)
            if m is None or b"<IsTruncated>true</IsTruncated>" not in body:
                return keys, pages
            token = m.group(1).decode().replace("&amp;", "&")
    finally:
        c.close()


def resync(args, d):
    a, b = d["a"], d["b"]
    for s in (a, b):
        make_bucket(s.store, "rsync")
    n = args.keys
    say(f"resync: writing {n} identical keys into each store")
    t0 = time.monotonic()
    work = [fill(s.store, "rsync", n) for s in (a, b)]
    for threads, errors in work:
        for t in threads:
            t.join()
        if errors:
            raise BenchError(f"resync: filling the stores failed: {errors[:3]}")
    fill_s = time.monotonic() - t0
    say(f"resync: filled in {fill_s:.1f} s ({2 * n / fill_s:.0f} PUT/s to the two stores)")

    ca = str(bed.tls_files().ca)
    t0 = time.monotonic()
    ka, pa = list_all(int(a.store.url.rsplit(":", 1)[1]), (a.store.access_key, a.store.secret), "rsync")
    la = time.monotonic() - t0
    t0 = time.monotonic()
    kb, pb = list_all(d.wan[("a", "b")].port, sitesmod._site_key("a", "b"), "rsync", ca=ca)
    lb = time.monotonic() - t0
    if ka != n or kb != n:
        raise BenchError(f"resync: listed {ka} keys at a and {kb} at b, wrote {n}")
    say(f"resync: baseline listing a's store {la:.1f} s ({pa} pages), b's proxy over the WAN "
        f"{lb:.1f} s ({pb} pages)")

    argv = [str(bed.build_dir() / "s3tee"), "resync", "-c", str(a.replicator.conf_path),
            "--bucket", "rsync", "--peer", "b", "--dry-run"]
    env = dict(os.environ)
    env.update(bed.SANITIZER_ENV)
    t0 = time.monotonic()
    p = subprocess.run(argv, capture_output=True, text=True, timeout=900, env=env)
    rs_s = time.monotonic() - t0
    lines = p.stdout.strip().splitlines()
    if p.returncode != 0 or not lines:
        raise BenchError(f"resync failed ({p.returncode}): {p.stdout[-1000:]} {p.stderr[-2000:]}")
    summary = {k: int(v) for k, v in (kv.split("=") for kv in lines[-1].split())}
    if summary.get("checked") != n or len(lines) != 1 or summary.get("errors"):
        raise BenchError(f"resync: expected {n} keys in sync, got {lines[-3:]}")
    say(f"resync --dry-run: {rs_s:.1f} s, {summary}")
    return {"keys": n, "fill_s": fill_s, "list_a_s": la, "list_b_wan_s": lb, "pages": pa + pb,
            "list_s": la + lb, "resync_s": rs_s, "ratio": rs_s / (la + lb), "summary": summary}


# ---------------------------------------------------------------------------------------

def lag_rows(rows, r, rl, floor):
    rows.append((f"lag a->b, 4 KiB PUTs at {r['rate']:.0f}/s (target {r['target_rate']:.0f}/s"
                 f"{'' if r['sustained'] else ', NOT sustained'}), {r['puts']} PUTs: "
                 "p50 / p99 / max",
                 f"{r['p50_ms']:.1f} / {r['p99_ms']:.1f} / {r['max_ms']:.1f} ms",
                 f"floor RTT/2 = {floor:.1f} ms",
                 f"excess {r['p50_ms'] - floor:.1f} / {r['p99_ms'] - floor:.1f} ms; "
                 f"x{r['p50_ms'] / floor:.2f} / x{r['p99_ms'] / floor:.2f} the floor", "-"))
    rows.append((f"same at {rl['target_rate']:.0f}/s, relays adding no latency (LAN baseline, "
                 f"sent at {rl['rate']:.0f}/s): p50 / p99 / max",
                 f"{rl['p50_ms']:.1f} / {rl['p99_ms']:.1f} / {rl['max_ms']:.1f} ms", "-",
                 f"WAN / LAN: x{r['p50_ms'] / rl['p50_ms']:.2f} / x{r['p99_ms'] / rl['p99_ms']:.2f}"
                 f"; WAN - LAN: {r['p50_ms'] - rl['p50_ms']:.1f} / {r['p99_ms'] - rl['p99_ms']:.1f} ms",
                 "-"))
    rows.append((f"at {r['target_rate']:.0f}/s: replica PUTs applied at b per second, WAN / LAN",
                 f"{r['applied_rate']:.0f} / {rl['applied_rate']:.0f}", "-", "-", "-"))
    rows.append((f"at {r['target_rate']:.0f}/s: client PUT at a (local), p50 / p99, WAN run; LAN run",
                 f"{r['put_p50_ms']:.1f} / {r['put_p99_ms']:.1f} ms; {rl['put_p50_ms']:.1f} / "
                 f"{rl['put_p99_ms']:.1f} ms", "-", "-", "-"))


def report(res, args):
    rows = []
    r0 = res.get("rtt")
    if r0:
        rows.append((f"RTT added by the relay (HEAD at b, median of {args.rtt_heads})",
                     f"{r0['rtt_ms']:.1f} ms", f"direct {r0['direct']:.2f} ms, relay "
                     f"{r0['relay']:.2f} ms", f"{2 * ONE_WAY_S * 1000:.0f} ms set", "-"))
    floor = (r0["rtt_ms"] / 2) if r0 else ONE_WAY_S * 1000
    for name in ("", "_light"):
        r, rl = res.get(f"lag{name}"), res.get(f"lag_lan{name}")
        if r:
            lag_rows(rows, r, rl, floor)
    r = res.get("throughput")
    if r:
        rows.append((f"64 MiB replica a->b, cap 100 Mbit/s (median of {r['objects']})",
                     f"{r['replica_Bps'] / 1e6:.2f} MB/s",
                     f"client PUT over the same link {r['baseline_Bps'] / 1e6:.2f} MB/s "
                     f"({r['baseline_ratio_cap']:.2f} of the cap)",
                     f"{r['ratio_cap']:.2f} of the cap, {r['ratio_baseline']:.2f} of the baseline",
                     "met" if r["ratio_cap"] >= TARGET_CAP_RATIO else "NOT met"))
        rows.append(("raw bytes through a relay alone, same latency and cap (median)",
                     f"{r['raw_Bps'] / 1e6:.2f} MB/s", "-",
                     f"{r['raw_ratio_cap']:.2f} of the cap; the replica is {r['ratio_raw']:.2f} "
                     "of it", "-"))
    r = res.get("resync")
    if r:
        rows.append((f"resync --dry-run, {r['keys']} identical keys",
                     f"{r['resync_s']:.1f} s",
                     f"listing both {r['list_s']:.1f} s (a {r['list_a_s']:.1f} + b over WAN "
                     f"{r['list_b_wan_s']:.1f}, {r['pages']} pages)",
                     f"x{r['ratio']:.2f} the listing",
                     "met" if r["resync_s"] < TARGET_RESYNC_S else "NOT met"))
    print()
    print("| measure | figure | baseline (same run) | ratio | target |")
    print("|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print()
    print("Targets:")
    for name in ("", "_light"):
        r = res.get(f"lag{name}")
        if not r:
            continue
        print(f"- lag at {r['target_rate']:.0f} PUT/s: p50 {r['p50_ms']:.1f} ms, p99 "
              f"{r['p99_ms']:.1f} ms (reported, no threshold); rate "
              + ("sustained" if r["sustained"] else
                 f"NOT sustained by the load generator ({r['rate']:.0f}/s, "
                 f"{100 * r['sent_on_time']:.0f}% sent within 50 ms of schedule; site a "
                 f"answered in {r['put_p50_ms']:.0f} ms at p50, so {LAG_CONNS} connections "
                 f"carry about {LAG_CONNS * 1000 / r['put_p50_ms']:.0f}/s)"))
    r = res.get("throughput")
    if r:
        print(f"- 64 MiB replication >= {TARGET_CAP_RATIO:.0%} of 100 Mbit/s: "
              f"{r['ratio_cap']:.0%}: {'met' if r['ratio_cap'] >= TARGET_CAP_RATIO else 'NOT met'}")
    r = res.get("resync")
    if r:
        print(f"- resync compare of {r['keys']} keys < {TARGET_RESYNC_S:.0f} s: "
              f"{r['resync_s']:.1f} s: {'met' if r['resync_s'] < TARGET_RESYNC_S else 'NOT met'}"
              + ("" if r["keys"] >= 100000 else " (fewer keys than the target's 100,000)"))
    print(f"Machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end.")


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="smaller run: 5 s of lag, 2 large objects, 10,000 keys")
    ap.add_argument("--seconds", type=float, help="length of the lag run (default 20)")
    ap.add_argument("--rate", type=float, default=500.0, help="PUT/s at site a in the lag run")
    ap.add_argument("--light-rate", type=float, default=50.0,
                    help="PUT/s of a second, light lag run (0: none)")
    ap.add_argument("--light-seconds", type=float, default=5.0)
    ap.add_argument("--large-objects", type=int, help="64 MiB objects (default 3)")
    ap.add_argument("--keys", type=int, help="keys for the resync compare (default 100000)")
    ap.add_argument("--rtt-heads", type=int, default=30)
    ap.add_argument("--skip", action="append", default=[], choices=["lag", "throughput", "resync"])
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args(argv)
    if args.seconds is None:
        args.seconds = 5.0 if args.quick else 20.0
    if args.large_objects is None:
        args.large_objects = 2 if args.quick else 3
    if args.keys is None:
        args.keys = 10000 if args.quick else 100000
    if subprocess.run(["sh", "-c", "command -v curl"], capture_output=True).returncode:
        say("missing curl: run deploy/install-deps.sh")
        return 2
    res = {}
    base = Path(tempfile.mkdtemp(prefix="s3tee-wan-bench-", dir="/dev/shm"))
    try:
        # loopback: the published figures were measured there (namespaces add the veths)
        d = sitesmod.Deployment(["a", "b"], wan=True, netns=False,
                                proxy_directives={"log_level": "warn",
                                                  "bucket_replication": "wanbase off"},
                                replicator_directives={"log_level": "warn"}).start()
        try:
            d.wan.set(latency=ONE_WAY_S)
            res["rtt"] = rtt(d, args.rtt_heads)
            if "lag" not in args.skip:
                # the same run with the relays adding nothing: what the machine itself
                # costs, so the WAN's share shows
                for name, rate, secs in (("", args.rate, args.seconds),
                                         ("_light", args.light_rate, args.light_seconds)):
                    if rate <= 0:
                        continue
                    d.wan.set(latency=0.0)
                    res[f"lag_lan{name}"] = lag(d, f"lag0{name[1:]}", rate, secs)
                    d.wan.set(latency=ONE_WAY_S)
                    res[f"lag{name}"] = lag(d, f"lag{name[1:]}", rate, secs)
            if "throughput" not in args.skip:
                res["throughput"] = throughput(args, d, base)
            if "resync" not in args.skip:
                res["resync"] = resync(args, d)
        finally:
            d.stop()
    except BenchError as e:
        say(f"FAILED: {e}")
        return 1
    finally:
        subprocess.run(["rm", "-rf", str(base)])
    report(res, args)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
