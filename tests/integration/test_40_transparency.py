"""Transparency: the proxy answers like the store it fronts.

One sequence of S3 operations (bucket life cycle, objects of several sizes, multipart,
ranges, listings v1/v2, copy, tagging, deletes, conditionals and errors) runs once straight
at RGW and once through the proxy, each on its own bucket, with raw signed requests
(lib/rawhttp.py). The two transcripts must agree step by step: status, S3 error code,
ETag, body, and every response header except the few that must differ (date, request id,
connection management), which are compared for presence only. Bucket names have equal
length and are replaced by a placeholder; request ids, upload ids and timestamps inside XML
bodies are masked.
"""

import hashlib
import re
import uuid

import pytest

from lib import awsv4, s3util
from lib.rawhttp import RawS3

MiB = 1024 * 1024

# headers compared for presence only / not at all
PRESENCE_ONLY = {"date", "last-modified", "x-amz-request-id", "x-amz-id-2"}
IGNORED = {"connection", "keep-alive", "transfer-encoding", "server"}

XML_MASKS = [
    (re.compile(rb"<LastModified>[^<]*</LastModified>"), b"<LastModified>T</LastModified>"),
    (re.compile(rb"<Initiated>[^<]*</Initiated>"), b"<Initiated>T</Initiated>"),
    (re.compile(rb"<RequestId>[^<]*</RequestId>"), b"<RequestId>R</RequestId>"),
    (re.compile(rb"<HostId>[^<]*</HostId>"), b"<HostId>H</HostId>"),
    (re.compile(rb"<UploadId>[^<]*</UploadId>"), b"<UploadId>U</UploadId>"),
    (re.compile(rb"<NextUploadIdMarker>[^<]*</NextUploadIdMarker>"),
     b"<NextUploadIdMarker>U</NextUploadIdMarker>"),
    (re.compile(rb"<CreationDate>[^<]*</CreationDate>"), b"<CreationDate>T</CreationDate>"),
]


DELETE_ENTRY = re.compile(rb"<(Deleted|Error)>.*?</\1>", re.S)


def _masked(body, bucket):
    body = body.replace(bucket.encode(), b"BUCKET")
    for rx, repl in XML_MASKS:
        body = rx.sub(repl, body)
    if b"<DeleteResult" in body:
        # RGW deletes the objects of one DeleteObjects concurrently: the order of the
        # answers varies from run to run, so compare them sorted
        entries = sorted(m.group(0) for m in DELETE_ENTRY.finditer(body))
        body = DELETE_ENTRY.sub(b"", body).replace(b"</DeleteResult>",
                                                   b"".join(entries) + b"</DeleteResult>")
    return body


class Transcript:
    """Runs the steps against one endpoint/bucket and keeps a normalised record of each."""

    def __init__(self, s3, bucket, missing_bucket):
        self.s3, self.bucket, self.missing = s3, bucket, missing_bucket
        self.steps = []

    def _fill(self, s):
        return s.replace("{B}", self.bucket).replace("{MISSING}", self.missing)

    def run(self, name, method, target, headers=(), body=b"", payload=None):
        target = self._fill(target)
        headers = [(n, self._fill(v)) for n, v in headers]
        r = self.s3.request(method, target, headers=headers, body=body, payload=payload)
        rec = {"status": r.status, "code": r.code}
        hdrs = {}
        for n, v in r.headers:
            n = n.lower()
            if n in IGNORED:
                continue
            if n in PRESENCE_ONLY:
                v = "<present>"
            hdrs.setdefault(n, []).append(v.replace(self.bucket, "BUCKET"))
        rec["headers"] = hdrs
        is_xml = r.body.startswith(b"<?xml") or r.body.startswith(b"<")
        rec["body"] = _masked(r.body, self.bucket) if is_xml else r.body
        self.steps.append((name, rec))
        return r


def xml_all(body, element):
    return [m.decode() for m in re.findall(rb"<%s>(.*?)</%s>" % (element.encode(),
                                                                   element.encode()), body)]


def sequence(t):
    """The operations; T is a Transcript. Object bodies are deterministic."""
    objects = {"empty": b"", "one": b"1", "dir/a.txt": s3util.payload(1000, 1),
               "dir/sub/b.bin": s3util.payload(64 * 1024 + 3, 2),
               "big.bin": s3util.payload(MiB + 13, 3), "sp ace+plus": b"spaces and plus",
               "ünï/cödé": b"unicode key", "dir/c": b"c"}
    t.run("create bucket", "PUT", "/{B}")
    t.run("head bucket", "HEAD", "/{B}")
    t.run("head missing bucket", "HEAD", "/{MISSING}")
    for key, data in objects.items():
        hdrs = []
        if key == "big.bin":
            hdrs = [("content-type", "application/x-test"), ("x-amz-meta-color", "blue"),
                    ("x-amz-meta-Mixed-Case", "Some Value"), ("cache-control", "max-age=60"),
                    ("content-disposition", 'attachment; filename="big.bin"')]
        t.run(f"put {key}", "PUT", awsv4.key_path("{B}", key), hdrs, data)
    t.run("put unsigned payload", "PUT", "/{B}/unsigned", [], b"u" * 5000,
          payload=awsv4.UNSIGNED)

    # multipart: 5 MiB + 1 KiB
    r = t.run("create multipart", "POST", "/{B}/mp?uploads", [("content-type", "text/x-mp")])
    upload = r.xml("UploadId")
    parts = [s3util.payload(5 * MiB, 4), s3util.payload(1024, 5)]
    etags = []
    for i, part in enumerate(parts, 1):
        r = t.run(f"upload part {i}", "PUT", f"/{{B}}/mp?partNumber={i}&uploadId={upload}",
                  [], part)
        etags.append(r.header("etag"))
    r = t.run("list parts", "GET", f"/{{B}}/mp?uploadId={upload}")
    done = ("<CompleteMultipartUpload>" + "".join(
        f"<Part><PartNumber>{i}</PartNumber><ETag>{e}</ETag></Part>"
        for i, e in enumerate(etags, 1)) + "</CompleteMultipartUpload>").encode()
    t.run("complete multipart", "POST", f"/{{B}}/mp?uploadId={upload}", [], done)
    r = t.run("create multipart to abort", "POST", "/{B}/aborted?uploads")
    t.run("list multipart uploads", "GET", "/{B}?uploads")
    t.run("abort multipart", "DELETE", f"/{{B}}/aborted?uploadId={r.xml('UploadId')}")
    t.run("get multipart object", "GET", "/{B}/mp")
    t.run("get multipart range across parts", "GET", "/{B}/mp",
          [("range", f"bytes={5 * MiB - 10}-{5 * MiB + 9}")])

    # reads
    for key in objects:
        t.run(f"get {key}", "GET", awsv4.key_path("{B}", key))
        t.run(f"head {key}", "HEAD", awsv4.key_path("{B}", key))
    for rng in ["bytes=0-9", "bytes=-5", "bytes=100-", "bytes=0-0", f"bytes={MiB}-{MiB + 100}",
                "bytes=10-5"]:
        t.run(f"get big.bin {rng}", "GET", "/{B}/big.bin", [("range", rng)])
    t.run("get with response overrides", "GET",
          "/{B}/one?response-content-type=text%2Fx-over&response-cache-control=no-cache")

    # listings
    for q in ["", "?prefix=dir%2F&delimiter=%2F", "?marker=dir%2F&max-keys=2",
              "?prefix=nothing", "?delimiter=%2F", "?encoding-type=url"]:
        t.run(f"list v1 {q}", "GET", "/{B}" + q)
    for q in ["", "&prefix=dir%2F&delimiter=%2F", "&start-after=dir%2Fa.txt",
              "&fetch-owner=true&prefix=d", "&encoding-type=url"]:
        t.run(f"list v2 {q}", "GET", "/{B}?list-type=2" + q)
    r = t.run("list v2 page 1", "GET", "/{B}?list-type=2&max-keys=3")
    token = r.xml("NextContinuationToken")
    assert token, r
    t.run("list v2 page 2", "GET",
          f"/{{B}}?list-type=2&max-keys=3&continuation-token={awsv4.uri_encode(token)}")

    # copy
    t.run("copy", "PUT", "/{B}/copy", [("x-amz-copy-source", "/{B}/dir/a.txt")])
    t.run("copy replace metadata", "PUT", "/{B}/copy2",
          [("x-amz-copy-source", "/{B}/big.bin"), ("x-amz-metadata-directive", "REPLACE"),
           ("x-amz-meta-new", "yes"), ("content-type", "text/x-replaced")])
    t.run("get copy2", "HEAD", "/{B}/copy2")
    t.run("copy missing source", "PUT", "/{B}/copy3", [("x-amz-copy-source", "/{B}/nope")])

    # tagging
    tags = (b"<Tagging><TagSet><Tag><Key>k1</Key><Value>v1</Value></Tag>"
            b"<Tag><Key>k2</Key><Value>v 2</Value></Tag></TagSet></Tagging>")
    t.run("put tagging", "PUT", "/{B}/one?tagging", [("content-md5", awsv4.md5_b64(tags))], tags)
    t.run("get tagging", "GET", "/{B}/one?tagging")
    t.run("head tagged", "HEAD", "/{B}/one")
    t.run("delete tagging", "DELETE", "/{B}/one?tagging")
    t.run("get tagging after delete", "GET", "/{B}/one?tagging")

    # conditionals
    etag = '"%s"' % s3util.md5_hex(objects["dir/a.txt"])
    a = "/{B}/dir/a.txt"
    t.run("if-match ok", "GET", a, [("if-match", etag)])
    t.run("if-match wrong", "GET", a, [("if-match", '"0123456789abcdef0123456789abcdef"')])
    t.run("if-none-match hit", "GET", a, [("if-none-match", etag)])
    t.run("if-none-match hit head", "HEAD", a, [("if-none-match", etag)])
    t.run("if-modified-since future", "GET", a,
          [("if-modified-since", "Fri, 01 Jan 2100 00:00:00 GMT")])
    t.run("if-unmodified-since past", "GET", a,
          [("if-unmodified-since", "Sat, 01 Jan 2000 00:00:00 GMT")])
    t.run("if-modified-since past", "GET", a,
          [("if-modified-since", "Sat, 01 Jan 2000 00:00:00 GMT")])

    # errors
    t.run("get missing key", "GET", "/{B}/no/such/key")
    t.run("head missing key", "HEAD", "/{B}/no/such/key")
    t.run("get missing bucket", "GET", "/{MISSING}/k")
    t.run("list missing bucket", "GET", "/{MISSING}?list-type=2")
    t.run("invalid range", "GET", "/{B}/dir/a.txt", [("range", "bytes=99999999-")])
    t.run("range on empty object", "GET", "/{B}/empty", [("range", "bytes=0-0")])
    t.run("delete non-empty bucket", "DELETE", "/{B}")
    t.run("bad tagging xml", "PUT", "/{B}/one?tagging",
          [("content-md5", awsv4.md5_b64(b"<nope"))], b"<nope")

    # deletes
    t.run("delete one", "DELETE", "/{B}/one")
    t.run("delete missing", "DELETE", "/{B}/one")
    delete = (b"<Delete><Quiet>false</Quiet><Object><Key>dir/a.txt</Key></Object>"
              b"<Object><Key>no-such</Key></Object><Object><Key>empty</Key></Object></Delete>")
    t.run("delete objects", "POST", "/{B}?delete", [("content-md5", awsv4.md5_b64(delete))],
          delete)
    r = t.run("list after deletes", "GET", "/{B}?list-type=2")
    rest = xml_all(r.body, "Key")
    quiet = ("<Delete><Quiet>true</Quiet>" + "".join(
        f"<Object><Key>{k}</Key></Object>" for k in rest) + "</Delete>").encode()
    t.run("delete the rest quietly", "POST", "/{B}?delete",
          [("content-md5", awsv4.md5_b64(quiet))], quiet)
    t.run("list empty", "GET", "/{B}")
    t.run("delete bucket", "DELETE", "/{B}")
    t.run("head deleted bucket", "HEAD", "/{B}")


def _diff(a, b):
    out = []
    for (name_a, ra), (name_b, rb) in zip(a, b):
        assert name_a == name_b
        for field in ("status", "code", "body"):
            if ra[field] != rb[field]:
                va, vb = ra[field], rb[field]
                if field == "body":
                    va, vb = va[:800], vb[:800]
                out.append(f"{name_a}: {field}: store {va!r} != proxy {vb!r}")
        ha, hb = ra["headers"], rb["headers"]
        for n in sorted(set(ha) | set(hb)):
            if ha.get(n) != hb.get(n):
                out.append(f"{name_a}: header {n}: store {ha.get(n)} != proxy {hb.get(n)}")
    if len(a) != len(b):
        out.append(f"{len(a)} steps at the store, {len(b)} through the proxy")
    return out


@pytest.fixture
def two_buckets(store_s3):
    tag = uuid.uuid4().hex[:12]
    names = [f"tr-store-{tag}", f"tr-proxy-{tag}"]
    yield names
    for n in names:
        s3util.delete_bucket(store_s3, n)


@pytest.mark.timeout(240)
@pytest.mark.parametrize("scheme", ["http", "https"])
def test_store_and_proxy_agree(store, proxy, two_buckets, scheme):
    direct_bucket, proxied_bucket = two_buckets
    direct = RawS3.of(store)
    via = RawS3.of(proxy, tls=scheme == "https")
    try:
        a = Transcript(direct, direct_bucket, direct_bucket + "-x")
        sequence(a)
        b = Transcript(via, proxied_bucket, proxied_bucket + "-x")
        sequence(b)
    finally:
        direct.close()
        via.close()
    # the sequence did what it meant to: errors and conditionals came out as S3 says
    got = {name: (r["status"], r["code"]) for name, r in a.steps}
    assert got["get missing key"] == (404, "NoSuchKey")
    assert got["get missing bucket"] == (404, "NoSuchBucket")
    assert got["if-match wrong"] == (412, "PreconditionFailed")
    assert got["if-none-match hit"][0] == 304
    assert got["invalid range"] == (416, "InvalidRange")
    assert got["get big.bin bytes=0-9"][0] == 206
    assert got["complete multipart"][0] == 200
    assert got["delete bucket"][0] == 204
    mp_etag = dict(a.steps)["get multipart object"]["headers"]["etag"][0]
    assert mp_etag.endswith('-2"'), mp_etag
    body = dict(b.steps)["get multipart object"]["body"]
    assert hashlib.md5(body).hexdigest() == hashlib.md5(
        s3util.payload(5 * MiB, 4) + s3util.payload(1024, 5)).hexdigest()
    problems = _diff(a.steps, b.steps)
    assert problems == [], "\n".join(problems)
