"""Abuse limits (issue 5, part 4): each case drives one limit past its edge, checks the
answer the abusive client gets, and keeps a well-behaved client (lib.rawhttp over its own
kept-alive connection, in a thread) served while it happens. The heavy cases read the
proxy's peak RSS (VmHWM) and assert a bound.

Short timeouts and small limits come from make_proxy directives, so the whole file runs in
about a minute. S3TEE_ABUSE_FULL=1 runs the multipart case with the full 10,000 parts.

test_30_hardening.py has the rest: slowloris heads, stalled bodies, idle and over-limit
connections, a paused reader; test_16_http2.py the well-behaved HTTP/2 clients.
"""

import os
import resource
import select
import socket
import struct
import threading
import time

import pytest

import bed
from lib import awsv4, logscan, s3util
from lib.rawhttp import RawConn, RawS3, build

CLIENT = ("AKIDT31ABUSE", "Ab7vT31abuseSecretNeverLogged0xFEEDF00D")
PROBE = b"probe: a well-behaved client is served\n"
FULL = os.environ.get("S3TEE_ABUSE_FULL") == "1"


@pytest.fixture
def pbucket(bucket, store_s3):
    store_s3.put_object(Bucket=bucket, Key="probe", Body=PROBE)
    return bucket


def client(p, keys=CLIENT, tls=False):
    return RawS3.of(p, tls=tls, access_key=keys[0], secret=keys[1])


def assert_error(r, status, code):
    assert (r.status, r.code) == (status, code), r
    assert r.header("content-type") == "application/xml", r


class Served:
    """A well-behaved client in a thread: signed GETs of 'probe' on one kept-alive
    connection, one every 50 ms, until stop(). stop() asserts that every one was answered
    right, that there were at least MINIMUM of them (it waits for them), and that none took longer than SLOWEST."""

    def __init__(self, p, bucket, slowest=1.0, minimum=3):
        self.p, self.bucket, self.slowest, self.minimum = p, bucket, slowest, minimum
        self.n, self.worst, self.errors = 0, 0.0, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        deadline = time.monotonic() + 10
        while self.n < self.minimum and time.monotonic() < deadline and exc[0] is None:
            time.sleep(0.05)
        self._stop.set()
        self._thread.join(30)
        if exc[0] is None:
            self.check()

    def _run(self):
        c = client(self.p)
        try:
            while not self._stop.is_set():
                t0 = time.monotonic()
                try:
                    r = c.request("GET", f"/{self.bucket}/probe")
                    if r.status != 200 or r.body != PROBE:
                        self.errors.append(repr(r))
                except Exception as e:  # reported by check()
                    self.errors.append(repr(e))
                    c.close()
                self.worst = max(self.worst, time.monotonic() - t0)
                self.n += 1
                self._stop.wait(0.05)
        finally:
            c.close()

    def check(self):
        assert self.errors == [], self.errors[:5]
        assert self.n >= self.minimum, f"only {self.n} requests served"
        assert self.worst < self.slowest, \
            f"a well-behaved request took {self.worst:.2f}s meanwhile"


def raise_nofile(need):
    """Soft RLIMIT_NOFILE of this process (and the proxies it starts) up to NEED."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        if hard != resource.RLIM_INFINITY and hard < need:
            pytest.skip(f"RLIMIT_NOFILE hard limit {hard} < {need}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
    return soft, hard


def open_idle(port, n, batch=500):
    """N connected sockets that never send a byte (non-blocking connects, in batches so
    the listen backlog never overflows; poll, not select: the fds pass FD_SETSIZE)."""
    socks = []
    while len(socks) < n:
        pending = {}
        poller = select.poll()
        for _ in range(min(batch, n - len(socks))):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
            pending[s.fileno()] = s
            poller.register(s, select.POLLOUT)
        deadline = time.monotonic() + 10
        waiting = dict(pending)
        while waiting and time.monotonic() < deadline:
            for fd, _ in poller.poll(1000):
                s = waiting.pop(fd, None)
                if s is None:
                    continue
                poller.unregister(fd)
                err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                assert err == 0, os.strerror(err)
        assert not waiting, f"{len(waiting)} connects did not complete"
        socks.extend(pending.values())
    return socks


def count_closed(socks, wait=0.0):
    """How many of SOCKS the server has closed (EOF or reset), waiting up to WAIT s."""
    closed = 0
    deadline = time.monotonic() + wait
    left = {s.fileno(): s for s in socks}
    poller = select.poll()
    for fd in left:
        poller.register(fd, select.POLLIN)
    while left:
        timeout = max(0.0, deadline - time.monotonic())
        events = poller.poll(int(timeout * 1000))
        if not events:
            break
        for fd, _ in events:
            s = left.get(fd)
            if s is None:
                continue
            try:
                gone = s.recv(1 << 12) == b""
            except BlockingIOError:
                continue
            except OSError:
                gone = True
            if gone:
                closed += 1
                poller.unregister(fd)
                del left[fd]
    return closed


# ---------------------------------------------------------------------------------------
# connections

@pytest.mark.timeout(90)
def test_10000_idle_connections(make_proxy, pbucket):
    """10,000 connections that never send a byte, with max_connections 10,010: all are
    held, a well-behaved client is served meanwhile, connections past the limit are closed
    at once, the proxy stays under 64 MiB, and client_header_timeout (4s) closes all 10,000."""
    n, limit = 10000, 10010
    raise_nofile(n + 1000)
    p = make_proxy(clients=[(*CLIENT, "*")], max_connections=limit, workers=1,
                   client_header_timeout="4s", client_idle_timeout="60s", log_level="info")
    time.sleep(0.2)                     # bed.Proxy.start()'s readiness probes are gone
    good = client(p)
    good_conn = good.connect()
    r = good.request("GET", f"/{pbucket}/probe", conn=good_conn)
    assert r.status == 200, r
    rss0 = p.rss_kb()
    t0 = time.monotonic()
    with Served(p, pbucket, slowest=1.5):
        idle = open_idle(p.port, n)
        opened = time.monotonic() - t0
        # the Served thread holds one more connection: 10,002 in use, 8 left
        extra = [RawConn("127.0.0.1", p.port, timeout=5) for _ in range(12)]
        kept = [c for c in extra if not c.closed_within(0.3)]
        assert len(kept) == limit - n - 2, f"{len(kept)} of 12 past 10,002 were kept"
        r = good.request("GET", f"/{pbucket}/probe", conn=good_conn)
        assert r.status == 200 and r.body == PROBE, r
        assert count_closed(idle) == 0, "idle connections closed before the header timeout"
        rss = p.rss_kb()
    grown = rss - rss0
    print(f"10,000 idle: opened in {opened:.1f}s, proxy RSS {rss0} -> {rss} kB "
          f"(+{grown / n:.1f} kB a connection), peak {p.rss_peak_kb()} kB")
    assert rss < 64 * 1024 and grown / n < 4.0, (rss0, rss)
    closed = count_closed(idle, wait=12.0 - (time.monotonic() - t0))
    assert closed == n, f"only {closed} of {n} idle connections closed by the header timeout"
    for s in idle:
        s.close()
    for c in extra:
        c.close()
    good_conn.close()
    time.sleep(0.3)
    with Served(p, pbucket, minimum=1):
        fresh = [RawConn("127.0.0.1", p.port) for _ in range(20)]
        for c in fresh:
            r = good.request("GET", f"/{pbucket}/probe", conn=c)
            assert r.status == 200, r
            c.close()
    e = logscan.wait_access(p, lambda e: e["key"] == "probe")
    assert e["status"] == 200


# ---------------------------------------------------------------------------------------
# keys

def test_key_of_1024_bytes_and_1025(make_proxy, pbucket, store_s3):
    """A key of exactly 1,024 bytes (UTF-8, multi-byte characters included) is stored and
    read back; 1,025 bytes is 400 KeyTooLongError, on PUT, GET and a multipart start, and
    nothing reaches the store."""
    p = make_proxy(clients=[(*CLIENT, "*")])
    c = client(p)
    k1024 = "k/" + "\u00e9" * 200 + "x" * (1024 - 2 - 400)
    k1025 = k1024 + "y"
    assert len(k1024.encode()) == 1024 and len(k1025.encode()) == 1025
    with Served(p, pbucket):
        body = b"exactly 1024 bytes of key"
        r = c.request("PUT", awsv4.key_path(pbucket, k1024), body=body)
        assert r.status == 200, r
        r = c.request("GET", awsv4.key_path(pbucket, k1024))
        assert r.status == 200 and r.body == body, r
        for method, query, data in [("PUT", "", body), ("GET", "", b""),
                                    ("POST", "?uploads", b"")]:
            r = c.request(method, awsv4.key_path(pbucket, k1025) + query, body=data)
            assert_error(r, 400, "KeyTooLongError")
    assert store_s3.get_object(Bucket=pbucket, Key=k1024)["Body"].read() == body
    keys = [o["Key"] for o in store_s3.list_objects_v2(Bucket=pbucket).get("Contents", [])]
    assert sorted(keys) == sorted(["probe", k1024])
