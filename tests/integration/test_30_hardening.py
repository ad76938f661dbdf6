"""Hardening of the HTTP/1.1 front end and the process: malformed and oversized heads,
slow and vanished clients, connection limits, an unreachable or stalled store, SIGHUP and
SIGTERM, the command line, and the access log.

Raw sockets throughout (lib/rawhttp.py), so every byte on the wire is the test's choice.
Short timeouts come from make_proxy directives; the whole file runs in about a minute.
"""

import os
import select
import signal
import socket
import subprocess
import threading
import time

import pytest
from botocore.exceptions import ClientError

import bed
from lib import awsv4, logscan, s3util
from lib.rawhttp import RawConn, RawS3, build

CLIENT = ("AKIDT2HARD", "Hq3vT2hardeningSecretNeverLogged0xC0FFEE11")
NEWKEY = ("AKIDT2RELOADED", "Rn5vT2reloadSecretNeverLogged0xBADC0DE2")
PROBE = b"probe: served after the bad request\n"


@pytest.fixture(scope="module")
def hp(store, bed_tls):
    """This module's proxy with default limits (16k request line, 32k head, 100 headers)."""
    p = bed.Proxy(store.url, store_key=(store.access_key, store.secret),
                  clients=[(*CLIENT, "*")], tls=bed_tls, directives={"workers": 2}).start()
    yield p
    p.close(check=True)


@pytest.fixture(autouse=True)
def _hp_healthy(hp):
    yield
    problems = hp.sanitizer_reports()
    if not hp.is_alive():
        problems.insert(0, "the module's proxy died\n" + bed.tail(hp.stderr_path, 40))
    if problems:
        pytest.fail("\n\n".join(problems), pytrace=False)


@pytest.fixture
def pbucket(bucket, store_s3):
    store_s3.put_object(Bucket=bucket, Key="probe", Body=PROBE)
    return bucket


def client(p, keys=CLIENT, tls=False):
    return RawS3.of(p, tls=tls, access_key=keys[0], secret=keys[1])


def at_store(store_s3, bucket, key):
    try:
        h = store_s3.head_object(Bucket=bucket, Key=key)
    except ClientError as e:
        assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 404, e.response
        return None
    return h["ETag"], h["ContentLength"]


def put_old(store_s3, bucket, key):
    data = b"the old object stays whole\n" * 100
    store_s3.put_object(Bucket=bucket, Key=key, Body=data)
    return '"%s"' % s3util.md5_hex(data), len(data)


def served(p, bucket, conn=None, keys=CLIENT):
    """A good signed GET of 'probe' through P (on CONN, else a new connection)."""
    c = client(p, keys)
    try:
        r = c.request("GET", f"/{bucket}/probe", conn=conn)
    finally:
        c.close()
    assert r.status == 200 and r.body == PROBE, r
    return r


def assert_error(r, status, code):
    assert (r.status, r.code) == (status, code), r
    assert r.header("content-type") == "application/xml", r


# ---------------------------------------------------------------------------------------
# malformed heads: answer, close, and serve the next connection

H = "host: 127.0.0.1"
BAD_HEADS = {
    "cl_and_te": (f"PUT /b/k HTTP/1.1\r\n{H}\r\ncontent-length: 5\r\n"
                  "transfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 400,
                  "InvalidRequest"),
    "te_and_cl": (f"PUT /b/k HTTP/1.1\r\n{H}\r\ntransfer-encoding: chunked\r\n"
                  "content-length: 5\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 400, "InvalidRequest"),
    "duplicate_cl": (f"PUT /b/k HTTP/1.1\r\n{H}\r\ncontent-length: 5\r\ncontent-length: 6\r\n"
                     "\r\nhello!", 400, "InvalidRequest"),
    "duplicate_cl_same": (f"PUT /b/k HTTP/1.1\r\n{H}\r\ncontent-length: 5\r\n"
                          "content-length: 5\r\n\r\nhello", 400, "InvalidRequest"),
    "cl_list": (f"PUT /b/k HTTP/1.1\r\n{H}\r\ncontent-length: 5, 5\r\n\r\nhello", 400,
                "InvalidRequest"),
    "cl_not_a_number": (f"PUT /b/k HTTP/1.1\r\n{H}\r\ncontent-length: +5\r\n\r\nhello", 400,
                        "InvalidRequest"),
    "obs_fold": (f"GET /b/k HTTP/1.1\r\n{H}\r\nx-amz-meta-a: one\r\n two\r\n\r\n", 400,
                 "InvalidRequest"),
    "te_gzip_chunked": (f"PUT /b/k HTTP/1.1\r\n{H}\r\ntransfer-encoding: gzip, chunked\r\n\r\n"
                        "0\r\n\r\n", 501, "NotImplemented"),
    "te_identity": (f"PUT /b/k HTTP/1.1\r\n{H}\r\ntransfer-encoding: identity\r\n\r\n", 501,
                    "NotImplemented"),
    "te_on_http10": (f"PUT /b/k HTTP/1.0\r\n{H}\r\ntransfer-encoding: chunked\r\n\r\n"
                     "0\r\n\r\n", 400, "InvalidRequest"),
    "no_host": ("GET /b/k HTTP/1.1\r\nx-amz-date: 20240101T000000Z\r\n\r\n", 400,
                "InvalidRequest"),
    "two_hosts": (f"GET /b/k HTTP/1.1\r\n{H}\r\n{H}\r\n\r\n", 400, "InvalidRequest"),
    "bare_lf": (f"GET /b/k HTTP/1.1\n{H}\n\n", 400, "InvalidRequest"),
    "bare_lf_in_header": (f"GET /b/k HTTP/1.1\r\n{H}\nx-a: b\r\n\r\n", 400, "InvalidRequest"),
    "lone_cr": (f"GET /b/k HTTP/1.1\r\n{H}\rx-a: b\r\n\r\n", 400, "InvalidRequest"),
    "nul_in_header": (f"GET /b/k HTTP/1.1\r\n{H}\r\nx-a: b\0c\r\n\r\n", 400, "InvalidRequest"),
    "space_before_colon": ("GET /b/k HTTP/1.1\r\nhost : 127.0.0.1\r\n\r\n", 400,
                           "InvalidRequest"),
    "http_1_2": (f"GET /b/k HTTP/1.2\r\n{H}\r\n\r\n", 505, "HttpVersionNotSupported"),
    "bad_target": (f"GET b/k HTTP/1.1\r\n{H}\r\n\r\n", 400, "InvalidURI"),
    "request_line_too_long": (f"GET /b/{'k' * 17000} HTTP/1.1\r\n{H}\r\n\r\n", 414,
                              "RequestURITooLong"),
    "header_bytes": (f"GET /b/k HTTP/1.1\r\n{H}\r\n"
                     + "".join(f"x-amz-meta-h{i}: {'v' * 1000}\r\n" for i in range(40)) + "\r\n",
                     400, "RequestHeaderSectionTooLarge"),
    "header_count": (f"GET /b/k HTTP/1.1\r\n{H}\r\n"
                     + "".join(f"x-amz-meta-h{i}: v\r\n" for i in range(101)) + "\r\n",
                     400, "RequestHeaderSectionTooLarge"),
}


@pytest.mark.parametrize("case", list(BAD_HEADS))
def test_malformed_head(hp, pbucket, case):
    raw, status, code = BAD_HEADS[case]
    with RawConn("127.0.0.1", hp.port) as c:
        c.send(raw.encode("latin-1"))
        r = c.read_response("GET", timeout=5)
        assert_error(r, status, code)
        assert r.closes, r
        assert c.closed_within(3.0), "the connection stayed open after a framing error"
    # a refused request is a request: it has its access-log line
    e = logscan.wait_access(hp, lambda e: e["request_id"] == r.header("x-amz-request-id"))
    assert (e["status"], e.get("error"), e["access_key"]) == (status, code, "-"), e
    assert e["client"].startswith("127.0.0.1:"), e
    served(hp, pbucket)


def test_limits_just_below_pass(hp):
    """A head of exactly 100 header lines, one just under 32k, a request line just under 16k:
    parsed (the anonymous request is then refused by authentication, not by the parser)."""
    def anon(target, headers):
        with RawConn("127.0.0.1", hp.port) as c:
            head = build("GET", target, [("host", "127.0.0.1")] + headers)
            r = c.request(head)
            return r, len(head)

    r, _ = anon("/bkt/k", [(f"x-amz-meta-h{i}", "v") for i in range(99)])
    assert_error(r, 403, "AccessDenied")
    big = [(f"x-amz-meta-b{i}", "v" * 1000) for i in range(31)]
    pad = 32 * 1024 - len(build("GET", "/bkt/k", [("host", "127.0.0.1")] + big
                                + [("x-amz-meta-pad", "")]))
    r, n = anon("/bkt/k", big + [("x-amz-meta-pad", "p" * pad)])
    assert n == 32 * 1024, n
    assert_error(r, 403, "AccessDenied")
    target = "/bkt/" + "k" * (16 * 1024 - len("GET /bkt/ HTTP/1.1") - 10)
    r, _ = anon(target, [])
    assert r.status != 414, r
    assert r.code in ("AccessDenied", "KeyTooLongError"), r


def test_pipelined_requests(hp, pbucket, store_s3):
    """Two requests in one write: both answered, in order, on the one connection."""
    c = client(hp)
    try:
        data = c.raw("GET", f"/{pbucket}/probe") + c.raw("HEAD", f"/{pbucket}/probe")
        conn = c.connect()
        conn.send(data)
        r1, r2 = conn.read_response("GET"), conn.read_response("HEAD")
        assert r1.status == 200 and r1.body == PROBE, r1
        assert r2.status == 200 and r2.header("content-length") == str(len(PROBE)), r2
        # many at once, more than one read's worth: every one answered, in order
        for i in range(3):
            store_s3.put_object(Bucket=pbucket, Key=f"o{i}", Body=b"object %d" % i * (i + 1))
        reqs = [c.raw("GET", f"/{pbucket}/o{i % 3}" if i % 4 else f"/{pbucket}/missing")
                for i in range(60)]
        conn.send(b"".join(reqs))
        for i in range(60):
            r = conn.read_response("GET")
            if i % 4:
                assert r.status == 200 and r.body == b"object %d" % (i % 3) * (i % 3 + 1), (i, r)
            else:
                assert r.code == "NoSuchKey", (i, r)
        conn.close()
    finally:
        c.close()


def test_pipelined_after_refused_upload(hp, pbucket, store_s3):
    """A refused upload with its whole body and a good request behind it in one write: the
    body is read and dropped, the next request is answered on the same connection."""
    c = client(hp)
    try:
        bad = c.with_keys(CLIENT[0], "not-the-secret").raw("PUT", f"/{pbucket}/refused",
                                                            body=b"B" * 100000)
        conn = c.connect()
        conn.send(bad + c.raw("GET", f"/{pbucket}/probe"))
        assert_error(conn.read_response("PUT"), 403, "SignatureDoesNotMatch")
        r = conn.read_response("GET")
        assert r.status == 200 and r.body == PROBE, r
        conn.close()
        assert at_store(store_s3, pbucket, "refused") is None
    finally:
        c.close()


def test_expect_continue(hp, pbucket, store_s3):
    """Expect: 100-continue: a good upload gets 100 Continue before it sends its body; a
    refused one gets its final answer instead, and since that client may then never send
    the body, the proxy must not read its next request as that body: it closes."""
    c = client(hp)
    body = s3util.payload(300000, seed=18)
    signed = c.sign("PUT", f"/{pbucket}/expect",
                    [("expect", "100-continue"), ("content-length", str(len(body)))], body)
    conn = c.connect()
    conn.send(build("PUT", f"/{pbucket}/expect", signed.headers))
    r = conn.read_response("PUT", keep_continue=True)
    assert r.status == 100, r
    conn.send(body)
    r = conn.read_response("PUT")
    assert r.status == 200 and not r.closes, r
    served(hp, pbucket, conn=conn)

    bad = c.with_keys(CLIENT[0], "not-the-secret").sign(
        "PUT", f"/{pbucket}/expect2",
        [("expect", "100-continue"), ("content-length", str(len(body)))], body)
    conn.send(build("PUT", f"/{pbucket}/expect2", bad.headers))
    r = conn.read_response("PUT", keep_continue=True)
    assert_error(r, 403, "SignatureDoesNotMatch")
    assert r.closes, "keeping the connection would read the next request as the body"
    assert conn.closed_within(3.0)
    conn.close()
    c.close()
    assert at_store(store_s3, pbucket, "expect2") is None
    assert store_s3.get_object(Bucket=pbucket, Key="expect")["Body"].read() == body
    served(hp, pbucket)


def test_http10(hp, pbucket):
    """HTTP/1.0: closed after the response unless it asks for keep-alive."""
    c = client(hp)
    try:
        with c.connect() as conn:
            signed = c.sign("GET", f"/{pbucket}/probe")
            conn.send(build("GET", f"/{pbucket}/probe", signed.headers, version="HTTP/1.0"))
            r = conn.read_response("GET")
            assert r.status == 200 and r.body == PROBE, r
            assert conn.closed_within(3.0)
        with c.connect() as conn:
            signed = c.sign("GET", f"/{pbucket}/probe", [("connection", "keep-alive")])
            conn.send(build("GET", f"/{pbucket}/probe", signed.headers, version="HTTP/1.0"))
            r = conn.read_response("GET")
            assert r.status == 200 and r.body == PROBE, r
            assert (r.header("connection") or "").lower() == "keep-alive", r
            served(hp, pbucket, conn=conn)
    finally:
        c.close()


@pytest.mark.timeout(120)
def test_concurrent_mixed_traffic(hp, pbucket, store_s3):
    """12 clients at once, each on its own kept-alive connection (half over TLS): uploads
    (hex and aws-chunked), reads, refused requests and refused uploads interleaved; every
    answer is the right one and the store holds exactly the accepted uploads."""
    errors = []

    def worker(n):
        c = client(hp, tls=n % 2 == 1)
        bad = c.with_keys(CLIENT[0], "not-the-secret")
        try:
            for i in range(12):
                key = f"w{n}/k{i}"
                body = s3util.payload(1000 + (n * 7919 + i * 104729) % 200000, seed=n * 100 + i)
                if i % 2:
                    r = c.request("PUT", f"/{pbucket}/{key}", body=body)
                else:
                    signed = c.sign("PUT", f"/{pbucket}/{key}",
                                    [("x-amz-decoded-content-length", str(len(body)))],
                                    payload=awsv4.STREAMING_SIGNED)
                    chunked = awsv4.aws_chunked_signed(signed, body, 32 * 1024)
                    r = c.send_raw(build("PUT", f"/{pbucket}/{key}", signed.headers + [
                        ("content-length", str(len(chunked)))], chunked), "PUT")
                assert r.status == 200, r
                r = c.request("GET", f"/{pbucket}/{key}")
                assert r.status == 200 and r.body == body, (key, r.status)
                r = c.send_raw(bad.raw("GET", f"/{pbucket}/{key}"), "GET")
                assert r.code == "SignatureDoesNotMatch", r
                r = c.request("PUT", f"/{pbucket}/{key}.bad", body=body,
                              payload=awsv4.sha256_hex(body + b"?"))
                assert r.code == "XAmzContentSHA256Mismatch", r
                r = c.request("HEAD", f"/{pbucket}/{key}")
                assert r.header("content-length") == str(len(body)), r
        except Exception as e:  # collected, reported below
            errors.append(f"client {n}: {e!r}")
        finally:
            c.close()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [], "\n".join(errors)
    keys = {o["Key"] for page in store_s3.get_paginator("list_objects_v2").paginate(
        Bucket=pbucket) for o in page.get("Contents", [])}
    assert keys == {"probe"} | {f"w{n}/k{i}" for n in range(12) for i in range(12)}


# ---------------------------------------------------------------------------------------
# slow and vanished clients

@pytest.mark.timeout(60)
def test_slowloris_head(make_proxy, pbucket):
    """A head trickled in slower than client_header_timeout (2s) gets 400 RequestTimeout
    within about the timeout, while a well-behaved client is served meanwhile."""
    p = make_proxy(clients=[(*CLIENT, "*")], client_header_timeout="2s", workers=1)
    result = {}

    def trickle():
        c = RawConn("127.0.0.1", p.port)
        t0 = time.monotonic()
        head = f"GET /{pbucket}/probe HTTP/1.1\r\nhost: 127.0.0.1\r\nx-amz-meta-slow: "
        try:
            for b in (head + "z" * 100).encode():
                if select.select([c.sock], [], [], 0)[0]:
                    break           # the answer (or the close) is there: stop sending
                c.send(bytes([b]))
                time.sleep(0.25)
        except OSError:
            pass
        try:
            result["response"] = c.read_response("GET", timeout=10)
        except (EOFError, OSError) as e:
            result["response"] = e
        result["elapsed"] = time.monotonic() - t0
        result["closed"] = c.closed_within(3.0)
        c.close()

    t = threading.Thread(target=trickle)
    t.start()
    good = client(p)
    slowest = 0.0
    try:
        while t.is_alive():
            t0 = time.monotonic()
            r = good.request("GET", f"/{pbucket}/probe")
            slowest = max(slowest, time.monotonic() - t0)
            assert r.status == 200 and r.body == PROBE, r
            time.sleep(0.1)
    finally:
        good.close()
        t.join()
    r = result["response"]
    assert not isinstance(r, Exception), f"no answer, only {r!r}"
    assert_error(r, 400, "RequestTimeout")
    assert result["closed"]
    e = logscan.wait_access(p, lambda e: e["request_id"] == r.header("x-amz-request-id"))
    assert (e["status"], e.get("error")) == (400, "RequestTimeout"), e
    assert 1.5 <= result["elapsed"] <= 6.0, result
    assert slowest < 1.0, f"a well-behaved request took {slowest:.2f}s during the slowloris"


@pytest.mark.timeout(60)
@pytest.mark.parametrize("existed", [False, True], ids=["new", "existing"])
def test_slow_body(make_proxy, pbucket, store_s3, existed):
    """A body that stops coming for longer than client_body_timeout (2s): the connection is
    closed and nothing is committed."""
    p = make_proxy(clients=[(*CLIENT, "*")], client_body_timeout="2s")
    before = put_old(store_s3, pbucket, "slow") if existed else None
    c = client(p)
    body = s3util.payload(256 * 1024, seed=11)
    data = c.raw("PUT", f"/{pbucket}/slow", body=body)
    conn = c.connect()
    conn.send(data[:len(data) - 100 * 1024])
    t0 = time.monotonic()
    assert conn.closed_within(8.0), "the proxy kept waiting for the body"
    elapsed = time.monotonic() - t0
    assert 1.5 <= elapsed <= 5.0, elapsed
    conn.close()
    logscan.wait_access(p, lambda e: e["key"] == "slow" and e["method"] == "PUT")
    assert at_store(store_s3, pbucket, "slow") == before
    served(p, pbucket)


@pytest.mark.timeout(60)
def test_refused_upload_then_stall(make_proxy, pbucket, store_s3):
    """An upload refused before its body is in (bad signature), whose client then stops
    sending: the proxy answers 403 at once and, while it reads the rest to drop it, still
    closes the connection after client_body_timeout (2s) instead of waiting forever."""
    p = make_proxy(clients=[(*CLIENT, "*")], client_body_timeout="2s",
                   client_idle_timeout="30s")
    c = client(p).with_keys(CLIENT[0], CLIENT[1] + "wrong")
    body = s3util.payload(512 * 1024, seed=15)
    data = c.raw("PUT", f"/{pbucket}/stall", body=body)
    conn = c.connect()
    conn.send(data[:len(data) - 400 * 1024])
    r = conn.read_response("PUT", timeout=5)
    assert_error(r, 403, "SignatureDoesNotMatch")
    t0 = time.monotonic()
    assert conn.closed_within(8.0), "a stalled client held the connection after its answer"
    assert 1.5 <= time.monotonic() - t0 <= 5.0
    conn.close()
    assert at_store(store_s3, pbucket, "stall") is None
    served(p, pbucket)


def _send_for(conn, seconds, chunk=b"L" * 65536):
    """Sends CHUNK over and over for SECONDS; the exception that stopped it, else None."""
    end = time.monotonic() + seconds
    try:
        while time.monotonic() < end:
            conn.sock.sendall(chunk)
    except OSError as e:
        return e
    return None


@pytest.mark.timeout(60)
@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
def test_refused_large_upload_lingers(make_proxy, pbucket, store_s3, tls):
    """An upload refused early (bad signature) with more body to come than is read to keep
    the connection: after the 403 the proxy closes its side but goes on reading and dropping
    what the client still sends, so the client's sends are not answered by a reset (which
    can destroy the 403 before the client reads it). It closes after 2 s of quiet."""
    p = make_proxy(clients=[(*CLIENT, "*")], client_idle_timeout="30s")
    c = client(p, tls=tls).with_keys(CLIENT[0], CLIENT[1] + "wrong")
    body = s3util.payload(8 * 1024 * 1024, seed=16)
    data = c.raw("PUT", f"/{pbucket}/linger", body=body)
    conn = c.connect()
    conn.send(data[:len(data) - 6 * 1024 * 1024])
    assert_error(conn.read_response("PUT", timeout=5), 403, "SignatureDoesNotMatch")
    conn.send(data[len(data) - 6 * 1024 * 1024:])   # the rest of the declared body
    err = _send_for(conn, 1.0)                      # and more: a client that has not looked
    assert err is None, f"the proxy reset the connection while the client sent: {err!r}"
    if not tls:
        # our FIN came after the answer: the client sees the end of the stream
        assert conn.closed_within(1.0)
    # quiet now: the proxy closes within its 2 s, and further sends meet a reset
    time.sleep(3.5)
    assert _send_for(conn, 2.0) is not None, "the proxy still held the connection"
    conn.close()
    assert at_store(store_s3, pbucket, "linger") is None
    served(p, pbucket)


@pytest.mark.timeout(60)
def test_idle_connections_closed(make_proxy, pbucket):
    """A kept-alive connection idle for client_idle_timeout (2s) is closed; so is one that
    never sends a byte (client_header_timeout, 2s)."""
    p = make_proxy(clients=[(*CLIENT, "*")], client_idle_timeout="2s",
                   client_header_timeout="2s")
    c = client(p)
    conn = c.connect()
    silent = RawConn("127.0.0.1", p.port)
    t0 = time.monotonic()
    served(p, pbucket, conn=conn)
    assert not conn.closed_within(1.0), "closed well before the idle timeout"
    served(p, pbucket, conn=conn)           # the idle clock restarts after a request
    t1 = time.monotonic()
    assert conn.closed_within(6.0)
    assert 1.5 <= time.monotonic() - t1 <= 4.0
    assert silent.closed_within(6.0 - (time.monotonic() - t0))
    assert time.monotonic() - t0 >= 1.5
    conn.close()
    silent.close()
    # a TLS client that never starts its handshake is dropped the same way
    t0 = time.monotonic()
    raw_tls = RawConn("127.0.0.1", p.tls_port)
    assert raw_tls.closed_within(6.0)
    assert 1.5 <= time.monotonic() - t0 <= 4.0
    raw_tls.close()
    served(p, pbucket)


@pytest.mark.timeout(60)
def test_max_connections(make_proxy, pbucket):
    """max_connections 20: of 40 connections the first 20 stay and work, the other 20 are
    closed at once; after some close, new ones are served again."""
    p = make_proxy(clients=[(*CLIENT, "*")], max_connections=20, workers=1,
                   client_idle_timeout="30s", client_header_timeout="30s")
    time.sleep(0.2)   # the readiness probes of bed.Proxy.start() are gone
    conns = [RawConn("127.0.0.1", p.port) for _ in range(40)]
    time.sleep(0.5)
    open_ = [c for c in conns if not c.closed_within(0.05)]
    closed = [c for c in conns if c not in open_]
    assert len(open_) == 20, f"{len(open_)} connections open"
    assert conns[:20] == open_, "the first 20 should be the ones kept"
    c = client(p)
    for conn in open_:
        served(p, pbucket, conn=conn)
    extra = RawConn("127.0.0.1", p.port)
    assert extra.closed_within(2.0), "a connection beyond the limit was kept"
    for conn in open_[:10] + closed + [extra]:
        conn.close()
    time.sleep(0.3)
    fresh = [RawConn("127.0.0.1", p.port) for _ in range(5)]
    for conn in fresh:
        served(p, pbucket, conn=conn)
    for conn in open_[10:]:
        served(p, pbucket, conn=conn)
    for conn in fresh + open_[10:]:
        conn.close()
    c.close()


@pytest.mark.timeout(120)
def test_slow_reader(make_proxy, pbucket, store_s3):
    """A 64 MiB GET read slowly: the proxy holds back the store instead of buffering the
    object (memory stays flat), the bytes all arrive intact; a client that stops reading
    for longer than client_send_timeout (3s) is cut off, and the proxy serves on."""
    big = s3util.payload(64 * 1024 * 1024, seed=19)
    store_s3.put_object(Bucket=pbucket, Key="big", Body=big)
    p = make_proxy(clients=[(*CLIENT, "*")], client_send_timeout="3s", workers=1)
    c = client(p)
    served(p, pbucket)
    rss0 = p.rss_kb()
    conn = RawConn("127.0.0.1", p.port, rcvbuf=64 * 1024)
    conn.send(c.raw("GET", f"/{pbucket}/big"))
    got = 0
    conn.sock.settimeout(10)
    while got < 1024 * 1024:
        got += len(conn.sock.recv(65536))
    time.sleep(2.0)                                    # not reading, below the timeout
    grown = p.rss_kb() - rss0
    assert grown < 24 * 1024, f"the proxy grew by {grown} kB for a reader that paused"
    rest = bytearray()
    while got + len(rest) < len(big) + 200:            # head + body, then EOF or timeout
        try:
            d = conn.sock.recv(1 << 20)
        except socket.timeout:
            break
        if not d:
            break
        rest += d
        if rest.endswith(big[-4096:]):
            break
    assert bytes(rest).endswith(big[-1024 * 1024:]), "the object did not arrive whole"
    conn.close()

    stuck = RawConn("127.0.0.1", p.port, rcvbuf=64 * 1024)
    stuck.send(c.raw("GET", f"/{pbucket}/big"))
    time.sleep(6.0)                                    # well past client_send_timeout
    received = 0
    stuck.sock.settimeout(5)
    try:
        while True:
            d = stuck.sock.recv(1 << 20)
            if not d:
                break
            received += len(d)
    except (socket.timeout, ConnectionResetError):
        pass
    assert received < len(big) / 2, f"{received} bytes: the stuck client was not cut off"
    stuck.close()
    served(p, pbucket)
    c.close()


@pytest.mark.parametrize("payload", ["sha256", "unsigned"])
@pytest.mark.parametrize("existed", [False, True], ids=["new", "existing"])
def test_client_disconnects_mid_upload(hp, pbucket, store_s3, payload, existed):
    """Half of a 10 MiB body, then the client hangs up: nothing partial at the store, and
    the access log says 499."""
    before = put_old(store_s3, pbucket, "half") if existed else None
    c = client(hp)
    body = s3util.payload(10 * 1024 * 1024, seed=12)
    data = c.raw("PUT", f"/{pbucket}/half", body=body,
                 payload=None if payload == "sha256" else awsv4.UNSIGNED)
    conn = c.connect()
    conn.send(data[:len(data) - len(body) // 2])
    time.sleep(0.3)
    conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
    conn.close()
    e = logscan.wait_access(hp, lambda e: e["bucket"] == pbucket and e["key"] == "half"
                            and e["method"] == "PUT")
    assert e["status"] == 499, e
    assert 0 < e["bytes_in"] < len(body), e
    assert at_store(store_s3, pbucket, "half") == before
    time.sleep(0.5)   # a store that was handed the whole body would have committed by now
    assert at_store(store_s3, pbucket, "half") == before
    served(hp, pbucket)


# ---------------------------------------------------------------------------------------
# the store away or stalled

def test_store_unreachable(make_proxy, pbucket):
    port = bed.free_port()   # reserved, nobody listens on it
    try:
        p = make_proxy(clients=[(*CLIENT, "*")], upstream=f"http://127.0.0.1:{port}",
                       upstream_connect_timeout="1s")
        c = client(p)
        conn = c.connect()
        for method, body in [("GET", b""), ("PUT", b"x" * 1000), ("GET", b"")]:
            t0 = time.monotonic()
            r = c.request(method, f"/{pbucket}/k", body=body, conn=conn)
            assert_error(r, 503, "ServiceUnavailable")
            assert not r.closes, r
            assert time.monotonic() - t0 < 3.0
        conn.close()
        e = logscan.wait_access(p, lambda e: e["method"] == "PUT")
        assert e["status"] == 503 and e["error"] == "ServiceUnavailable", e
    finally:
        bed.release_port(port)


class BlackHole:
    """A TCP server that accepts, reads and never answers."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.conns = []
        self.stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        self.sock.settimeout(0.1)
        while not self.stop:
            try:
                c, _ = self.sock.accept()
                c.setblocking(False)
                self.conns.append(c)
            except socket.timeout:
                pass
            except OSError:
                return
            for c in self.conns:
                try:
                    c.recv(1 << 16)
                except OSError:
                    pass

    def close(self):
        self.stop = True
        self.thread.join()
        for c in self.conns:
            c.close()
        self.sock.close()


@pytest.mark.timeout(60)
def test_store_too_slow(make_proxy, pbucket):
    hole = BlackHole()
    try:
        p = make_proxy(clients=[(*CLIENT, "*")], upstream=f"http://127.0.0.1:{hole.port}",
                       upstream_first_byte_timeout="1s", upstream_io_timeout="1s")
        c = client(p)
        conn = c.connect()
        for method, body in [("GET", b""), ("PUT", b"y" * 5000), ("HEAD", b"")]:
            t0 = time.monotonic()
            r = c.request(method, f"/{pbucket}/k", body=body, conn=conn)
            elapsed = time.monotonic() - t0
            assert r.status == 503, r
            if method != "HEAD":
                assert r.code == "ServiceUnavailable", r
            assert 0.8 <= elapsed <= 4.0, (method, elapsed)
        conn.close()
        assert len(hole.conns) >= 1
    finally:
        hole.close()


class FakeStore:
    """A tiny HTTP "store" whose answer depends on the last path segment of the request:
    ok, truncated (Content-Length 1000, 500 bytes, close), garbage (not HTTP), hangup
    (closes without answering), stall (head and 100 bytes, then nothing), hop (hop-by-hop
    headers and a chunked body that the proxy must not pass on as they are)."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.held = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(c,), daemon=True).start()

    def _one(self, c):
        data = b""
        while b"\r\n\r\n" not in data:
            d = c.recv(65536)
            if not d:
                c.close()
                return
            data += d
        what = data.split(b" ", 2)[1].rsplit(b"/", 1)[-1].split(b"?")[0].decode()
        if what == "ok":
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nConnection: close\r\n"
                      b"Content-Type: text/plain\r\n\r\nfine")
        elif what == "truncated":
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"t" * 500)
        elif what == "garbage":
            c.sendall(b"THIS IS NOT HTTP\r\n\r\n")
        elif what == "hangup":
            pass
        elif what == "stall":
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"s" * 100)
            self.held.append(c)
            return
        elif what == "hop":
            c.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
                      b"Connection: close\r\nKeep-Alive: timeout=99\r\n"
                      b"Proxy-Connection: keep-alive\r\nUpgrade: h2c\r\nTrailer: x-t\r\n"
                      b"x-amz-meta-kept: yes\r\n\r\n"
                      b"5\r\nhello\r\n6\r\n world\r\n0\r\nx-t: 1\r\n\r\n")
        c.close()

    def close(self):
        self.sock.close()
        for c in self.held:
            c.close()


@pytest.mark.timeout(60)
def test_store_misbehaves(make_proxy):
    """A store that truncates, babbles, hangs up or stalls: the client gets a 503 when no
    answer has started, a closed connection when one had (never a desynchronised keep-alive),
    and hop-by-hop headers of the store are not passed on."""
    fake = FakeStore()
    try:
        p = make_proxy(clients=[(*CLIENT, "*")], upstream=f"http://127.0.0.1:{fake.port}",
                       upstream_first_byte_timeout="1s", upstream_io_timeout="1s")
        c = client(p)
        conn = c.connect()
        r = c.request("GET", "/bkt/ok", conn=conn)
        assert r.status == 200 and r.body == b"fine" and not r.closes, r
        for what in ("garbage", "hangup"):
            r = c.request("GET", f"/bkt/{what}", conn=conn)
            assert_error(r, 503, "ServiceUnavailable")
            assert not r.closes, r
        r = c.request("GET", "/bkt/hop", conn=conn)
        assert r.status == 200 and r.body == b"hello world", r
        names = {n.lower() for n, _ in r.headers}
        assert not names & {"keep-alive", "proxy-connection", "upgrade", "trailer"}, r
        assert r.header("x-amz-meta-kept") == "yes" and not r.closes, r
        for what in ("truncated", "stall"):
            conn.send(c.raw("GET", f"/bkt/{what}"))
            t0 = time.monotonic()
            with pytest.raises(EOFError):
                conn.read_response("GET", timeout=10)
            assert time.monotonic() - t0 < 5.0
            conn.close()
            conn = c.connect()
            r = c.request("GET", "/bkt/ok", conn=conn)
            assert r.status == 200 and r.body == b"fine", r
        conn.close()
        e = logscan.wait_access(p, lambda e: e["key"] == "truncated")
        assert e["status"] == 200 and e["bytes_out"] == 500, e
    finally:
        fake.close()


# ---------------------------------------------------------------------------------------
# signals

@pytest.mark.timeout(60)
def test_sighup_reload_keeps_connections(make_proxy, pbucket):
    p = make_proxy(clients=[(*CLIENT, "*")])
    old = client(p)
    new = client(p, NEWKEY)
    conn = old.connect()
    served(p, pbucket, conn=conn)
    r = new.request("GET", f"/{pbucket}/probe", conn=conn)
    assert_error(r, 403, "InvalidAccessKeyId")

    mark = os.path.getsize(p.error_log)
    p.set_clients([(*CLIENT, "*"), (*NEWKEY, "*")])
    logscan.wait_log(p.error_log, "configuration reloaded", start=mark)
    served(p, pbucket, conn=conn, keys=NEWKEY)            # same socket, new key
    served(p, pbucket, conn=conn, keys=CLIENT)

    mark = os.path.getsize(p.error_log)
    p.set_clients([(*NEWKEY, "*")])                        # and a removed key is refused
    logscan.wait_log(p.error_log, "configuration reloaded", start=mark)
    r = old.request("GET", f"/{pbucket}/probe", conn=conn)
    assert_error(r, 403, "InvalidAccessKeyId")
    served(p, pbucket, conn=conn, keys=NEWKEY)
    conn.close()


@pytest.mark.timeout(60)
def test_sighup_broken_config_keeps_running(make_proxy, pbucket):
    p = make_proxy(clients=[(*CLIENT, "*")])
    conn = client(p).connect()
    served(p, pbucket, conn=conn)

    mark = os.path.getsize(p.error_log)
    p.reload(no_such_directive="1")
    logscan.wait_log(p.error_log, "reload refused", start=mark)
    served(p, pbucket, conn=conn)
    served(p, pbucket)

    mark = os.path.getsize(p.error_log)
    del p.directives["no_such_directive"]
    p.write_files()
    os.chmod(p.creds_path, 0o644)                          # credentials readable by others
    p.signal(signal.SIGHUP)
    logscan.wait_log(p.error_log, "reload refused", start=mark)
    served(p, pbucket, conn=conn)

    mark = os.path.getsize(p.error_log)
    os.chmod(p.creds_path, 0o600)
    p.signal(signal.SIGHUP)
    logscan.wait_log(p.error_log, "configuration reloaded", start=mark)
    served(p, pbucket, conn=conn)
    conn.close()
    assert p.is_alive()


@pytest.mark.timeout(90)
def test_sigterm_drains_upload(make_proxy, pbucket, store_s3):
    """SIGTERM during a slow 50 MiB upload: the upload completes, new connections are
    refused, and the process exits 0."""
    p = make_proxy(clients=[(*CLIENT, "*")])
    c = client(p)
    body = s3util.payload(50 * 1024 * 1024, seed=13)
    data = c.raw("PUT", f"/{pbucket}/big", body=body)
    conn = c.connect()
    result = {}
    started = threading.Event()

    def upload():
        try:
            step = 1024 * 1024
            for i in range(0, len(data), step):
                conn.send(data[i:i + step])
                if i >= 4 * step:
                    started.set()
                time.sleep(0.03)
            result["response"] = conn.read_response("PUT", timeout=30)
        except Exception as e:  # reported below
            result["response"] = e
        started.set()

    t = threading.Thread(target=upload)
    t.start()
    assert started.wait(20)
    p.signal(signal.SIGTERM)
    refused = False
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not refused:
        try:
            probe = RawConn("127.0.0.1", p.port, timeout=2)
        except (ConnectionRefusedError, ConnectionResetError):
            refused = True
            break
        refused = probe.closed_within(0.5)
        probe.close()
        time.sleep(0.05)
    assert refused, "new connections were still accepted after SIGTERM"
    assert t.is_alive(), "the upload finished before the check; make it slower"
    t.join(60)
    r = result["response"]
    assert not isinstance(r, Exception), repr(r)
    assert r.status == 200 and r.header("etag") == '"%s"' % s3util.md5_hex(body), r
    assert r.closes, "the drained connection should say Connection: close"
    conn.close()
    assert p.proc.wait(timeout=30) == 0
    assert at_store(store_s3, pbucket, "big") == ('"%s"' % s3util.md5_hex(body), len(body))


# ---------------------------------------------------------------------------------------
# the command line

def test_check_config(make_proxy):
    p = make_proxy(start=False)
    r = p.check_config()
    assert r.returncode == 0 and "valid" in r.stdout, r
    lines = p.conf_path.read_text().splitlines()
    for bad, needle in [("client_header_timeout banana", "client_header_timeout"),
                        ("no_such_directive 1", "unknown directive"),
                        ("listen nowhere", "listen")]:
        broken = p.dir / "broken.conf"
        broken.write_text("\n".join(lines[:3] + [bad] + lines[3:]) + "\n")
        r = subprocess.run([str(p.binary), "-t", "-c", str(broken)], capture_output=True,
                           text=True, timeout=30, env=p.env())
        assert r.returncode == 1, r
        assert f"{broken}:4:" in r.stderr and needle in r.stderr, r.stderr
    missing = p.dir / "nocreds.conf"
    missing.write_text("upstream http://127.0.0.1:1\ncredentials_file /nonexistent/creds\n")
    r = subprocess.run([str(p.binary), "-t", "-c", str(missing)], capture_output=True,
                       text=True, timeout=30, env=p.env())
    assert r.returncode == 1 and "/nonexistent/creds" in r.stderr, r


def test_version_and_help():
    binary = bed.build_dir() / "s3tee-proxy"
    version = (bed.REPO / "VERSION").read_text().strip()
    for opt in ("--version", "-v"):
        r = subprocess.run([str(binary), opt], capture_output=True, text=True, timeout=30)
        assert r.returncode == 0 and r.stdout.strip() == f"s3tee-proxy {version}", r
    for opt in ("--help", "-h"):
        r = subprocess.run([str(binary), opt], capture_output=True, text=True, timeout=30)
        assert r.returncode == 0 and "usage: s3tee-proxy" in r.stdout and "-t" in r.stdout, r
    r = subprocess.run([str(binary), "--no-such-option"], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 2 and "usage" in r.stderr, r
    r = subprocess.run([str(binary)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "usage" in r.stderr, r


# ---------------------------------------------------------------------------------------
# the access log, and what no log may hold

FIELDS = {"time": str, "request_id": str, "client": str, "access_key": str, "method": str,
          "bucket": str, "key": str, "status": int, "bytes_in": int, "bytes_out": int,
          "upstream_ms": (int, float), "total_ms": (int, float)}


def test_access_log_lines(hp, pbucket):
    c = client(hp)
    key = "log dir/ä key+1"
    body = s3util.payload(1234, seed=14)
    try:
        n0 = len(logscan.access_entries(hp))
        assert c.request("PUT", awsv4.key_path(pbucket, key), body=body).status == 200
        r = c.request("GET", awsv4.key_path(pbucket, key))
        assert r.status == 200 and r.body == body
        miss = c.request("GET", awsv4.key_path(pbucket, "missing"))
        assert miss.status == 404
        bad = c.with_keys("AKIDUNKNOWN", "x" * 20).raw("GET", awsv4.key_path(pbucket, key))
        denied = c.send_raw(bad, "GET")
        assert denied.status == 403
    finally:
        c.close()
    logscan.wait_access(hp, lambda e: e["key"] == key and e["status"] == 403)
    mine = [e for e in logscan.access_entries(hp)[n0:] if e["bucket"] == pbucket]
    assert len(mine) == 4, mine          # one line per request
    put, get, missing, refused = mine
    for e in mine:
        for name, kind in FIELDS.items():
            assert isinstance(e.get(name), kind), (name, e)
        assert e["client"].startswith("127.0.0.1:")
        assert e["total_ms"] >= e["upstream_ms"] >= 0
        assert e["time"].endswith("Z") and "T" in e["time"]
    assert (put["method"], put["key"], put["status"], put["bytes_in"], put["access_key"]) == \
        ("PUT", key, 200, 1234, CLIENT[0])
    assert (get["method"], get["status"], get["bytes_out"]) == ("GET", 200, 1234)
    assert get["upstream_ms"] > 0
    assert (missing["key"], missing["status"]) == ("missing", 404)
    assert (refused["status"], refused["error"], refused["access_key"]) == \
        (403, "InvalidAccessKeyId", "-")
    assert refused["request_id"] == denied.xml("RequestId")
    assert len({e["request_id"] for e in mine}) == 4


def test_leak_scanner_finds_leaks(tmp_path):
    """The sweep below would notice a secret or a signature (tested on a fake proxy dir)."""
    d = tmp_path / "proxy-fake"
    d.mkdir()
    (d / "credentials").write_text("client AKIDX sekritValue123 *\nstore AKIDS storeSekrit9\n")
    (d / "access.log").write_text("{}\n")
    (d / "error.log").write_text("nothing here\n")
    assert logscan.find_leaks(dirs=[d]) == []
    (d / "error.log").write_text("oops storeSekrit9\n")
    assert len(logscan.find_leaks(dirs=[d])) == 1
    sig = awsv4.Signer("AKIDX", "sekritValue123").sign("GET", "/", [("host", "h")]).signature
    (d / "error.log").write_text(f"x {sig} y\n")
    assert len(logscan.find_leaks(dirs=[d])) == 1
    (d / "error.log").write_text("Signature=" + "ab" * 32 + "\n")
    assert len(logscan.find_leaks(dirs=[d])) == 1


def test_zz_logs_hold_no_secrets_or_signatures(hp):
    assert logscan.access_entries(hp)
    leaks = logscan.find_leaks(extra_secrets=[CLIENT[1], NEWKEY[1]])
    assert leaks == [], leaks
