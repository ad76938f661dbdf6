"""A 2 GiB object through the proxy, up and down, with the proxy's memory bounded: curl
with one PUT (UNSIGNED-PAYLOAD, -T streams the file) over http, and awscli v1 multipart
over https (256 aws-chunked parts with CRC32 trailers, which the proxy decodes). The bytes
are compared by sha256 as they stream; nothing holds the object in memory, the test
included. The proxy's peak RSS (VmHWM) must stay under 64 MiB.

Each test has a store of its own (lib/bigstore.py): the shared one keeps objects in RAM
(memstore) with 2 GiB of room; this one gets 3 GiB (taken only as written) and is stopped
after the test, which frees the RAM without RGW's garbage collector.
"""

import os
import subprocess

import pytest

import bed
from lib import bigdata, bigstore, clients, ops
from lib.clients import Endpoint

GIB = 1024 ** 3
SIZE = 2 * GIB
RSS_LIMIT_KB = 64 * 1024


def asan_build(binary):
    """True if the proxy binary is built with AddressSanitizer (its shadow memory and
    quarantine count in RSS, so the bound is checked with a small quarantine)."""
    r = subprocess.run(["ldd", str(binary)], capture_output=True, text=True)
    if "libasan" in r.stdout:
        return True
    with open(binary, "rb") as f:
        return b"__asan_init" in f.read()


@pytest.fixture
def big_store():
    site = bigstore.start(3 * GIB)
    yield site
    site.stop()


@pytest.fixture(scope="module")
def file_2gib(tmp_path_factory):
    path = tmp_path_factory.mktemp("big") / "2gib.bin"
    bigdata.write_file(path, SIZE, seed=2048)
    yield path, bigdata.sha256_file(path)
    path.unlink()


@pytest.fixture
def big_proxy(make_proxy, big_store):
    env = {}
    binary = bed.build_dir() / "s3tee-proxy"
    if asan_build(binary):
        env["ASAN_OPTIONS"] = (bed.SANITIZER_ENV["ASAN_OPTIONS"]
                               + ":quarantine_size_mb=8:thread_local_quarantine_size_kb=256")
    return make_proxy(upstream=big_store.url, store_key=bigstore.KEY, env=env)


@pytest.fixture
def big_bucket(big_store):
    s3 = clients.boto3_client(Endpoint.of(big_store))
    name = "big-" + os.urandom(4).hex()
    s3.create_bucket(Bucket=name)
    yield name
    bigstore.empty_and_delete(s3, name)


def store_digest(site, bucket, key):
    """sha256 of the object as the store has it, read straight from it with curl."""
    argv = ["curl", "-sS", "--fail", "--aws-sigv4", f"aws:amz:{site.region}:s3",
            "--user", f"{site.access_key}:{site.secret}",
            "-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD", f"{site.url}/{bucket}/{key}"]
    rc, digest, n, err = bigdata.hash_output(argv)
    assert rc == 0, err
    return digest, n


def report_rss(request, proxy, what):
    kb = proxy.rss_peak_kb()
    request.node.user_properties.append(("proxy_rss_peak_kb", kb))
    print(f"\n{what}: proxy peak RSS {kb} kB ({kb / 1024:.1f} MiB)")
    return kb


@pytest.mark.timeout(900)
def test_2gib_single_put_and_get_curl(request, big_proxy, big_store, big_bucket, file_2gib):
    path, digest = file_2gib
    ep = Endpoint.of(big_proxy)
    log = ops.AccessLog(big_proxy)
    url = f"{ep.url}/{big_bucket}/big/2gib.bin"
    sign = ["--aws-sigv4", f"aws:amz:{ep.region}:s3", "--user", f"{ep.access_key}:{ep.secret}",
            "-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD"]
    r = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-T", str(path),
                        *sign, url], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0 and r.stdout == "200", (r.stdout, r.stderr)
    assert store_digest(big_store, big_bucket, "big/2gib.bin") == (digest, SIZE)

    rc, got, n, err = bigdata.hash_output(["curl", "-sS", "--fail", *sign, url])
    assert rc == 0 and (got, n) == (digest, SIZE), err
    entries = log.wait_for(bucket=big_bucket, minimum=2)
    assert [(e["method"], e["status"]) for e in entries] == [("PUT", 200), ("GET", 200)]
    assert entries[0]["bytes_in"] == SIZE and entries[1]["bytes_out"] == SIZE
    kb = report_rss(request, big_proxy, "2 GiB PUT + GET (curl, http)")
    assert kb < RSS_LIMIT_KB, f"proxy peak RSS {kb} kB for a 2 GiB transfer"


@pytest.mark.timeout(900)
def test_2gib_multipart_awscli_https(request, big_proxy, big_store, big_bucket, file_2gib,
                                     make_client):
    path, digest = file_2gib
    c = ops.make(make_client, "awscli-v1", Endpoint.of(big_proxy, tls=True), timeout=900)
    log = ops.AccessLog(big_proxy)
    c.upload_file(big_bucket, "big/2gib-mp.bin", path).check()
    assert store_digest(big_store, big_bucket, "big/2gib-mp.bin") == (digest, SIZE)
    parts = log.wait_for(op="UploadPart", minimum=256)
    assert len(parts) == 256 and {e["status"] for e in parts} == {200}
    if not c.substitute:    # botocore 1.43 over https: aws-chunked with a trailer
        assert sum(e["bytes_in"] for e in parts) > SIZE

    argv = [c.binary, "--endpoint-url", c.ep.url, "--ca-bundle", c.ep.ca, "s3", "cp",
            f"s3://{big_bucket}/big/2gib-mp.bin", "-", "--only-show-errors"]
    rc, got, n, err = bigdata.hash_output(argv, env=c.env())
    assert rc == 0 and (got, n) == (digest, SIZE), err
    kb = report_rss(request, big_proxy, "2 GiB multipart up + down (awscli v1, https)")
    assert kb < RSS_LIMIT_KB, f"proxy peak RSS {kb} kB for a 2 GiB transfer"
