"""awsv4.py - a small, explicit AWS SigV4 signer for hand-made S3 requests.

The integration tests build raw HTTP requests byte by byte (lib/rawhttp.py) so they can
send what no SDK would: a tampered header, a wrong region, a bad chunk signature. This
module computes the signatures for them; nothing here talks to the network.

    s = Signer("AKIDCLIENT", "secretclient")
    signed = s.sign("PUT", "/bucket/key", [("host", "127.0.0.1:8080")], payload_hash=sha)
    signed.headers      # the input headers + x-amz-date, x-amz-content-sha256, authorization
    signed.signature    # 64 hex, the seed of an aws-chunked body
    url = s.presign("GET", "/bucket/key", "127.0.0.1:8080", expires=60)

    body = aws_chunked_signed(signed, payload, chunk_size=65536)
    body = aws_chunked_unsigned_trailer(payload, 65536, "x-amz-checksum-crc32", crc32_b64(payload))

Every signature computed here is remembered in SENT_SIGNATURES, so a test can check at
the end that none of them ever made it into a proxy log.
"""

import base64
import hashlib
import hmac
import time
import urllib.parse
import zlib

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
UNSIGNED = "UNSIGNED-PAYLOAD"
STREAMING_SIGNED = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
STREAMING_SIGNED_TRAILER = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
STREAMING_UNSIGNED_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"

SENT_SIGNATURES = set()   # every request, chunk and presign signature made in this process


def sha256_hex(data):
    return hashlib.sha256(data).hexdigest()


def md5_b64(data):
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def crc32_b64(data):
    """The x-amz-checksum-crc32 value of DATA: base64 of the big-endian CRC-32."""
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


def amz_date(t=None):
    """'YYYYMMDDTHHMMSSZ' for unix time T (now when None)."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() if t is None else t))


def uri_encode(s, keep_slash=False):
    """S3's URI encoding: only A-Z a-z 0-9 - _ . ~ stay (and '/' with keep_slash)."""
    if isinstance(s, str):
        s = s.encode()
    return urllib.parse.quote(s, safe="-_.~" + ("/" if keep_slash else ""))


def key_path(bucket, key=None):
    """The encoded path-style target of a bucket or an object: '/bucket/a%20b'."""
    return f"/{bucket}" if key is None else f"/{bucket}/{uri_encode(key, keep_slash=True)}"


def canonical_query(query, presigned=False):
    """Canonical form of a raw query string: decoded, re-encoded, sorted, 'name=value'."""
    pairs = []
    for piece in query.split("&"):
        if not piece:
            continue
        name, _, value = piece.partition("=")
        name, value = urllib.parse.unquote(name), urllib.parse.unquote(value)
        if presigned and name == "X-Amz-Signature":
            continue
        pairs.append((uri_encode(name), uri_encode(value)))
    pairs.sort()
    return "&".join(f"{n}={v}" for n, v in pairs)


def _canonical_headers(headers, signed_names):
    out = []
    for name in signed_names:
        values = [" ".join(v.split()) for n, v in headers if n.lower() == name]
        out.append(f"{name}:{','.join(values)}\n")
    return "".join(out)


def _hmac(key, msg):
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def signing_key(secret, date8, region, service="s3"):
    k = _hmac(("AWS4" + secret).encode(), date8)
    k = _hmac(k, region)
    k = _hmac(k, service)
    return _hmac(k, "aws4_request")


class Signed:
    """The result of Signer.sign: the headers to send and what an aws-chunked body needs."""

    def __init__(self, headers, signature, amz_date_, scope, key, canonical_request):
        self.headers = headers
        self.signature = signature
        self.amz_date = amz_date_
        self.scope = scope
        self.key = key
        self.canonical_request = canonical_request

    def header(self, name):
        for n, v in self.headers:
            if n.lower() == name.lower():
                return v
        return None


class Signer:
    def __init__(self, access_key, secret, region="us-east-1", service="s3"):
        self.access_key = access_key
        self.secret = secret
        self.region = region
        self.service = service

    def sign(self, method, target, headers, payload_hash=EMPTY_SHA256, when=None, date=None,
             region=None, cred_date=None, signed_names=None, service=None):
        """Signs a request for TARGET ('/path?query', path already encoded as sent).

        headers       [(name, value)] sent as they are; must contain host
        payload_hash  hex SHA-256, UNSIGNED-PAYLOAD or a STREAMING-* value (None: do not add
                      x-amz-content-sha256 at all)
        when / date   unix time, or an explicit X-Amz-Date string
        region, cred_date, service   override the credential scope (malformed requests)
        signed_names  which headers to sign (default: all of them, lowercased)
        """
        date = date or amz_date(when)
        region = region or self.region
        service = service or self.service
        date8 = cred_date or date[:8]
        hdrs = list(headers) + [("x-amz-date", date)]
        if payload_hash is not None:
            hdrs.append(("x-amz-content-sha256", payload_hash))
        names = signed_names or sorted({n.lower() for n, _ in hdrs})
        path, _, query = target.partition("?")
        creq = "\n".join([method, path, canonical_query(query),
                          _canonical_headers(hdrs, names), ";".join(names),
                          payload_hash if payload_hash is not None else UNSIGNED])
        scope = f"{date8}/{region}/{service}/aws4_request"
        sts = "\n".join(["AWS4-HMAC-SHA256", date, scope, sha256_hex(creq.encode())])
        key = signing_key(self.secret, date8, region, service)
        sig = hmac.new(key, sts.encode(), hashlib.sha256).hexdigest()
        SENT_SIGNATURES.add(sig)
        auth = (f"AWS4-HMAC-SHA256 Credential={self.access_key}/{scope}, "
                f"SignedHeaders={';'.join(names)}, Signature={sig}")
        return Signed(hdrs + [("authorization", auth)], sig, date, scope, key, creq)

    def presign(self, method, target, host, expires=300, when=None, region=None,
                extra_headers=()):
        """A presigned target '/path?...&X-Amz-Signature=...' (payload UNSIGNED-PAYLOAD)."""
        date = amz_date(when)
        region = region or self.region
        scope = f"{date[:8]}/{region}/{self.service}/aws4_request"
        path, _, query = target.partition("?")
        hdrs = [("host", host)] + list(extra_headers)
        names = sorted({n.lower() for n, _ in hdrs})
        params = [("X-Amz-Algorithm", "AWS4-HMAC-SHA256"),
                  ("X-Amz-Credential", f"{self.access_key}/{scope}"),
                  ("X-Amz-Date", date), ("X-Amz-Expires", str(expires)),
                  ("X-Amz-SignedHeaders", ";".join(names))]
        q = "&".join(p for p in [query] + [f"{uri_encode(n)}={uri_encode(v)}" for n, v in params]
                     if p)
        creq = "\n".join([method, path, canonical_query(q), _canonical_headers(hdrs, names),
                          ";".join(names), UNSIGNED])
        sts = "\n".join(["AWS4-HMAC-SHA256", date, scope, sha256_hex(creq.encode())])
        sig = hmac.new(signing_key(self.secret, date[:8], region, self.service), sts.encode(),
                       hashlib.sha256).hexdigest()
        SENT_SIGNATURES.add(sig)
        return f"{path}?{q}&X-Amz-Signature={sig}"


# ---------------------------------------------------------------------------------------
# aws-chunked bodies

def chunk_signature(signed, prev_sig, data):
    sts = "\n".join(["AWS4-HMAC-SHA256-PAYLOAD", signed.amz_date, signed.scope, prev_sig,
                     EMPTY_SHA256, sha256_hex(data)])
    sig = hmac.new(signed.key, sts.encode(), hashlib.sha256).hexdigest()
    SENT_SIGNATURES.add(sig)
    return sig


def _pieces(payload, chunk_size):
    return [payload[i:i + chunk_size] for i in range(0, len(payload), chunk_size)]


def aws_chunked_signed_length(size, chunk_size):
    """Encoded length of a STREAMING-AWS4-HMAC-SHA256-PAYLOAD body of SIZE payload bytes."""
    n = 0
    for i in range(0, size, chunk_size):
        c = min(chunk_size, size - i)
        n += len(f"{c:x}") + len(";chunk-signature=") + 64 + 2 + c + 2
    return n + len("0;chunk-signature=") + 64 + 4


def trailer_signature(signed, prev_sig, trailer):
    sts = "\n".join(["AWS4-HMAC-SHA256-TRAILER", signed.amz_date, signed.scope, prev_sig,
                     sha256_hex(trailer)])
    sig = hmac.new(signed.key, sts.encode(), hashlib.sha256).hexdigest()
    SENT_SIGNATURES.add(sig)
    return sig


def _flip(sig):
    return ("1" if sig[0] != "1" else "2") + sig[1:]


def aws_chunked_signed(signed, payload, chunk_size=65536, corrupt=None, trailer=None,
                       corrupt_trailer=False):
    """The body of a STREAMING-AWS4-HMAC-SHA256-PAYLOAD upload, chained from SIGNED's seed.
    CORRUPT: index of a chunk whose signature gets one digit changed (the final empty chunk
    is index len(chunks)). TRAILER (name, value): the -PAYLOAD-TRAILER form, with a signed
    trailer (CORRUPT_TRAILER: its signature wrong)."""
    out, prev = [], signed.signature
    chunks = _pieces(payload, chunk_size) + [b""]
    for i, data in enumerate(chunks):
        sig = chunk_signature(signed, prev, data)
        prev = sig
        if corrupt == i:
            sig = _flip(sig)
        last = i == len(chunks) - 1
        out.append(f"{len(data):x};chunk-signature={sig}\r\n".encode() + data
                   + (b"" if last and trailer else b"\r\n"))
    if trailer:
        name, value = trailer
        sig = trailer_signature(signed, prev, f"{name.lower()}:{value}\n".encode())
        if corrupt_trailer:
            sig = _flip(sig)
        out.append(f"{name}:{value}\r\nx-amz-trailer-signature:{sig}\r\n\r\n".encode())
    return b"".join(out)


def aws_chunked_unsigned_trailer(payload, chunk_size=65536, trailer_name=None, trailer_value=None):
    """The body of a STREAMING-UNSIGNED-PAYLOAD-TRAILER upload with one trailer field."""
    out = [f"{len(d):x}\r\n".encode() + d + b"\r\n" for d in _pieces(payload, chunk_size)]
    out.append(b"0\r\n")
    if trailer_name:
        out.append(f"{trailer_name}:{trailer_value}\r\n".encode())
    out.append(b"\r\n")
    return b"".join(out)
