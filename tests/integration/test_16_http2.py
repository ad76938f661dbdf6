"""HTTP/2 through the proxy: curl --http2-prior-knowledge against the plain port (h2c) and
curl --http2 against the TLS port (h2 by ALPN), signing with --aws-sigv4 and an explicit
x-amz-content-sha256 (curl 7.88 does not add it): PUT and GET of a 20 MiB object (payload
hash and UNSIGNED-PAYLOAD), a listing; then nghttp with 20 concurrent streams on one
connection. curl and the proxy's access log must both say HTTP/2.
"""

import hashlib
import re
import shutil
import subprocess
import time
import xml.etree.ElementTree as ET

import pytest

from lib import bigdata, clients, ops
from lib.clients import Endpoint

MIB = 1024 * 1024
H2 = {"http": ["--http2-prior-knowledge"], "https": ["--http2"]}


@pytest.fixture(scope="module")
def obj20(tmp_path_factory):
    path = tmp_path_factory.mktemp("h2") / "20mib.bin"
    bigdata.write_file(path, 20 * MIB, seed=20)
    return path, bigdata.sha256_file(path)


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_curl_h2_put_get_list(proxy, store_s3, bucket, obj20, tmp_path, scheme):
    path, digest = obj20
    curl = clients.Curl(Endpoint.of(proxy, tls=scheme == "https"))
    h2 = H2[scheme]
    log = ops.AccessLog(proxy)

    # signed payload (the proxy checks the sha256 over the DATA frames) and unsigned
    r = curl.request("PUT", f"/{bucket}/h2/signed.bin", data=path, extra=h2)
    assert (r.status, r.http_version) == (200, "2"), r
    r = curl.request("PUT", f"/{bucket}/h2/unsigned.bin", data=path, extra=h2,
                     payload_hash="UNSIGNED-PAYLOAD")
    assert (r.status, r.http_version) == (200, "2"), r
    for key in ("h2/signed.bin", "h2/unsigned.bin"):
        body = store_s3.get_object(Bucket=bucket, Key=key)["Body"]
        h = hashlib.sha256()
        for chunk in body.iter_chunks(MIB):
            h.update(chunk)
        assert h.hexdigest() == digest, key

    out = tmp_path / "get.bin"
    r = curl.request("GET", f"/{bucket}/h2/signed.bin", out=out, extra=h2)
    assert (r.status, r.http_version) == (200, "2"), r
    assert int(r.headers["content-length"]) == 20 * MIB and bigdata.sha256_file(out) == digest
    r = curl.request("GET", f"/{bucket}/h2/unsigned.bin", headers={"Range": "bytes=-1000"},
                     out=out, extra=h2)
    assert (r.status, r.http_version) == (206, "2"), r
    assert out.read_bytes() == path.read_bytes()[-1000:]

    r = curl.request("GET", f"/{bucket}", query={"list-type": "2", "prefix": "h2/"}, extra=h2)
    assert (r.status, r.http_version) == (200, "2"), r
    keys = [e.text for e in ET.fromstring(r.body).iter(clients.S3_NS + "Key")]
    assert keys == ["h2/signed.bin", "h2/unsigned.bin"]

    r = curl.request("HEAD", f"/{bucket}/h2/nope", extra=h2 + ["-I"])
    assert (r.status, r.http_version) == (404, "2"), r

    entries = log.wait_for(bucket=bucket, minimum=6)
    assert len(entries) == 6 and {e["proto"] for e in entries} == {"HTTP/2"}, entries
    assert [e["status"] for e in entries] == [200, 200, 200, 206, 200, 404]
    assert entries[2]["bytes_out"] == 20 * MIB


def test_https_alpn_offers_both(proxy, bucket, store_s3):
    """By ALPN a client gets h2 when it asks for it and HTTP/1.1 when that is all it knows."""
    store_s3.put_object(Bucket=bucket, Key="k", Body=b"alpn")
    curl = clients.Curl(Endpoint.of(proxy, tls=True))
    for extra, version in ((["--http2"], "2"), (["--http1.1"], "1.1")):
        r = curl.request("GET", f"/{bucket}/k", extra=extra)
        assert (r.status, r.http_version, r.body) == (200, version, b"alpn"), r
    plain = clients.Curl(Endpoint.of(proxy))
    r = plain.request("GET", f"/{bucket}/k", extra=["--http1.1"])
    assert (r.status, r.http_version) == (200, "1.1")


def nghttp(url, streams, timeout=120):
    """nghttp -v -m N URL: N GETs of URL as concurrent streams on one connection; the bodies
    go to stdout (bytes), the frame log to stdout too, so -v output goes to a second run."""
    argv = ["nghttp", "-m", str(streams), url]
    body = subprocess.run(argv, capture_output=True, timeout=timeout)
    frames = subprocess.run(["nghttp", "-n", "-v", "-m", str(streams), url], capture_output=True,
                            text=True, errors="replace", timeout=timeout)
    return body, frames


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_nghttp_concurrent_streams(proxy, store_s3, bucket, scheme):
    if shutil.which("nghttp") is None:
        pytest.skip("nghttp is not installed (Debian package nghttp2-client)")
    size = 3 * MIB + 7
    data = subprocess.run(bigdata.stream_argv(size, seed=33), capture_output=True,
                          check=True).stdout
    store_s3.put_object(Bucket=bucket, Key="many", Body=data)
    # nghttp cannot sign: one presigned URL serves all 20 streams (h2c by prior knowledge
    # for http://, ALPN h2 for https://; nghttp warns about but does not verify the cert)
    ep = Endpoint.of(proxy, tls=scheme == "https")
    url = clients.boto3_client(ep).generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": "many"}, ExpiresIn=300)
    log = ops.AccessLog(proxy)
    body, frames = nghttp(url, 20)
    assert body.returncode == 0 and frames.returncode == 0, (body.stderr, frames.stderr[-2000:])
    # 20 bodies, interleaved frame by frame as they came (the curl tests check the bytes)
    assert len(body.stdout) == 20 * size
    statuses = re.findall(r"recv \(stream_id=(\d+)\) :status: (\d+)", frames.stdout)
    assert len({sid for sid, _ in statuses}) == 20 and {st for _, st in statuses} == {"200"}
    entries = []
    for _ in range(100):       # lines land as each stream completes
        entries = log.entries(method="GET", key="many")
        if len(entries) >= 40:
            break
        time.sleep(0.05)
    assert len(entries) == 40, entries
    assert {(e["proto"], e["status"], e["bytes_out"]) for e in entries} == {("HTTP/2", 200, size)}
    assert len({e["client"] for e in entries}) == 2      # one connection per nghttp run
