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


ASAN = bed.asan_build()
# ASan's shadow memory and quarantine count in RSS: a small quarantine, and bounds x4
ENV = {"ASAN_OPTIONS": bed.SANITIZER_ENV["ASAN_OPTIONS"]
       + ":quarantine_size_mb=8:thread_local_quarantine_size_kb=256"} if ASAN else {}


def kb_cap(kb):
    return kb * 4 if ASAN else kb


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

    def started(self, timeout=10):
        """Waits for the first answer: the client's connection is then open and served."""
        deadline = time.monotonic() + timeout
        while self.n == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert self.n > 0 and not self.errors, self.errors[:2]
        return self

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
    at once, the proxy stays under 64 MiB, and client_header_timeout (8s) closes all 10,000."""
    n, limit = 10000, 10010
    raise_nofile(n + 1000)
    p = make_proxy(env=ENV, clients=[(*CLIENT, "*")], max_connections=limit, workers=1,
                   client_header_timeout="8s", client_idle_timeout="60s", log_level="info")
    time.sleep(0.2)                     # bed.Proxy.start()'s readiness probes are gone
    good = client(p)
    good_conn = good.connect()
    r = good.request("GET", f"/{pbucket}/probe", conn=good_conn)
    assert r.status == 200, r
    rss0 = p.rss_kb()
    t0 = time.monotonic()
    with Served(p, pbucket, slowest=1.5) as meanwhile:
        meanwhile.started()
        idle = open_idle(p.port, n)
        opened = time.monotonic() - t0
        # the Served thread holds one more connection: 10,002 in use, 8 left
        extra = [RawConn("127.0.0.1", p.port, timeout=5) for _ in range(12)]
        time.sleep(0.5)
        kept = [c for c in extra if not c.closed_within(0.05)]
        assert len(kept) == limit - n - 2, f"{len(kept)} of 12 past 10,002 were kept"
        r = good.request("GET", f"/{pbucket}/probe", conn=good_conn)
        assert r.status == 200 and r.body == PROBE, r
        if time.monotonic() - t0 < 7:       # (a loaded machine may take longer to get here)
            assert count_closed(idle) == 0, "idle connections closed before the header timeout"
        rss = p.rss_kb()
    grown = rss - rss0
    print(f"10,000 idle: opened in {opened:.1f}s, proxy RSS {rss0} -> {rss} kB "
          f"(+{grown / n:.1f} kB a connection), peak {p.rss_peak_kb()} kB")
    assert rss < kb_cap(64 * 1024) and grown / n < kb_cap(4.0), (rss0, rss)
    closed = count_closed(idle, wait=16.0 - (time.monotonic() - t0))
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


def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.timeout(60)
def test_out_of_file_descriptors(make_proxy, pbucket, tmp_path):
    """The proxy runs out of file descriptors (RLIMIT_NOFILE 128, hard) before it reaches
    max_connections: it says so at start, accepts what it can, then pauses accepting
    (one log line, no busy loop: under 0.5 s of CPU in 2 s) while the connections it has
    are served; later connections wait in the kernel's backlog, and once some close it
    accepts again."""
    wrapper = tmp_path / "s3tee-proxy-128fds"
    wrapper.write_text("#!/bin/sh\nulimit -n 128 && exec %s \"$@\"\n"
                       % (bed.build_dir() / "s3tee-proxy"))
    wrapper.chmod(0o755)
    p = make_proxy(env=ENV, clients=[(*CLIENT, "*")], binary=wrapper, workers=1, log_level="info",
                   client_header_timeout="30s")
    logscan.wait_log(p.error_log, "hard limit is 128")
    time.sleep(0.2)
    with Served(p, pbucket, minimum=10) as good:
        good.started()                  # its connection is in before the descriptors run out
        idle = open_idle(p.port, 200)
        time.sleep(0.5)
        cpu0 = cpu_seconds(p.pid)
        time.sleep(2.0)
        used = cpu_seconds(p.pid) - cpu0
        assert used < 0.5, f"{used:.2f}s of CPU in 2s while out of descriptors"
    # one line an episode (an episode ends when an accept succeeds: a descriptor the proxy
    # freed, e.g. a store connection it closed); a line per 100 ms retry would be 20 or more
    text = p.error_log.read_text()
    assert 1 <= text.count("accept failed") <= 4, text.count("accept failed")
    for s in idle:
        s.close()
    logscan.wait_log(p.error_log, "accepting connections again", timeout=10)
    with Served(p, pbucket, minimum=3):
        pass


# ---------------------------------------------------------------------------------------
# keys

def test_key_of_1024_bytes_and_1025(make_proxy, pbucket, store_s3):
    """A key of exactly 1,024 bytes (UTF-8, multi-byte characters included) is stored,
    read back and deleted by DeleteObjects; 1,025 bytes is 400 KeyTooLongError, on PUT, GET and a multipart start, and
    nothing reaches the store."""
    p = make_proxy(env=ENV, clients=[(*CLIENT, "*")])
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
    assert stored_keys(store_s3, pbucket) == {"probe", k1024}
    xml = delete_xml([k1024])
    r = c.request("POST", f"/{pbucket}?delete", body=xml, headers=md5_header(xml))
    assert r.status == 200 and r.body.count(b"<Deleted>") == 1, r
    assert stored_keys(store_s3, pbucket) == {"probe"}


# ---------------------------------------------------------------------------------------
# HTTP/2, frame by frame: curl and nghttp (test_16) never misbehave, so the abusive client
# writes its own frames. HPACK: requests use literal fields (no Huffman, no indexing);
# responses are read with a decoder that knows the static table and the digits of the
# Huffman code, which is all :status needs (we announce a header table of 0 bytes, so the
# proxy's encoder keeps no dynamic entries).

DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = \
    0, 1, 3, 4, 6, 7, 8, 9
END_STREAM, ACK, END_HEADERS = 0x1, 0x1, 0x4
NO_ERROR, PROTOCOL_ERROR, CANCEL, REFUSED_STREAM, ENHANCE_YOUR_CALM = 0, 1, 8, 7, 11
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
STATIC_STATUS = {8: "200", 9: "204", 10: "206", 11: "304", 12: "400", 13: "404", 14: "500"}


def hp_int(value, prefix_bits, first=0):
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([first | value])
    out = [first | limit]
    value -= limit
    while value >= 128:
        out.append(value % 128 + 128)
        value //= 128
    return bytes(out + [value])


def hp_str(s):
    b = s.encode() if isinstance(s, str) else s
    return hp_int(len(b), 7) + b


def hp_literal(name, value, index=False):
    """A field with a new name: incrementally indexed (0x40) or not indexed (0x00)."""
    return (b"\x40" if index else b"\x00") + hp_str(name) + hp_str(value)


def hp_read_int(buf, i, prefix_bits):
    limit = (1 << prefix_bits) - 1
    value = buf[i] & limit
    i += 1
    if value < limit:
        return value, i
    shift = 0
    while True:
        b = buf[i]
        i += 1
        value += (b & 127) << shift
        shift += 7
        if b < 128:
            return value, i


def huffman_digits(data):
    """Decodes a Huffman string of digits ('0'-'2': 5 bits, '3'-'9': 6 bits); None if it
    holds anything else."""
    bits = "".join(f"{b:08b}" for b in data)
    out, i = "", 0
    while len(bits) - i >= 5:
        if bits[i:i + 5] in ("00000", "00001", "00010"):
            out += str(int(bits[i:i + 5], 2))
            i += 5
        elif len(bits) - i >= 6 and 0x19 <= int(bits[i:i + 6], 2) <= 0x1f:
            out += str(int(bits[i:i + 6], 2) - 0x19 + 3)
            i += 6
        elif set(bits[i:]) == {"1"} and len(bits) - i < 8:
            break
        else:
            return None
    return out


def hp_status(block):
    """:status of a response header block (the proxy sends it first)."""
    i = 0
    while i < len(block):
        b = block[i]
        if b & 0x80:
            idx, i = hp_read_int(block, i, 7)
            return STATIC_STATUS.get(idx)
        if b & 0xe0 == 0x20:                    # dynamic table size update
            _, i = hp_read_int(block, i, 5)
            continue
        idx, i = hp_read_int(block, i, 6 if b & 0x40 else 4)
        assert idx == 8, f"the first field is not :status ({block[:20]!r})"
        huff = block[i] & 0x80
        n, i = hp_read_int(block, i, 7)
        raw = block[i:i + n]
        return huffman_digits(raw) if huff else raw.decode()
    return None


class H2Conn:
    """A raw HTTP/2 client connection (h2c by prior knowledge)."""

    def __init__(self, p, keys=CLIENT, settings=((1, 0),), rcvbuf=None):
        self.p = p
        self.signer = awsv4.Signer(*keys)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(10)
        self.sock.connect(("127.0.0.1", p.port))
        self.buf = b""
        self.next_id = 1
        self.goaway = None                      # (last stream id, error code)
        self.send(PREFACE + self.frame(SETTINGS, 0, 0, b"".join(
            struct.pack(">HI", k, v) for k, v in settings)))

    def close(self):
        self.sock.close()

    @staticmethod
    def frame(ftype, flags, sid, payload=b""):
        return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + \
            struct.pack(">I", sid) + payload

    def send(self, data):
        self.sock.sendall(data)

    def request_block(self, method, bucket, key="probe", extra=()):
        """The HPACK block of a signed request (no body)."""
        target = f"/{bucket}/{key}"
        host = f"127.0.0.1:{self.p.port}"
        signed = self.signer.sign(method, target, [("host", host)], awsv4.sha256_hex(b""))
        block = b"".join(hp_literal(n, v) for n, v in [
            (":method", method), (":scheme", "http"), (":path", target), (":authority", host)])
        block += b"".join(hp_literal(n.lower(), v) for n, v in signed.headers
                          if n.lower() != "host")
        return block + b"".join(extra)

    def headers(self, block, sid=None, end_stream=True):
        sid = sid or self.new_id()
        return sid, self.frame(HEADERS, END_HEADERS | (END_STREAM if end_stream else 0), sid,
                               block)

    def new_id(self):
        sid, self.next_id = self.next_id, self.next_id + 2
        return sid

    def read_frame(self, timeout=10):
        """(type, flags, stream id, payload), or None when the server closed."""
        self.sock.settimeout(timeout)
        try:
            while len(self.buf) < 9 or len(self.buf) < 9 + int.from_bytes(self.buf[:3], "big"):
                d = self.sock.recv(1 << 16)
                if not d:
                    return None
                self.buf += d
        except (ConnectionResetError, BrokenPipeError):
            return None
        n = int.from_bytes(self.buf[:3], "big")
        ftype, flags = self.buf[3], self.buf[4]
        sid = int.from_bytes(self.buf[5:9], "big") & 0x7fffffff
        payload, self.buf = self.buf[9:9 + n], self.buf[9 + n:]
        if ftype == SETTINGS and not flags & ACK:
            self.send(self.frame(SETTINGS, ACK, 0))
        if ftype == GOAWAY:
            self.goaway = (int.from_bytes(payload[:4], "big") & 0x7fffffff,
                           int.from_bytes(payload[4:8], "big"))
        return ftype, flags, sid, payload

    def responses(self, sids, timeout=10):
        """Reads until every stream in SIDS has ended or been reset; returns {sid:
        ("status", body) or ("rst", code)}; stops early when the server closes."""
        out, bodies = {}, {}
        deadline = time.monotonic() + timeout
        while set(sids) - set(out):
            f = self.read_frame(max(0.1, deadline - time.monotonic()))
            if f is None:
                break
            ftype, flags, sid, payload = f
            if ftype == HEADERS and sid in sids:
                bodies[sid] = [hp_status(payload), b""]
            elif ftype == DATA and sid in sids:
                bodies[sid][1] += payload
                if payload:
                    self.send(self.frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", len(payload)))
                              + self.frame(WINDOW_UPDATE, 0, sid,
                                           struct.pack(">I", len(payload))))
            elif ftype == RST_STREAM and sid in sids:
                out[sid] = ("rst", int.from_bytes(payload, "big"))
                continue
            if ftype in (HEADERS, DATA) and sid in sids and flags & END_STREAM:
                out[sid] = tuple(bodies[sid])
        return out

    def get(self, bucket, key="probe"):
        sid, data = self.headers(self.request_block("GET", bucket, key))
        self.send(data)
        return self.responses([sid])[sid]

    def closed_within(self, seconds):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                if self.read_frame(max(0.05, deadline - time.monotonic())) is None:
                    return True
            except socket.timeout:
                return False
        return False


def xml_code(body):
    return body.split(b"<Code>")[1].split(b"</Code>")[0].decode() if b"<Code>" in body else None


def h2_proxy(make_proxy, **directives):
    d = dict(workers=1, log_level="info")
    d.update(directives)
    return make_proxy(env=ENV, clients=[(*CLIENT, "*")], **d)


def test_h2_raw_client_is_served(make_proxy, pbucket):
    """The raw client itself: a signed GET on stream 1, then 404 on stream 3."""
    p = h2_proxy(make_proxy)
    h = H2Conn(p)
    assert h.get(pbucket) == ("200", PROBE)
    status, body = h.get(pbucket, "missing")
    assert (status, xml_code(body)) == ("404", "NoSuchKey")
    h.close()


def test_h2_stream_flood(make_proxy, pbucket):
    """60 requests at once past h2_max_concurrent_streams 10 (announced in our SETTINGS,
    which the client acknowledged): the client broke the protocol, so nghttp2 answers the
    11th with GOAWAY(PROTOCOL_ERROR, last stream = the 10th) and the connection closes.
    Nothing is left behind: new connections, and a well-behaved client meanwhile, are
    served."""
    p = h2_proxy(make_proxy, h2_max_concurrent_streams=10)
    h = H2Conn(p)
    assert h.get(pbucket) == ("200", PROBE)     # SETTINGS exchanged: the limit is in force
    with Served(p, pbucket):
        sids, data = [], b""
        for _ in range(60):
            sid, frame = h.headers(h.request_block("GET", pbucket))
            sids.append(sid)
            data += frame
        h.send(data)
        got = h.responses(sids)
        assert h.goaway == (sids[9], PROTOCOL_ERROR), h.goaway
        assert h.closed_within(5), "the connection stayed open"
        assert not set(got) - set(sids[:10]), got
        h.close()
        h = H2Conn(p)
        assert h.get(pbucket) == ("200", PROBE)
        # ten at once, the limit exactly: all answered on the one connection
        sids, data = [], b""
        for _ in range(10):
            sid, frame = h.headers(h.request_block("GET", pbucket))
            sids.append(sid)
            data += frame
        h.send(data)
        got = h.responses(sids)
        assert got == {s: ("200", PROBE) for s in sids} and h.goaway is None, (got, h.goaway)
    h.close()


def test_h2_rapid_reset(make_proxy, pbucket):
    """HEADERS then RST_STREAM at once, 400 times (CVE-2023-44487): past
    h2_max_resets_per_second (50) the proxy sends GOAWAY(ENHANCE_YOUR_CALM) and closes;
    a well-behaved client is served meanwhile."""
    p = h2_proxy(make_proxy, h2_max_resets_per_second=50)
    h = H2Conn(p)
    assert h.get(pbucket) == ("200", PROBE)
    with Served(p, pbucket):
        data = b""
        for _ in range(400):
            sid, frame = h.headers(h.request_block("GET", pbucket))
            data += frame + h.frame(RST_STREAM, 0, sid, struct.pack(">I", CANCEL))
        try:
            h.send(data)
        except (BrokenPipeError, ConnectionResetError):
            pass
        assert h.closed_within(5), "the connection stayed open"
        assert h.goaway is not None and h.goaway[1] == ENHANCE_YOUR_CALM, h.goaway
    h.close()
    logscan.wait_log(p.error_log, "too many stream resets")


@pytest.mark.parametrize("kind", ["settings", "ping"])
def test_h2_ack_flood(make_proxy, pbucket, kind):
    """50,000 SETTINGS (or PING) frames from a client that reads nothing: once
    h2_max_pending_acks (100) ACKs wait, the proxy reads no more, queues
    GOAWAY(ENHANCE_YOUR_CALM) and closes; it does not grow, and a well-behaved client is
    served meanwhile."""
    p = h2_proxy(make_proxy, client_send_timeout="3s")
    h = H2Conn(p, rcvbuf=4096)
    assert h.get(pbucket) == ("200", PROBE)
    peak0 = p.rss_peak_kb()
    one = h.frame(SETTINGS, 0, 0) if kind == "settings" else h.frame(PING, 0, 0, b"12345678")
    t0 = time.monotonic()
    with Served(p, pbucket):
        try:
            for _ in range(10):
                h.send(one * 5000)
        except (BrokenPipeError, ConnectionResetError):
            pass
        # now read: the ACKs the proxy sent, then its GOAWAY, then the close
        assert h.closed_within(10), "the connection stayed open"
    assert h.goaway is not None and h.goaway[1] == ENHANCE_YOUR_CALM, h.goaway
    assert time.monotonic() - t0 < 8
    h.close()
    logscan.wait_log(p.error_log, "h2_max_pending_acks")
    grown = p.rss_peak_kb() - peak0
    assert grown < kb_cap(8 * 1024), f"the proxy's peak grew by {grown} kB"


def test_h2_continuation_flood(make_proxy, pbucket):
    """A HEADERS frame followed by endless CONTINUATIONs: the 9th (past
    h2_max_continuations, 8) gets GOAWAY(ENHANCE_YOUR_CALM) and the connection closes;
    8 are fine, and a well-behaved client is served meanwhile."""
    p = h2_proxy(make_proxy)
    h = H2Conn(p)
    with Served(p, pbucket):
        for conts, refused in ((8, False), (1000, True)):
            block = h.request_block("GET", pbucket)
            pieces = [block[:20]] + [b""] * (conts - 1) + [block[20:]]
            sid = h.new_id()
            data = h.frame(HEADERS, END_STREAM, sid, pieces[0])
            for i, piece in enumerate(pieces[1:], 1):
                data += h.frame(CONTINUATION, END_HEADERS if i == conts else 0, sid, piece)
            try:
                h.send(data)
            except (BrokenPipeError, ConnectionResetError):
                pass
            if not refused:
                assert h.responses([sid]) == {sid: ("200", PROBE)}
                continue
            assert h.closed_within(5), "the connection stayed open"
            assert h.goaway is not None and h.goaway[1] == ENHANCE_YOUR_CALM, h.goaway
    h.close()
    logscan.wait_log(p.error_log, "h2_max_continuations")


def test_h2_hpack_bomb(make_proxy, pbucket):
    """HPACK expands: one 4,000-byte field put in the dynamic table, then named 20,000
    times by a 2-byte index (40 KB on the wire, 80 MB decoded). The proxy stores no more
    than max_header_bytes (32k) of it and answers 400 RequestHeaderSectionTooLarge; 101
    small fields (max_header_count 100) get the same. The connection stays in sync and
    usable; the proxy does not grow; a well-behaved client is served meanwhile."""
    p = h2_proxy(make_proxy)
    h = H2Conn(p)
    assert h.get(pbucket) == ("200", PROBE)
    peak0 = p.rss_peak_kb()
    with Served(p, pbucket):
        # our own table: 4,096 bytes by default; entry 62 is the newest one
        bomb = hp_literal("x-amz-meta-bomb", "b" * 4000, index=True) + \
            hp_int(62, 7, 0x80) * 20000
        sid = h.new_id()
        block = h.request_block("GET", pbucket, extra=[bomb])
        frames = [block[i:i + 16384] for i in range(0, len(block), 16384)]
        data = h.frame(HEADERS, END_STREAM | (END_HEADERS if len(frames) == 1 else 0), sid,
                       frames[0])
        for i, piece in enumerate(frames[1:], 1):
            data += h.frame(CONTINUATION, END_HEADERS if i == len(frames) - 1 else 0, sid,
                            piece)
        assert len(frames) <= 8
        h.send(data)
        status, body = h.responses([sid])[sid]
        assert (status, xml_code(body)) == ("400", "RequestHeaderSectionTooLarge"), body
        # the table entry is still there for the next block: HPACK state was kept
        sid, data = h.headers(h.request_block("GET", pbucket, extra=[hp_int(62, 7, 0x80)]))
        h.send(data)
        assert h.responses([sid])[sid] == ("200", PROBE)
        many = [hp_literal(f"x-amz-meta-m{i}", "v") for i in range(101)]
        sid, data = h.headers(h.request_block("GET", pbucket, extra=many))
        h.send(data)
        status, body = h.responses([sid])[sid]
        assert (status, xml_code(body)) == ("400", "RequestHeaderSectionTooLarge"), body
        assert h.get(pbucket) == ("200", PROBE)
    h.close()
    grown = p.rss_peak_kb() - peak0
    assert grown < kb_cap(4 * 1024), f"the proxy's peak grew by {grown} kB"


# ---------------------------------------------------------------------------------------
# S3 request bodies and numbers: DeleteObjects, CompleteMultipartUpload, part numbers

def delete_xml(keys):
    from xml.sax.saxutils import escape
    return (b"<?xml version=\"1.0\" encoding=\"UTF-8\"?><Delete>"
            + b"".join(b"<Object><Key>%s</Key></Object>" % escape(k).encode() for k in keys)
            + b"</Delete>")


def md5_header(body):
    import base64
    import hashlib
    return [("content-md5", base64.b64encode(hashlib.md5(body).digest()).decode())]


def stored_keys(store_s3, bucket):
    return {o["Key"] for page in store_s3.get_paginator("list_objects_v2").paginate(
        Bucket=bucket) for o in page.get("Contents", [])}


@pytest.mark.timeout(120)
def test_delete_objects_1000_and_1001(make_proxy, pbucket, store_s3):
    """DeleteObjects with 1,000 keys deletes them all; 1,001 keys is 400 MalformedXML (as
    from AWS; RGW would answer a bare 400) and deletes nothing; a well-behaved client is
    served meanwhile. (Keys of 200 bytes: RGW refuses XML bodies over 1 MiB, its
    rgw_max_put_param_size, with 416 InvalidRange, so 1,000 keys of 1,024 bytes need that
    raised at the store; test_key_of_1024_bytes_and_1025 deletes a 1,024-byte key.)"""
    p = make_proxy(env=ENV, clients=[(*CLIENT, "*")])
    c = client(p)
    keys = [f"d/{i:04d}-" + "k" * 193 for i in range(1001)]
    import concurrent.futures
    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        list(ex.map(lambda k: store_s3.put_object(Bucket=pbucket, Key=k, Body=b"x"), keys))
    with Served(p, pbucket):
        body = delete_xml(keys)
        r = c.request("POST", f"/{pbucket}?delete", body=body, headers=md5_header(body))
        assert_error(r, 400, "MalformedXML")
        assert stored_keys(store_s3, pbucket) == {"probe", *keys}
        body = delete_xml(keys[:1000])
        r = c.request("POST", f"/{pbucket}?delete", body=body, headers=md5_header(body))
        assert r.status == 200, r
        assert r.body.count(b"<Deleted>") == 1000, r.body[:300]
    assert stored_keys(store_s3, pbucket) == {"probe", keys[1000]}


@pytest.mark.parametrize("op", ["delete", "complete"])
def test_xml_bodies_huge_or_deep(make_proxy, pbucket, store_s3, op):
    """DeleteObjects and CompleteMultipartUpload bodies that are too large (max_xml_body
    256k: by Content-Length at once, and by counting when aws-chunked hides the size)
    get 400 EntityTooLarge; nested 30,000 deep, 400 MalformedXML. Nothing is deleted or
    completed, the proxy does not grow, a well-behaved client is served meanwhile."""
    p = make_proxy(env=ENV, clients=[(*CLIENT, "*")], max_xml_body="256k")
    c = client(p)
    store_s3.put_object(Bucket=pbucket, Key="keep", Body=b"kept")
    if op == "delete":
        target = f"/{pbucket}?delete"
    else:
        upload = store_s3.create_multipart_upload(Bucket=pbucket, Key="mpu")["UploadId"]
        store_s3.upload_part(Bucket=pbucket, Key="mpu", UploadId=upload, PartNumber=1,
                             Body=b"part")
        target = f"/{pbucket}/mpu?uploadId={upload}"
    root = b"Delete" if op == "delete" else b"CompleteMultipartUpload"
    entry = b"<Object><Key>keep</Key></Object>" if op == "delete" else \
        b"<Part><PartNumber>1</PartNumber><ETag>x</ETag></Part>"
    filler = b"<%s>" % root + b" " * (300 * 1024) + entry + b"</%s>" % root
    deep = b"<%s>" % root + b"<a>" * 30000 + b"</a>" * 30000 + entry + b"</%s>" % root
    peak0 = p.rss_peak_kb()
    with Served(p, pbucket):
        r = c.request("POST", target, body=filler, headers=md5_header(filler))
        assert_error(r, 400, "EntityTooLarge")
        signed = c.sign("POST", target, md5_header(filler) + [
            ("x-amz-decoded-content-length", str(len(filler)))],
            payload=awsv4.STREAMING_SIGNED)
        chunked = awsv4.aws_chunked_signed(signed, filler, 64 * 1024)
        conn = c.connect()
        r = c.send_raw(build("POST", target, signed.headers + [
            ("content-length", str(len(chunked)))], chunked), "POST", conn=conn)
        assert_error(r, 400, "EntityTooLarge")
        conn.close()
        r = c.request("POST", target, body=deep, headers=md5_header(deep))
        assert_error(r, 400, "MalformedXML")
        assert b"nested too deeply" in r.body, r.body
    assert p.rss_peak_kb() - peak0 < kb_cap(8 * 1024)
    assert store_s3.get_object(Bucket=pbucket, Key="keep")["Body"].read() == b"kept"
    if op == "complete":
        parts = store_s3.list_parts(Bucket=pbucket, Key="mpu", UploadId=upload)["Parts"]
        assert [x["PartNumber"] for x in parts] == [1]
        store_s3.abort_multipart_upload(Bucket=pbucket, Key="mpu", UploadId=upload)
    e = logscan.wait_access(p, lambda e: e.get("error") == "MalformedXML")
    assert e["status"] == 400


def test_part_number_range(make_proxy, pbucket, store_s3):
    """UploadPart numbers 1 and 10,000 are stored; 0 and 10,001 are 400 InvalidArgument as
    from AWS (RGW would store them), on UploadPart and UploadPartCopy."""
    p = make_proxy(env=ENV, clients=[(*CLIENT, "*")])
    c = client(p)
    upload = store_s3.create_multipart_upload(Bucket=pbucket, Key="mpu")["UploadId"]
    with Served(p, pbucket):
        for n, status in ((1, 200), (10000, 200), (0, 400), (10001, 400)):
            r = c.request("PUT", f"/{pbucket}/mpu?partNumber={n}&uploadId={upload}",
                          body=b"part %d" % n)
            if status == 400:
                assert_error(r, 400, "InvalidArgument")
                assert b"between 1 and 10000" in r.body, r.body
            else:
                assert r.status == 200, r
        r = c.request("PUT", f"/{pbucket}/mpu?partNumber=10001&uploadId={upload}",
                      headers=[("x-amz-copy-source", f"/{pbucket}/probe")])
        assert_error(r, 400, "InvalidArgument")
    parts = store_s3.list_parts(Bucket=pbucket, Key="mpu", UploadId=upload)["Parts"]
    assert [x["PartNumber"] for x in parts] == [1, 10000]
    store_s3.abort_multipart_upload(Bucket=pbucket, Key="mpu", UploadId=upload)


# ---------------------------------------------------------------------------------------
# a multipart upload of 10,000 parts

def rgw_config(store, name, value=None):
    """Reads (value None) or sets one option of the running radosgw, by its admin socket."""
    import json
    import subprocess
    sock = store.dir / "run" / "client.rgw.a.asok"
    argv = ["ceph", "--admin-daemon", str(sock), "config"]
    argv += ["get", name] if value is None else ["set", name, str(value)]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=True).stdout
    return json.loads(out).get(name) if value is None else None


def stream_entries(redis):
    """s3tee:log as [{field: value}] (str), oldest first."""
    def s(x):
        return x.decode() if isinstance(x, bytes) else x
    out = []
    for _, fields in redis.command("XRANGE", "s3tee:log", "-", "+"):
        fields = [s(f) for f in fields]
        out.append(dict(zip(fields[0::2], fields[1::2])))
    return out


@pytest.mark.timeout(900 if FULL else 120)
def test_multipart_10000_parts(store, make_redis, pbucket, store_s3):
    """A replicated bucket: CompleteMultipartUpload makes the proxy page ListParts (1,000
    parts a page) and record every part's size for the peers. With 10,000 parts
    (S3TEE_ABUSE_FULL=1; 1,100 in CI: two pages) the recorded list is complete and in
    order, the object is whole, and the proxy's peak RSS stays bounded; part 10,001 is 400
    InvalidArgument, a Complete naming 10,001 parts 400 MalformedXML. A well-behaved client
    is served throughout. The store's minimum part size is lowered to 1 byte meanwhile."""
    import concurrent.futures
    import hashlib
    nparts = 10000 if FULL else 1100
    redis = make_redis()
    p = bed.Proxy(store.url, store_key=(store.access_key, store.secret),
                  clients=[(*CLIENT, "*")], tls=False, env=ENV,
                  directives={"site_id": "a", "redis": f"127.0.0.1:{redis.port}",
                              "site": ["a http://127.0.0.1:1", "b http://127.0.0.1:2"],
                              "site_plain_http": "yes",
                              "workers": 2, "log_level": "info"},
                  extra_creds=["site b AKIDT31SITEB secretT31siteB0123456789",
                               "peer b AKIDT31PEERB secretT31peerB0123456789"])
    old_min = rgw_config(store, "rgw_multipart_min_part_size")
    rgw_config(store, "rgw_multipart_min_part_size", 1)
    try:
        p.start()
        c = client(p)
        r = c.request("POST", f"/{pbucket}/big?uploads")
        assert r.status == 200, r
        upload = r.xml("UploadId")
        sizes = [1 + (n * 7919) % 97 for n in range(1, nparts + 1)]
        bodies = [bytes([n % 251]) * sizes[n - 1] for n in range(1, nparts + 1)]
        local = threading.local()

        def put_part(n):
            if not hasattr(local, "c"):
                local.c = client(p)
            r = local.c.request("PUT", f"/{pbucket}/big?partNumber={n}&uploadId={upload}",
                                body=bodies[n - 1])
            assert r.status == 200, (n, r)
            return r.header("etag")

        t0 = time.monotonic()
        with Served(p, pbucket, slowest=3.0):
            with concurrent.futures.ThreadPoolExecutor(6) as ex:
                etags = list(ex.map(put_part, range(1, nparts + 1)))
            t_parts = time.monotonic() - t0
            r = c.request("PUT", f"/{pbucket}/big?partNumber=10001&uploadId={upload}",
                          body=b"one too many")
            assert_error(r, 400, "InvalidArgument")
            parts = list(zip(range(1, nparts + 1), etags))

            def complete_xml(extra=b""):
                return (b"<CompleteMultipartUpload>" + b"".join(
                    b"<Part><PartNumber>%d</PartNumber><ETag>%s</ETag></Part>"
                    % (n, e.encode()) for n, e in parts) + extra
                    + b"</CompleteMultipartUpload>")

            if FULL:
                over = complete_xml(b"<Part><PartNumber>10001</PartNumber><ETag>x</ETag></Part>")
                r = c.request("POST", f"/{pbucket}/big?uploadId={upload}", body=over)
                assert_error(r, 400, "MalformedXML")
            peak0 = p.rss_peak_kb()
            t1 = time.monotonic()
            r = c.request("POST", f"/{pbucket}/big?uploadId={upload}", body=complete_xml())
            t_complete = time.monotonic() - t1
            assert r.status == 200 and b"<ETag>" in r.body, r
            peak = p.rss_peak_kb()
        whole = b"".join(bodies)
        got = store_s3.get_object(Bucket=pbucket, Key="big")["Body"].read()
        assert hashlib.sha256(got).digest() == hashlib.sha256(whole).digest()
        entry = [e for e in stream_entries(redis) if e.get("key") == "big"][-1]
        recorded = [int(x) for x in entry["parts"].split(",")]
        assert recorded == sizes, (len(recorded), recorded[:5])
        assert int(entry["size"]) == len(whole), entry.get("size")
        print(f"{nparts} parts: uploaded in {t_parts:.1f}s, Complete (ListParts paged "
              f"{(nparts + 999) // 1000}x) in {t_complete:.1f}s, proxy peak RSS {peak0} -> "
              f"{peak} kB")
        assert peak < kb_cap(64 * 1024) and peak - peak0 < kb_cap(16 * 1024), (peak0, peak)
        c.close()
    finally:
        rgw_config(store, "rgw_multipart_min_part_size", old_min)
        p.close(check=True)


# ---------------------------------------------------------------------------------------
# slow clients (test_30 has the stalled body, the paused reader and the slow-loris head)

@pytest.mark.timeout(60)
def test_slowloris_body(make_proxy, pbucket, store_s3):
    """A body trickled at 2 bytes a second never pauses for client_body_timeout (2s), but
    averages below client_body_min_rate (256 bytes/s over each 2s): 400 RequestTimeout
    within about one window, the connection closed, nothing at the store; a well-behaved
    client is served meanwhile, and an upload at the minimum rate's double passes."""
    p = make_proxy(env=ENV, clients=[(*CLIENT, "*")], client_body_timeout="2s",
                   client_body_min_rate=256, workers=1)
    c = client(p)
    body = s3util.payload(4096, seed=31)
    data = c.raw("PUT", f"/{pbucket}/trickled", body=body)
    head = len(data) - len(body)
    conn = c.connect()
    with Served(p, pbucket, minimum=10):
        conn.send(data[:head])
        t0 = time.monotonic()
        r = None
        for i in range(len(body)):
            if select.select([conn.sock], [], [], 0)[0]:
                break
            try:
                conn.send(body[i:i + 1])
            except OSError:
                break
            time.sleep(0.5)
        r = conn.read_response("PUT", timeout=5)
        elapsed = time.monotonic() - t0
        assert_error(r, 400, "RequestTimeout")
        assert r.closes and conn.closed_within(3)
        assert 1.5 <= elapsed <= 5.0, elapsed
    conn.close()
    assert store_s3.list_objects_v2(Bucket=pbucket, Prefix="trickled").get("KeyCount") == 0
    logscan.wait_log(p.error_log, "client_body_min_rate")
    # 512 bytes a second, in pieces every 250 ms: above the minimum, stored whole
    body = s3util.payload(2560, seed=32)
    data = c.raw("PUT", f"/{pbucket}/steady", body=body)
    conn = c.connect()
    conn.send(data[:len(data) - len(body)])
    for i in range(0, len(body), 128):
        conn.send(body[i:i + 128])
        time.sleep(0.25)
    r = conn.read_response("PUT", timeout=5)
    assert r.status == 200, r
    conn.close()
    assert store_s3.get_object(Bucket=pbucket, Key="steady")["Body"].read() == body


@pytest.mark.timeout(60)
def test_h2_slowloris_body(make_proxy, pbucket, store_s3):
    """HTTP/2: one stream's DATA trickled at 2 bytes a second, below client_body_min_rate
    (256 bytes/s over each client_body_timeout of 2s): that stream gets 400 RequestTimeout
    within about one window, nothing reaches the store, and the connection stays usable;
    a well-behaved client is served meanwhile."""
    p = h2_proxy(make_proxy, client_body_timeout="2s", client_body_min_rate=256)
    h = H2Conn(p)
    body = s3util.payload(4096, seed=34)
    target = f"/{pbucket}/h2trickle"
    host = f"127.0.0.1:{p.port}"
    signed = h.signer.sign("PUT", target, [("host", host)], awsv4.sha256_hex(body))
    block = b"".join(hp_literal(n, v) for n, v in [
        (":method", "PUT"), (":scheme", "http"), (":path", target), (":authority", host),
        ("content-length", str(len(body)))])
    block += b"".join(hp_literal(n.lower(), v) for n, v in signed.headers
                      if n.lower() != "host")
    with Served(p, pbucket):
        sid, frame = h.headers(block, end_stream=False)
        h.send(frame)
        t0 = time.monotonic()
        got = None
        for i in range(len(body)):
            h.sock.settimeout(0.5)
            try:
                f = h.read_frame(0.5)
            except socket.timeout:
                f = None
            if f is not None and f[2] == sid and f[0] == HEADERS:
                got = hp_status(f[3])
                break
            h.send(h.frame(DATA, 0, sid, body[i:i + 1]))
        elapsed = time.monotonic() - t0
        assert got == "400", got
        assert 1.5 <= elapsed <= 5.0, elapsed
        assert h.get(pbucket) == ("200", PROBE)
    h.close()
    logscan.wait_log(p.error_log, "client_body_min_rate")
    assert store_s3.list_objects_v2(Bucket=pbucket, Prefix="h2trickle").get("KeyCount") == 0


@pytest.mark.timeout(60)
def test_reader_at_one_byte_a_second(make_proxy, pbucket, store_s3):
    """A client reading a 16 MiB GET at 1 byte a second keeps the proxy's writes stalled
    (the kernel opens its window by a segment, not a byte): after client_send_timeout (3s)
    the proxy drops it, having buffered no more than its bound (the rest of what the
    client gets sat in the kernel's socket buffers, up to 4 MiB each way here); a
    well-behaved client is served meanwhile. The access log shows the GET cut short."""
    big = s3util.payload(16 * 1024 * 1024, seed=33)
    store_s3.put_object(Bucket=pbucket, Key="big", Body=big)
    p = make_proxy(env=ENV, clients=[(*CLIENT, "*")], client_send_timeout="3s", workers=1)
    c = client(p)
    peak0 = p.rss_peak_kb()
    conn = RawConn("127.0.0.1", p.port, rcvbuf=4096)
    conn.send(c.raw("GET", f"/{pbucket}/big"))
    got = 0
    with Served(p, pbucket, minimum=20):
        t0 = time.monotonic()
        conn.sock.settimeout(5)
        while time.monotonic() - t0 < 8:
            d = conn.sock.recv(1)
            if not d:
                break
            got += 1
            time.sleep(1.0)
    # now read whatever is left at full speed: the proxy has given up on us
    conn.sock.settimeout(10)
    ended = False
    try:
        while True:
            d = conn.sock.recv(1 << 16)
            if not d:
                ended = True
                break
            got += len(d)
    except ConnectionResetError:
        ended = True
    except socket.timeout:
        pass
    conn.close()
    assert ended, "the proxy kept the connection of a 1 byte/s reader"
    assert got < len(big) // 2, f"{got} bytes: the slow reader was not cut off"
    e = logscan.wait_access(p, lambda e: e["key"] == "big")
    assert e["status"] == 200 and e["bytes_out"] < len(big), e
    grown = p.rss_peak_kb() - peak0
    assert grown < kb_cap(8 * 1024), \
        f"the proxy's peak grew by {grown} kB for a 1 byte/s reader"
