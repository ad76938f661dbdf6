"""Authentication and body verification at the proxy, with hand-made requests.

Every refused request is checked for its exact HTTP status and S3 <Code>, and that the
proxy then serves a good request on the same connection. Every refused upload is checked
at the store (HEAD straight at RGW): nothing was committed, and an object that existed
before keeps its old content. The last test sweeps every proxy log for secrets and for
the signatures sent here.
"""

import re
import time

import pytest
from botocore.exceptions import ClientError

import bed
from lib import awsv4, clients, logscan, s3util
from lib.rawhttp import RawS3, build

# distinctive secrets, so the log sweep cannot miss one
CLIENT = ("AKIDT2AUTH", "Wq8vT2authSecretKeyNeverLogged0xDEADBEEF")
LIMITED = ("AKIDT2LIMITED", "Lm4vT2limitedSecretNeverLogged0xFEEDFACE")
PROBE = b"probe object: the request after an error must still be served\n"


@pytest.fixture(scope="module")
def px(store, bed_tls):
    """This module's proxy: CLIENT may use every bucket, LIMITED only 'only-this-one'."""
    p = bed.Proxy(store.url, store_key=(store.access_key, store.secret),
                  clients=[(*CLIENT, "*"), (*LIMITED, "only-this-one")], tls=bed_tls,
                  directives={"workers": 2}).start()
    yield p
    p.close(check=True)


@pytest.fixture(autouse=True)
def _px_healthy(px):
    yield
    problems = px.sanitizer_reports()
    if not px.is_alive():
        problems.insert(0, "the module's proxy died\n" + bed.tail(px.stderr_path, 40))
    if problems:
        pytest.fail("\n\n".join(problems), pytrace=False)


@pytest.fixture(params=["http", "https"])
def s3(request, px):
    c = RawS3.of(px, tls=request.param == "https", access_key=CLIENT[0], secret=CLIENT[1])
    yield c
    c.close()


@pytest.fixture
def http_s3(px):
    c = RawS3.of(px, access_key=CLIENT[0], secret=CLIENT[1])
    yield c
    c.close()


@pytest.fixture
def pbucket(bucket, store_s3):
    """A bucket holding 'probe'."""
    store_s3.put_object(Bucket=bucket, Key="probe", Body=PROBE)
    return bucket


def at_store(store_s3, bucket, key):
    """(ETag, size) of the object at the store, or None when there is none."""
    try:
        h = store_s3.head_object(Bucket=bucket, Key=key)
    except ClientError as e:
        assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 404, e.response
        return None
    return h["ETag"], h["ContentLength"]


def old_object(store_s3, bucket, key, existed):
    """Puts an old version of KEY at the store when EXISTED; returns what must stay."""
    if not existed:
        return None
    data = b"old content that must survive\n" * 10
    store_s3.put_object(Bucket=bucket, Key=key, Body=data)
    return ('"%s"' % s3util.md5_hex(data), len(data))


def assert_error(r, status, code):
    assert (r.status, r.code) == (status, code), r
    assert r.header("content-type") == "application/xml", r
    assert r.xml("RequestId") and r.header("x-amz-request-id") == r.xml("RequestId"), r


def assert_served_after(s3, bucket, conn=None):
    """A good request succeeds on the same connection as the refused one."""
    conn = conn or s3.conn
    assert conn is not None
    r = s3.request("GET", f"/{bucket}/probe", conn=conn)
    assert r.status == 200 and r.body == PROBE, r


def refused_then_served(s3, bucket, data, method, status, code, split_at=None):
    """Sends DATA on s3's connection: STATUS/CODE, connection kept, next request served.
    SPLIT_AT: send DATA[:SPLIT_AT] first and the rest 0.5 s later, so the proxy has passed
    everything before it to the store by the time the (bad) end arrives."""
    conn = s3._conn()
    if split_at is not None:
        conn.send(data[:split_at])
        time.sleep(0.5)
        data = data[split_at:]
    r = s3.send_raw(data, method, conn=conn)
    assert_error(r, status, code)
    assert not r.closes, r
    assert_served_after(s3, bucket, conn)
    return r


# ---------------------------------------------------------------------------------------
# the signer itself, and the baseline

def test_signer_matches_botocore():
    """lib/awsv4 signs exactly like botocore (header and presigned forms)."""
    from botocore.auth import S3SigV4Auth, S3SigV4QueryAuth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials
    import datetime
    from unittest import mock

    creds = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
    t = 1700000000
    body = b"some body"
    req = AWSRequest("PUT", "http://127.0.0.1:9000/b/a%20key?tagging=&x=1",
                     headers={"x-amz-meta-a": "1"}, data=body)
    fixed = datetime.datetime.utcfromtimestamp(t)
    with mock.patch("botocore.auth.datetime") as dt:
        dt.datetime.utcnow.return_value = fixed
        S3SigV4Auth(creds, "s3", "us-east-1").add_auth(req)
    want = req.headers["Authorization"]
    mine = awsv4.Signer(creds.access_key, creds.secret_key).sign(
        "PUT", "/b/a%20key?tagging=&x=1",
        [("host", "127.0.0.1:9000"), ("x-amz-meta-a", "1")], awsv4.sha256_hex(body), when=t)
    assert mine.header("authorization").split("Signature=")[1] == want.split("Signature=")[1]

    preq = AWSRequest("GET", "http://127.0.0.1:9000/b/k", headers={})
    with mock.patch("botocore.auth.datetime") as dt:
        dt.datetime.utcnow.return_value = fixed
        S3SigV4QueryAuth(creds, "s3", "us-east-1", expires=300).add_auth(preq)
    want_sig = preq.url.split("X-Amz-Signature=")[1]
    mine = awsv4.Signer(creds.access_key, creds.secret_key).presign(
        "GET", "/b/k", "127.0.0.1:9000", 300, when=t)
    assert mine.split("X-Amz-Signature=")[1] == want_sig


def test_good_requests(s3, pbucket, store_s3):
    """Baseline: header-signed PUT/GET/HEAD/DELETE and a presigned GET pass, kept alive."""
    r = s3.request("PUT", f"/{pbucket}/k", body=b"hello")
    assert r.status == 200 and r.header("etag") == '"%s"' % s3util.md5_hex(b"hello"), r
    conn = s3.conn
    r = s3.request("GET", f"/{pbucket}/k")
    assert r.status == 200 and r.body == b"hello", r
    assert s3.request("HEAD", f"/{pbucket}/k").header("content-length") == "5"
    r = s3.request("PUT", f"/{pbucket}/u", body=b"unsigned", payload=awsv4.UNSIGNED)
    assert r.status == 200, r
    target = s3.signer.presign("GET", f"/{pbucket}/u", s3.hostport, 60)
    r = s3.send_raw(build("GET", target, [("host", s3.hostport)]), "GET")
    assert r.status == 200 and r.body == b"unsigned", r
    assert s3.request("DELETE", f"/{pbucket}/k").status == 204
    assert s3.conn is conn
    assert at_store(store_s3, pbucket, "k") is None


# ---------------------------------------------------------------------------------------
# who signed, and how well

def test_invalid_access_key(s3, pbucket):
    other = s3.with_keys("AKIDNOSUCHKEY", "whatever-secret")
    data = other.raw("GET", f"/{pbucket}/probe")
    refused_then_served(s3, pbucket, data, "GET", 403, "InvalidAccessKeyId")


def _tamper(kind, s3, bucket):
    if kind == "signature":
        data = s3.raw("GET", f"/{bucket}/probe")
        head, sig = data.split(b"Signature=")
        flipped = (b"0" if sig[:1] != b"0" else b"1") + sig[1:]
        return head + b"Signature=" + flipped
    if kind == "wrong_secret":
        return s3.with_keys(CLIENT[0], CLIENT[1] + "x").raw(
            "GET", f"/{bucket}/probe")
    if kind == "signed_header":
        data = s3.raw("GET", f"/{bucket}/probe", headers=[("range", "bytes=0-1")])
        assert b"range: bytes=0-1\r\n" in data
        return data.replace(b"range: bytes=0-1\r\n", b"range: bytes=0-2\r\n")
    if kind == "path":
        data = s3.raw("GET", f"/{bucket}/probe")
        return data.replace(f"GET /{bucket}/probe ".encode(), f"GET /{bucket}/probf ".encode(), 1)
    if kind == "query":
        data = s3.raw("GET", f"/{bucket}?list-type=2&prefix=a")
        return data.replace(b"prefix=a ", b"prefix=b ", 1)
    if kind == "method":
        data = s3.raw("HEAD", f"/{bucket}/probe")
        return b"GET" + data[4:]
    raise ValueError(kind)


@pytest.mark.parametrize("kind", ["signature", "wrong_secret", "signed_header", "path", "query",
                                  "method"])
def test_signature_does_not_match(s3, pbucket, kind):
    refused_then_served(s3, pbucket, _tamper(kind, s3, pbucket), "GET", 403,
                        "SignatureDoesNotMatch")


@pytest.mark.parametrize("minutes, status", [(-16, 403), (16, 403), (-14, 200), (14, 200)])
def test_clock_skew(http_s3, pbucket, minutes, status):
    data = http_s3.raw("GET", f"/{pbucket}/probe", when=time.time() + minutes * 60)
    if status == 200:
        r = http_s3.send_raw(data, "GET")
        assert r.status == 200 and r.body == PROBE, r
    else:
        refused_then_served(http_s3, pbucket, data, "GET", 403, "RequestTimeTooSkewed")


def _malformed(kind, s3, bucket):
    path = f"/{bucket}/probe"
    if kind == "garbage_credential":
        data = s3.raw("GET", path)
        head, rest = data.split(b"Credential=", 1)
        return head + b"Credential=garbage" + rest[rest.index(b","):]
    if kind == "wrong_region":
        return s3.raw("GET", path, region="eu-west-1")
    if kind == "date_mismatch":
        return s3.raw("GET", path, cred_date=time.strftime("%Y%m%d", time.gmtime(
            time.time() - 86400)))
    if kind == "wrong_service":
        return s3.raw("GET", path, service="ec2")
    raise ValueError(kind)


@pytest.mark.parametrize("kind", ["garbage_credential", "wrong_region", "date_mismatch",
                                  "wrong_service"])
def test_authorization_header_malformed(s3, pbucket, kind):
    refused_then_served(s3, pbucket, _malformed(kind, s3, pbucket), "GET", 400,
                        "AuthorizationHeaderMalformed")


def test_key_limited_to_other_buckets(px, pbucket):
    """A client key whose bucket list does not name the bucket: AccessDenied."""
    limited = RawS3.of(px, access_key=LIMITED[0], secret=LIMITED[1])
    own = RawS3.of(px, access_key=CLIENT[0], secret=CLIENT[1])
    try:
        data = limited.raw("GET", f"/{pbucket}/probe")
        refused_then_served(own, pbucket, data, "GET", 403, "AccessDenied")
    finally:
        own.close()


def test_list_buckets_shows_a_limited_key_only_its_buckets(make_proxy, make_bucket):
    """ListBuckets answers for the store's whole account: a key limited to some buckets sees
    only those (others' names are not its business), a key with * sees them all, and the
    answer stays a well-formed ListAllMyBucketsResult with the right Content-Length."""
    mine, also, theirs = make_bucket("lb-mine"), make_bucket("lb-also"), make_bucket("lb-theirs")
    p = make_proxy(clients=[(*CLIENT, "*"), (*LIMITED, f"{mine},{also},lb-missing")])
    limited = RawS3.of(p, access_key=LIMITED[0], secret=LIMITED[1])
    full = RawS3.of(p, access_key=CLIENT[0], secret=CLIENT[1])
    try:
        r = limited.request("GET", "/")
        assert r.status == 200, r
        assert int(r.header("content-length")) == len(r.body)
        names = re.findall(r"<Name>(.*?)</Name>", r.body.decode())
        assert sorted(names) == sorted([mine, also]), names
        assert b"<Owner>" in r.body and r.body.rstrip().endswith(b"</ListAllMyBucketsResult>")
        r = full.request("GET", "/")
        assert r.status == 200, r
        assert {mine, also, theirs} <= set(re.findall(r"<Name>(.*?)</Name>", r.body.decode()))
    finally:
        limited.close()
        full.close()
    # and through a real client (boto3 1.26, this interpreter)
    c = clients.boto3_client(clients.Endpoint.of(p, access_key=LIMITED[0], secret=LIMITED[1]))
    assert sorted(b["Name"] for b in c.list_buckets()["Buckets"]) == sorted([mine, also])


@pytest.mark.parametrize("source", ["/{b}/secret", "{b}/secret", "%2F{b}%2Fsecret",
                                    "/{b}/secret?versionId=null"])
def test_copy_from_a_bucket_the_key_may_not_use(make_proxy, make_bucket, store_s3, source):
    """A key limited to bucket A must not read bucket B by copying B's objects into A
    (CopyObject and UploadPartCopy name their source in x-amz-copy-source)."""
    mine, theirs = make_bucket("mine"), make_bucket("theirs")
    store_s3.put_object(Bucket=theirs, Key="secret", Body=b"not for the limited key")
    store_s3.put_object(Bucket=mine, Key="probe", Body=PROBE)
    p = make_proxy(clients=[(*LIMITED, mine)])
    s3 = RawS3.of(p, access_key=LIMITED[0], secret=LIMITED[1])
    try:
        src = source.format(b=theirs)
        data = s3.raw("PUT", f"/{mine}/stolen", headers=[("x-amz-copy-source", src)])
        refused_then_served(s3, mine, data, "PUT", 403, "AccessDenied")
        r = s3.request("POST", f"/{mine}/mp?uploads")
        assert r.status == 200, r
        upload = r.xml("UploadId")
        data = s3.raw("PUT", f"/{mine}/mp?partNumber=1&uploadId={upload}",
                      headers=[("x-amz-copy-source", src)])
        refused_then_served(s3, mine, data, "PUT", 403, "AccessDenied")
        assert s3.request("DELETE", f"/{mine}/mp?uploadId={upload}").status == 204
        # copies inside the bucket it may use still work
        r = s3.request("PUT", f"/{mine}/copy", headers=[("x-amz-copy-source", f"/{mine}/probe")])
        assert r.status == 200, r
    finally:
        s3.close()
    assert at_store(store_s3, mine, "stolen") is None
    assert store_s3.get_object(Bucket=mine, Key="copy")["Body"].read() == PROBE


def test_virtual_host_style(make_proxy, make_bucket, store_s3):
    """Bucket in the Host (virtual_host_domain): the signed Host decides the bucket, so the
    bucket list of the key applies to it and a Host changed in flight breaks the signature."""
    mine, other = make_bucket("vh-mine"), make_bucket("vh-other")
    store_s3.put_object(Bucket=mine, Key="probe", Body=PROBE)
    p = make_proxy(clients=[(*CLIENT, "*"), (*LIMITED, mine)],
                   virtual_host_domain="s3.localhost")

    def vh(bucket, keys=CLIENT):
        return RawS3.of(p, access_key=keys[0], secret=keys[1],
                        host_header=f"{bucket}.s3.localhost:{p.port}")

    s3 = vh(mine)
    try:
        r = s3.request("PUT", "/dir/k", body=b"virtual")
        assert r.status == 200, r
        assert store_s3.get_object(Bucket=mine, Key="dir/k")["Body"].read() == b"virtual"
        r = s3.request("GET", "/?list-type=2&prefix=dir%2F")
        assert r.status == 200 and r.xml("Name") == mine and r.xml("Key") == "dir/k", r
        data = s3.raw("GET", "/probe").replace(f"host: {mine}.".encode(),
                                                f"host: {other}.".encode())
        conn = s3.conn
        assert_error(s3.send_raw(data, "GET"), 403, "SignatureDoesNotMatch")
        r = s3.request("GET", "/probe")
        assert r.status == 200 and r.body == PROBE and s3.conn is conn, r
        r = vh(mine, LIMITED).request("GET", "/probe")
        assert r.status == 200 and r.body == PROBE, r
        assert_error(vh(other, LIMITED).request("GET", "/probe"), 403, "AccessDenied")
        # the domain itself (and any other name) is path style
        path_style = RawS3.of(p, access_key=CLIENT[0], secret=CLIENT[1],
                              host_header=f"s3.localhost:{p.port}")
        r = path_style.request("GET", f"/{mine}/probe")
        assert r.status == 200 and r.body == PROBE, r
        path_style.close()
    finally:
        s3.close()


# ---------------------------------------------------------------------------------------
# payload verification: nothing unverified reaches the store

@pytest.mark.parametrize("size", [1024, 3 * 1024 * 1024 + 5])
@pytest.mark.parametrize("existed", [False, True], ids=["new", "existing"])
def test_sha256_mismatch_commits_nothing(s3, pbucket, store_s3, size, existed):
    before = old_object(store_s3, pbucket, "obj", existed)
    body = s3util.payload(size, seed=3)
    lie = awsv4.sha256_hex(body[:-1] + b"X")
    data = s3.raw("PUT", f"/{pbucket}/obj", body=body, payload=lie)
    refused_then_served(s3, pbucket, data, "PUT", 400, "XAmzContentSHA256Mismatch",
                        split_at=len(data) - 1)
    assert at_store(store_s3, pbucket, "obj") == before
    if existed:
        assert store_s3.get_object(Bucket=pbucket, Key="obj")["Body"].read().startswith(b"old")


def test_anonymous_denied(s3, pbucket):
    for method, target in [("GET", f"/{pbucket}/probe"), ("PUT", f"/{pbucket}/anon"),
                           ("GET", f"/{pbucket}"), ("GET", "/")]:
        hdrs = [("host", s3.hostport)]
        if method == "PUT":
            hdrs.append(("content-length", "3"))
        data = build(method, target, hdrs, b"abc" if method == "PUT" else b"")
        refused_then_served(s3, pbucket, data, method, 403, "AccessDenied")


def test_public_read_bucket(make_proxy, make_bucket, store_s3):
    public, private = make_bucket("pub"), make_bucket("priv")
    for b in (public, private):
        store_s3.put_object(Bucket=b, Key="probe", Body=PROBE)
    p = make_proxy(public_read_bucket=public)
    anon = RawS3.of(p)
    try:
        conn = anon._conn()

        def send(method, target, body=b""):
            hdrs = [("host", anon.hostport)]
            if body:
                hdrs.append(("content-length", str(len(body))))
            return anon.send_raw(build(method, target, hdrs, body), method, conn=conn)

        r = send("GET", f"/{public}/probe")
        assert r.status == 200 and r.body == PROBE, r
        r = send("HEAD", f"/{public}/probe")
        assert r.status == 200 and r.header("content-length") == str(len(PROBE)), r
        assert_error(send("PUT", f"/{public}/new", b"nope"), 403, "AccessDenied")
        assert_error(send("DELETE", f"/{public}/probe"), 403, "AccessDenied")
        assert_error(send("GET", f"/{public}"), 403, "AccessDenied")     # no anonymous listing
        assert_error(send("GET", f"/{private}/probe"), 403, "AccessDenied")
        r = send("GET", f"/{public}/probe")
        assert r.status == 200 and r.body == PROBE, r
        assert anon.conn is conn
        assert at_store(store_s3, public, "new") is None
        assert at_store(store_s3, public, "probe") is not None
    finally:
        anon.close()


# ---------------------------------------------------------------------------------------
# SigV2 and presigned URLs

def test_sigv2_header(s3, pbucket):
    data = build("GET", f"/{pbucket}/probe",
                 [("host", s3.hostport), ("date", time.strftime("%a, %d %b %Y %H:%M:%S GMT",
                                                                  time.gmtime())),
                  ("authorization", f"AWS {CLIENT[0]}:c2lnbmF0dXJldjJub3RzdXBwb3J0ZWQ=")])
    refused_then_served(s3, pbucket, data, "GET", 403, "SignatureDoesNotMatch")


def test_sigv2_presigned(s3, pbucket):
    q = (f"AWSAccessKeyId={CLIENT[0]}&Expires={int(time.time()) + 300}"
         "&Signature=c2lnbmF0dXJldjJub3RzdXBwb3J0ZWQ%3D")
    data = build("GET", f"/{pbucket}/probe?{q}", [("host", s3.hostport)])
    refused_then_served(s3, pbucket, data, "GET", 403, "SignatureDoesNotMatch")


def _presigned(s3, target, **kw):
    return build("GET", s3.signer.presign("GET", target, s3.hostport, **kw),
                 [("host", s3.hostport)])


def test_presigned_expired(s3, pbucket):
    data = _presigned(s3, f"/{pbucket}/probe", expires=60, when=time.time() - 3600)
    refused_then_served(s3, pbucket, data, "GET", 403, "AccessDenied")


def test_presigned_expires_too_long(s3, pbucket):
    data = _presigned(s3, f"/{pbucket}/probe", expires=604801)
    refused_then_served(s3, pbucket, data, "GET", 400, "AuthorizationQueryParametersError")
    # the longest allowed (7 days) is fine
    r = s3.send_raw(_presigned(s3, f"/{pbucket}/probe", expires=604800), "GET")
    assert r.status == 200 and r.body == PROBE, r


def test_presigned_not_yet_valid(s3, pbucket):
    data = _presigned(s3, f"/{pbucket}/probe", expires=3600, when=time.time() + 20 * 60)
    refused_then_served(s3, pbucket, data, "GET", 403, "AccessDenied")


def test_presigned_with_response_overrides(s3, pbucket):
    """Parameters other than X-Amz-* travel to the store (and are signed by the client)."""
    target = s3.signer.presign("GET", f"/{pbucket}/probe?response-content-type=text%2Fx-pre",
                               s3.hostport, 60)
    r = s3.send_raw(build("GET", target, [("host", s3.hostport)]), "GET")
    assert r.status == 200 and r.body == PROBE, r
    assert r.header("content-type") == "text/x-pre", r
    tampered = target.replace("x-pre", "x-evil")
    refused_then_served(s3, pbucket, build("GET", tampered, [("host", s3.hostport)]), "GET",
                        403, "SignatureDoesNotMatch")


@pytest.mark.parametrize("what", ["signature", "path", "expires"])
def test_presigned_tampered(s3, pbucket, what):
    data = _presigned(s3, f"/{pbucket}/probe", expires=300)
    if what == "signature":
        head, sig = data.split(b"X-Amz-Signature=")
        data = head + b"X-Amz-Signature=" + (b"0" if sig[:1] != b"0" else b"1") + sig[1:]
    elif what == "path":
        data = data.replace(b"/probe?", b"/probf?", 1)
    else:
        data = data.replace(b"X-Amz-Expires=300", b"X-Amz-Expires=3000", 1)
    refused_then_served(s3, pbucket, data, "GET", 403, "SignatureDoesNotMatch")


# ---------------------------------------------------------------------------------------
# aws-chunked bodies and checksums

def _chunked_put(s3, bucket, key, payload, chunk_size=65536, corrupt=None, decoded=True):
    hdrs = [("content-encoding", "aws-chunked")]
    if decoded:
        hdrs.append(("x-amz-decoded-content-length", str(len(payload))))
    signed = s3.sign("PUT", f"/{bucket}/{key}", hdrs, payload=awsv4.STREAMING_SIGNED)
    body = awsv4.aws_chunked_signed(signed, payload, chunk_size, corrupt=corrupt)
    assert len(body) == awsv4.aws_chunked_signed_length(len(payload), chunk_size)
    return build("PUT", f"/{bucket}/{key}",
                 signed.headers + [("content-length", str(len(body)))], body)


@pytest.mark.parametrize("size", [0, 1, 300 * 1024 + 7, 3 * 1024 * 1024])
def test_aws_chunked_signed_upload(s3, pbucket, store_s3, size):
    payload = s3util.payload(size, seed=5)
    r = s3.send_raw(_chunked_put(s3, pbucket, "chunked", payload), "PUT")
    assert r.status == 200, r
    assert r.header("etag") == '"%s"' % s3util.md5_hex(payload)
    got = store_s3.get_object(Bucket=pbucket, Key="chunked")
    assert got["Body"].read() == payload
    assert got.get("ContentEncoding") in (None, ""), got.get("ContentEncoding")
    assert_served_after(s3, pbucket)


@pytest.mark.parametrize("corrupt, existed", [(0, False), (2, True), (5, False), (5, True)],
                         ids=["first-new", "middle-existing", "final-new", "final-existing"])
def test_aws_chunked_bad_chunk_signature(s3, pbucket, store_s3, corrupt, existed):
    """300 KiB in 64 KiB chunks (5 data chunks + the final one); one signature is wrong."""
    before = old_object(store_s3, pbucket, "chunked", existed)
    payload = s3util.payload(300 * 1024 + 7, seed=6)
    data = _chunked_put(s3, pbucket, "chunked", payload, corrupt=corrupt)
    # the final chunk comes late: every payload byte has reached the proxy before it
    final = data.rindex(b"\r\n0;chunk-signature=") + 2
    refused_then_served(s3, pbucket, data, "PUT", 403, "SignatureDoesNotMatch", split_at=final)
    assert at_store(store_s3, pbucket, "chunked") == before


def _trailer_put(s3, bucket, key, payload, trailer_value):
    hdrs = [("content-encoding", "aws-chunked"),
            ("x-amz-decoded-content-length", str(len(payload))),
            ("x-amz-trailer", "x-amz-checksum-crc32"),
            ("x-amz-sdk-checksum-algorithm", "CRC32")]
    signed = s3.sign("PUT", f"/{bucket}/{key}", hdrs, payload=awsv4.STREAMING_UNSIGNED_TRAILER)
    body = awsv4.aws_chunked_unsigned_trailer(payload, 65536, "x-amz-checksum-crc32",
                                              trailer_value)
    return build("PUT", f"/{bucket}/{key}",
                 signed.headers + [("content-length", str(len(body)))], body)


@pytest.mark.parametrize("existed", [False, True], ids=["new", "existing"])
def test_unsigned_trailer_checksum(s3, pbucket, store_s3, existed):
    before = old_object(store_s3, pbucket, "trailer", existed)
    payload = s3util.payload(200 * 1024 + 3, seed=7)
    wrong = awsv4.crc32_b64(payload + b"!")
    data = _trailer_put(s3, pbucket, "trailer", payload, wrong)
    # the trailer comes late: the whole payload has reached the proxy before it
    refused_then_served(s3, pbucket, data, "PUT", 400, "BadDigest",
                        split_at=data.rindex(b"\r\n0\r\n") + 2)
    assert at_store(store_s3, pbucket, "trailer") == before
    # the right checksum goes through
    r = s3.send_raw(_trailer_put(s3, pbucket, "trailer", payload, awsv4.crc32_b64(payload)),
                    "PUT")
    assert r.status == 200, r
    assert store_s3.get_object(Bucket=pbucket, Key="trailer")["Body"].read() == payload


def test_checksum_header_mismatch(s3, pbucket, store_s3):
    payload = s3util.payload(100 * 1024, seed=8)
    data = s3.raw("PUT", f"/{pbucket}/ck", body=payload,
                  headers=[("x-amz-checksum-crc32", awsv4.crc32_b64(payload[1:]))])
    refused_then_served(s3, pbucket, data, "PUT", 400, "BadDigest", split_at=len(data) - 1)
    assert at_store(store_s3, pbucket, "ck") is None
    r = s3.request("PUT", f"/{pbucket}/ck", body=payload,
                   headers=[("x-amz-checksum-crc32", awsv4.crc32_b64(payload))])
    assert r.status == 200, r
    assert at_store(store_s3, pbucket, "ck") == ('"%s"' % s3util.md5_hex(payload), len(payload))


EMPTY_CASES = ["chunked-bad-final-signature", "trailer-bad-crc", "signed-trailer-bad-signature",
               "plain-bad-crc-header", "plain-bad-sha256"]


def _empty_upload(s3, bucket, key, case, good=False):
    """A 0-byte upload; GOOD: everything it declares is right, else CASE's one lie."""
    crc = awsv4.crc32_b64(b"" if good else b"lie")
    if case == "chunked-bad-final-signature":
        return _chunked_put(s3, bucket, key, b"", corrupt=None if good else 0)
    if case == "trailer-bad-crc":
        return _trailer_put(s3, bucket, key, b"", crc)
    if case == "signed-trailer-bad-signature":
        return _signed_trailer_put(s3, bucket, key, b"", awsv4.crc32_b64(b""),
                                   corrupt_trailer=not good)
    if case == "plain-bad-crc-header":
        return s3.raw("PUT", f"/{bucket}/{key}", headers=[("x-amz-checksum-crc32", crc)])
    if case == "plain-bad-sha256":
        return s3.raw("PUT", f"/{bucket}/{key}",
                      payload=awsv4.EMPTY_SHA256 if good else awsv4.sha256_hex(b"lie"))
    raise ValueError(case)


@pytest.mark.parametrize("case", EMPTY_CASES)
def test_empty_upload_verified_before_the_store_sees_it(s3, pbucket, store_s3, case):
    """With 0 payload bytes there is no last byte to hold back: the store would commit the
    empty object the moment it is asked. A lying empty upload must not replace the object;
    an honest one does."""
    status, code = {"chunked-bad-final-signature": (403, "SignatureDoesNotMatch"),
                    "trailer-bad-crc": (400, "BadDigest"),
                    "signed-trailer-bad-signature": (403, "SignatureDoesNotMatch"),
                    "plain-bad-crc-header": (400, "BadDigest"),
                    "plain-bad-sha256": (400, "XAmzContentSHA256Mismatch")}[case]
    before = old_object(store_s3, pbucket, "empty", True)
    data = _empty_upload(s3, pbucket, "empty", case)
    split = len(data) - 5 if case.startswith(("chunked", "trailer", "signed")) else None
    refused_then_served(s3, pbucket, data, "PUT", status, code, split_at=split)
    assert at_store(store_s3, pbucket, "empty") == before
    r = s3.send_raw(_empty_upload(s3, pbucket, "empty", case, good=True), "PUT")
    assert r.status == 200, r
    assert at_store(store_s3, pbucket, "empty") == ('"%s"' % s3util.md5_hex(b""), 0)


def test_aws_chunked_without_decoded_length(s3, pbucket, store_s3):
    payload = s3util.payload(1000, seed=9)
    data = _chunked_put(s3, pbucket, "nodcl", payload, decoded=False)
    refused_then_served(s3, pbucket, data, "PUT", 411, "MissingContentLength")
    assert at_store(store_s3, pbucket, "nodcl") is None


def _signed_trailer_put(s3, bucket, key, payload, value, corrupt_trailer=False):
    hdrs = [("content-encoding", "aws-chunked"),
            ("x-amz-decoded-content-length", str(len(payload))),
            ("x-amz-trailer", "x-amz-checksum-crc32")]
    signed = s3.sign("PUT", f"/{bucket}/{key}", hdrs, payload=awsv4.STREAMING_SIGNED_TRAILER)
    body = awsv4.aws_chunked_signed(signed, payload, 65536,
                                    trailer=("x-amz-checksum-crc32", value),
                                    corrupt_trailer=corrupt_trailer)
    return build("PUT", f"/{bucket}/{key}",
                 signed.headers + [("content-length", str(len(body)))], body)


def test_signed_trailer(s3, pbucket, store_s3):
    """STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER: a wrong trailer signature is 403, a
    correctly signed wrong checksum is BadDigest, both commit nothing; the right one works."""
    before = old_object(store_s3, pbucket, "strailer", True)
    payload = s3util.payload(150 * 1024 + 1, seed=10)
    good = awsv4.crc32_b64(payload)
    for value, corrupt, status, code in [(good, True, 403, "SignatureDoesNotMatch"),
                                         (awsv4.crc32_b64(b"other"), False, 400, "BadDigest")]:
        data = _signed_trailer_put(s3, pbucket, "strailer", payload, value, corrupt)
        refused_then_served(s3, pbucket, data, "PUT", status, code,
                            split_at=data.rindex(b"\r\n0;chunk-signature=") + 2)
        assert at_store(store_s3, pbucket, "strailer") == before
    r = s3.send_raw(_signed_trailer_put(s3, pbucket, "strailer", payload, good), "PUT")
    assert r.status == 200, r
    assert store_s3.get_object(Bucket=pbucket, Key="strailer")["Body"].read() == payload


@pytest.mark.parametrize("declared", ["shorter", "longer"])
def test_aws_chunked_decoded_length_lies(s3, pbucket, store_s3, declared):
    """x-amz-decoded-content-length not the payload's length: IncompleteBody, nothing
    committed (the store was told the declared length, the fence holds its last byte)."""
    payload = s3util.payload(128 * 1024 + 10, seed=16)
    n = 128 * 1024 if declared == "shorter" else len(payload) + 1
    hdrs = [("content-encoding", "aws-chunked"), ("x-amz-decoded-content-length", str(n))]
    signed = s3.sign("PUT", f"/{pbucket}/lies", hdrs, payload=awsv4.STREAMING_SIGNED)
    body = awsv4.aws_chunked_signed(signed, payload, 64 * 1024)
    data = build("PUT", f"/{pbucket}/lies",
                 signed.headers + [("content-length", str(len(body)))], body)
    # the last data chunk comes late: the store has been handed what came before
    last = data.rindex(b"\r\na;chunk-signature=") + 2
    refused_then_served(s3, pbucket, data, "PUT", 400, "IncompleteBody", split_at=last)
    assert at_store(store_s3, pbucket, "lies") is None


def test_content_sha256_header_missing_or_bad(s3, pbucket):
    data = s3.raw("GET", f"/{pbucket}/probe", payload=None)
    no_sha = s3.signer.sign("GET", f"/{pbucket}/probe", [("host", s3.hostport)], None)
    refused_then_served(s3, pbucket, build("GET", f"/{pbucket}/probe", no_sha.headers), "GET",
                        400, "InvalidRequest")
    bad = s3.signer.sign("GET", f"/{pbucket}/probe", [("host", s3.hostport)], "not-a-hash")
    refused_then_served(s3, pbucket, build("GET", f"/{pbucket}/probe", bad.headers), "GET",
                        400, "InvalidArgument")
    assert s3.send_raw(data, "GET").status == 200


def test_unsupported_authorization_scheme(s3, pbucket):
    data = build("GET", f"/{pbucket}/probe", [("host", s3.hostport),
                                               ("authorization", "Bearer abcdef")])
    refused_then_served(s3, pbucket, data, "GET", 400, "InvalidArgument")


def test_presigned_put(s3, pbucket, store_s3):
    target = s3.signer.presign("PUT", f"/{pbucket}/viaurl", s3.hostport, 60)
    body = s3util.payload(70000, seed=17)
    r = s3.send_raw(build("PUT", target, [("host", s3.hostport),
                                          ("content-length", str(len(body)))], body), "PUT")
    assert r.status == 200, r
    assert store_s3.get_object(Bucket=pbucket, Key="viaurl")["Body"].read() == body
    # the X-Amz-* parameters are not passed on: the store saw a plain PUT of that key
    assert [o["Key"] for o in store_s3.list_objects_v2(Bucket=pbucket)["Contents"]] == \
        ["probe", "viaurl"]


KEYS = ["a:b=c!d", "(x)*y'z", "semi;colon,comma", "at@dollar$amp&", "tilde~under_dash-dot.",
        "sp ace", "plus+sign", "pct%41", "ünï/cödé", "dir/sub/", "q?mark#hash", "[br]{ac}|^`"]


@pytest.mark.parametrize("style", ["aws", "raw"])
def test_key_characters(http_s3, pbucket, store_s3, style):
    """Keys with reserved characters, signed the way S3 encodes paths ("aws") and the way
    clients that sign what they send do ("raw": only what a URL needs is %-encoded); the
    store gets exactly that key."""
    s3 = http_s3
    for i, key in enumerate(KEYS):
        if style == "aws":
            path = awsv4.key_path(pbucket, key)
        else:
            path = f"/{pbucket}/" + awsv4.urllib.parse.quote(key, safe="/:=!()*',;@$&~+[]{}|^`")
        body = f"key {i}".encode()
        r = s3.request("PUT", path, body=body)
        assert r.status == 200, (key, r)
        assert store_s3.get_object(Bucket=pbucket, Key=key)["Body"].read() == body, key
        r = s3.request("GET", path)
        assert r.status == 200 and r.body == body, (key, r)
    listed = {o["Key"] for o in store_s3.list_objects_v2(Bucket=pbucket)["Contents"]}
    assert listed == set(KEYS) | {"probe"}


@pytest.mark.parametrize("path", ["/{b}/a/../b", "/{b}/./k", "/{b}/a/%2E%2E/b", "/{b}/k%00"])
def test_dot_segments_and_nul_refused(http_s3, pbucket, path):
    data = http_s3.raw("GET", path.format(b=pbucket))
    refused_then_served(http_s3, pbucket, data, "GET", 400, "InvalidURI")


# ---------------------------------------------------------------------------------------
# last: what the logs hold

def test_zz_logs_hold_no_secrets_or_signatures(px):
    """Every log line of every proxy this session started: no secret, no signature sent."""
    assert len(awsv4.SENT_SIGNATURES) > 50
    assert logscan.access_entries(px), "the access log is empty"
    leaks = logscan.find_leaks(extra_secrets=[CLIENT[1], LIMITED[1]])
    assert leaks == [], leaks
