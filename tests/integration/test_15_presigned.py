"""Presigned URLs through the proxy, used with plain curl (no signing of its own): GET and
PUT URLs from boto3 1.26 and 1.43, GET URLs from `aws s3 presign` (v1 and v2), over http
and https, for a plain key and one that needs encoding. A URL whose signature or key was
changed is refused.

botocore (1.26 and 1.43 alike, so awscli v1 too) presigns S3 URLs with SigV2 unless
signature_version is s3v4; the proxy answers SigV2 with SignatureDoesNotMatch (README),
so those clients are configured for s3v4 here, and the SigV2 default is checked to be
refused cleanly. awscli v2 presigns with SigV4 by default.
"""

import hashlib

import pytest

from lib import bigdata, clients, ops
from lib.clients import Endpoint

SCHEMES = ("http", "https")
KEYS = ["plain.bin", "dir/a b+c \u00fc=&.bin"]
PRESIGN = '''
result = [s3.generate_presigned_url(op, Params=p, ExpiresIn=600) for op, p in CALLS]
'''


def presign(c, calls):
    """[(op, params)] -> URLs, from a boto3 wrapper (driver or in process)."""
    if isinstance(c, clients.Boto3InProcess):
        return [c.s3.generate_presigned_url(op, Params=p, ExpiresIn=600) for op, p in calls]
    return c.exec(f"CALLS = {calls!r}\n" + PRESIGN).check().value


def path_of(url, ep):
    assert url.startswith(ep.url + "/"), url
    return url[len(ep.url):]


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("name", ["boto3-debian", "boto3-modern"])
def test_presigned_get_put_with_curl(proxy, make_client, store_s3, bucket, tmp_path, name,
                                     scheme):
    ep = Endpoint.of(proxy, tls=scheme == "https")
    if name == "boto3-modern":
        c = ops.make(make_client, name, ep, config={"signature_version": "s3v4"})
    else:
        c = ops.make(make_client, name, ep)      # boto3_client() sets s3v4 already
    curl = clients.Curl(ep)
    log = ops.AccessLog(proxy)
    calls = []
    for k in KEYS:
        calls += [("put_object", {"Bucket": bucket, "Key": k}),
                  ("get_object", {"Bucket": bucket, "Key": k})]
    urls = presign(c, calls)
    for i, k in enumerate(KEYS):
        put_url, get_url = urls[2 * i], urls[2 * i + 1]
        assert "X-Amz-Signature=" in put_url and "X-Amz-Algorithm=AWS4-HMAC-SHA256" in get_url
        src = bigdata.write_file(tmp_path / f"src{i}", 3 * 1024 * 1024 + i, seed=i)
        digest = bigdata.sha256_file(src)
        r = curl.request("PUT", path_of(put_url, ep), data=src, sign=False)
        assert r.status == 200, r
        body = store_s3.get_object(Bucket=bucket, Key=k)["Body"].read()
        assert hashlib.sha256(body).hexdigest() == digest, k
        out = tmp_path / f"out{i}"
        r = curl.request("GET", path_of(get_url, ep), out=out, sign=False)
        assert r.status == 200 and bigdata.sha256_file(out) == digest, r
        assert r.headers["etag"].strip('"') == hashlib.md5(body).hexdigest()
    entries = log.wait_for(method="GET", minimum=len(KEYS))
    assert sorted(e["key"] for e in entries) == sorted(KEYS)
    assert {e["status"] for e in log.entries()} == {200}

    # the signature covers the key and itself: change either and it is refused
    get_url = urls[1]
    bad_sig = get_url[:-1] + ("0" if get_url[-1] != "0" else "1")
    assert curl.request("GET", path_of(bad_sig, ep), sign=False).status == 403
    other_key = get_url.replace("/plain.bin?", "/plain.bin2?")
    r = curl.request("GET", path_of(other_key, ep), sign=False)
    assert r.status == 403 and b"SignatureDoesNotMatch" in r.body, r


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("version", (1, 2))
def test_awscli_presign_get_with_curl(proxy, make_client, store_s3, bucket, tmp_path, version,
                                      scheme):
    ep = Endpoint.of(proxy, tls=scheme == "https")
    env = {}
    if version == 1:
        # awscli v1 presigns with SigV2 unless the profile says s3v4
        cfg = tmp_path / "aws-config"
        cfg.write_text("[default]\nregion = us-east-1\ns3 =\n    addressing_style = path\n"
                       "    signature_version = s3v4\n")
        env = {"AWS_CONFIG_FILE": cfg}
    c = ops.make(make_client, f"awscli-v{version}", ep, env=env)
    curl = clients.Curl(ep)
    for k in KEYS:
        data = hashlib.sha256(k.encode()).digest() * 1000
        store_s3.put_object(Bucket=bucket, Key=k, Body=data)
        r = c.run("s3", "presign", f"s3://{bucket}/{k}", "--expires-in", "300").check()
        url = r.stdout.strip()
        assert "X-Amz-Signature=" in url, url
        r = curl.request("GET", path_of(url, ep), sign=False)
        assert r.status == 200 and r.body == data, (k, r.status)
    if version == 1:
        plain = ops.make(make_client, "awscli-v1", ep)
        url = plain.run("s3", "presign", f"s3://{bucket}/{KEYS[0]}").check().stdout.strip()
        assert "Signature=" in url and "X-Amz-Signature=" not in url, url    # SigV2
        r = curl.request("GET", path_of(url, ep), sign=False)
        assert r.status == 403 and b"SignatureDoesNotMatch" in r.body, r
