#!/usr/bin/python3
"""seeds.py - writes the seed corpora under tests/fuzz/corpus/<target>/.

Requests are signed by botocore (what awscli and boto3 send); chunked bodies are framed and
signed here the way the AWS SigV4 streaming examples are. Each file starts with the selector
bytes its target reads first (see the comment at the top of tests/fuzz/fuzz_<target>.c).
Run from the top directory: /usr/bin/python3 tests/fuzz/seeds.py
"""
import hashlib
import hmac
import os
import sys
import zlib
import base64
from urllib.parse import urlsplit

from botocore.auth import S3SigV4Auth, S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
CREDS = Credentials("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")


def put(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def signed(method, url, body=b"", headers=None, sha=None):
    req = AWSRequest(method=method, url=url, data=body, headers=headers or {})
    if sha:
        req.headers["X-Amz-Content-SHA256"] = sha
    S3SigV4Auth(CREDS, "s3", "us-east-1").add_auth(req)
    parts = urlsplit(req.url)
    target = parts.path + ("?" + parts.query if parts.query else "")
    head = "%s %s HTTP/1.1\r\nHost: %s\r\n" % (method, target, parts.netloc)
    head += "User-Agent: aws-cli/1.27.36 Python/3.11.2 Linux/6.1.0 botocore/1.29.27\r\n"
    for k, v in req.headers.items():
        head += "%s: %s\r\n" % (k, v)
    if body:
        head += "Content-Length: %d\r\n" % len(body)
    head += "\r\n"
    return head.encode(), parts.netloc, target, req.headers


def presigned(method, url, expires=3600):
    req = AWSRequest(method=method, url=url)
    S3SigV4QueryAuth(CREDS, "s3", "us-east-1", expires=expires).add_auth(req)
    return urlsplit(req.url)


EP = "http://127.0.0.1:8000"
VH = "http://photos.s3.example.com:8000"
REQS = [
    ("put-object", "PUT", EP + "/photos/2024/cat.jpg", b"hello world", {"Content-Type": "image/jpeg"}),
    ("get-range", "GET", EP + "/photos/2024/cat.jpg", b"", {"Range": "bytes=0-99"}),
    ("list-v2", "GET", EP + "/photos?list-type=2&prefix=2024%2F&delimiter=%2F&encoding-type=url", b"", {}),
    ("create-mpu", "POST", EP + "/photos/big.bin?uploads", b"", {}),
    ("upload-part", "PUT", EP + "/photos/big.bin?partNumber=3&uploadId=2~abcDEF", b"part", {}),
    ("complete-mpu", "POST", EP + "/photos/big.bin?uploadId=2~abcDEF",
     b"<CompleteMultipartUpload><Part><ETag>\"a\"</ETag><PartNumber>1</PartNumber></Part>"
     b"</CompleteMultipartUpload>", {}),
    ("delete-objects", "POST", EP + "/photos?delete",
     b"<Delete><Object><Key>a</Key></Object></Delete>", {"Content-MD5": "1B2M2Y8AsgTpgAmY7PhCfg=="}),
    ("copy", "PUT", EP + "/photos/copy%20of%20cat.jpg", b"", {"x-amz-copy-source": "photos/2024/cat.jpg"}),
    ("tagging", "PUT", EP + "/photos/cat.jpg?tagging",
     b"<Tagging><TagSet><Tag><Key>k</Key><Value>v</Value></Tag></TagSet></Tagging>", {}),
    ("vhost-get", "GET", VH + "/a%2Bb/c%C3%A9+d.txt?versionId=null", b"", {}),
    ("delete", "DELETE", EP + "/photos/%E2%9C%93/%20x", b"", {}),
    ("head-bucket", "HEAD", EP + "/photos", b"", {}),
    ("list-buckets", "GET", EP + "/", b"", {}),
]

# --- http1 / s3addr / auth ------------------------------------------------------------------
METHODS = ["GET", "PUT", "POST", "DELETE", "HEAD", "OPTIONS", "get"]
for name, method, url, body, hdrs in REQS:
    head, host, target, h = signed(method, url, body, hdrs)
    put("http1", name, b"\x00" + head)
    put("s3addr", name, bytes([METHODS.index(method), 1 if "copy" in name else 0])
        + ("%s\n%s" % (host, target)).encode())
    put("auth", name, b"\x00" + ("%s\n%s" % (h["Authorization"], h["X-Amz-Date"])).encode())
    q = presigned(method, url)
    put("auth", "presigned-" + name, b"\x01" + q.query.encode())
    put("http1", "presigned-" + name, ("\x00%s %s?%s HTTP/1.1\r\nHost: %s\r\n\r\n"
                                       % (method, q.path, q.query, q.netloc)).encode())
put("http1", "absolute-form", b"\x00GET http://s3.example.com:8000/b/k?acl HTTP/1.1\r\nHost: s3.example.com:8000\r\n\r\n")
put("http1", "http10-keepalive", b"\x00GET /b/k HTTP/1.0\r\nHost: h\r\nConnection: keep-alive\r\n\r\n")
put("http1", "expect-continue", b"\x00PUT /b/k HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\nhello")
put("http1", "te-chunked", b"\x00PUT /b/k HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n")
put("http1", "tiny-limits", b"\x01GET /b/k HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\nE: 5\r\n\r\n")
put("http1", "chunked-body", b"\x02\x07" + b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nx-t: y\r\n\r\nGET /")
put("http1", "chunked-roundtrip", b"\x03\x05\x11\x03" + b"some body bytes, " * 8)
put("s3addr", "vhost-caps", b"\x00\x00PHOTOS.S3.Other.Test.\n/k?uploads")
put("s3addr", "path-double-slash", b"\x01\x00s3.example.com\n/bkt//a/b/?partNumber=1&uploadId=x&x-id=PutObject")
put("auth", "no-space", b"\x00AWS4-HMAC-SHA256 Credential=AKID/20240101/eu-west-1/s3/aws4_request,SignedHeaders=host;x-amz-date,Signature=" + b"0" * 64 + b"\n20240101T120000Z")
put("auth", "sigv2", b"\x01AWSAccessKeyId=AKID&Expires=1700000000&Signature=abc%3D")

# --- chunked --------------------------------------------------------------------------------
DATE, SCOPE = "20130524T000000Z", "20130524/us-east-1/s3/aws4_request"
SEED = "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"


def hm(k, m):
    return hmac.new(k, m.encode() if isinstance(m, str) else m, hashlib.sha256).digest()


KEY = hm(hm(hm(hm(b"AWS4" + CREDS.secret_key.encode(), "20130524"), "us-east-1"), "s3"), "aws4_request")
E = hashlib.sha256(b"").hexdigest()


def chunk_sig(prev, data):
    sts = "AWS4-HMAC-SHA256-PAYLOAD\n%s\n%s\n%s\n%s\n%s" % (DATE, SCOPE, prev, E, hashlib.sha256(data).hexdigest())
    return hmac.new(KEY, sts.encode(), hashlib.sha256).hexdigest()


def signed_body(chunks, trailer=None):
    out, prev = b"", SEED
    for c in chunks + [b""]:
        prev = chunk_sig(prev, c)
        out += b"%x;chunk-signature=%s\r\n" % (len(c), prev.encode()) + c + (b"\r\n" if c else b"")
    if trailer is None:
        return out + b"\r\n"
    canon = ("%s:%s\n" % trailer).encode()
    sts = "AWS4-HMAC-SHA256-TRAILER\n%s\n%s\n%s\n%s" % (DATE, SCOPE, prev, hashlib.sha256(canon).hexdigest())
    sig = hmac.new(KEY, sts.encode(), hashlib.sha256).hexdigest()
    return out + canon[:-1] + b"\r\nx-amz-trailer-signature:" + sig.encode() + b"\r\n\r\n"


data = [b"a" * 100, b"b" * 37, b"hello"]
crc32 = base64.b64encode(zlib.crc32(b"".join(data)).to_bytes(4, "big")).decode()
# selector: bits 0-1 test (0 raw), bits 2-3 mode (0 signed, 1 signed trailer, 2 unsigned), bits 4-6 alg
put("chunked", "raw-signed", bytes([0x00, 0x05, 0]) + signed_body(data))
put("chunked", "raw-signed-trailer-crc32", bytes([0x04 | 0x10, 0x05, 0]) + signed_body(data, ("x-amz-checksum-crc32", crc32)))
unsigned = b"".join(b"%x\r\n" % len(c) + c + b"\r\n" for c in data) + b"0\r\nx-amz-checksum-crc32:" + crc32.encode() + b"\r\n\r\n"
put("chunked", "raw-unsigned-crc32", bytes([0x08 | 0x10, 0xff, 0]) + unsigned)
put("chunked", "raw-unsigned-none", bytes([0x08, 0x01, 0]) + b"3\r\nabc\r\n0\r\n\r\n")
for sel, name in [(0x01, "roundtrip-signed"), (0x05 | 0x20, "roundtrip-signed-crc32c"),
                  (0x09 | 0x40, "roundtrip-unsigned-sha256"), (0x0d | 0x50, "roundtrip-unsigned-crc64"),
                  (0x03, "tamper-signed"), (0x07 | 0x30, "tamper-signed-sha1")]:
    put("chunked", name, bytes([sel, 0x09, 0x2a]) + b"The quick brown fox jumps over the lazy dog. " * 3)
