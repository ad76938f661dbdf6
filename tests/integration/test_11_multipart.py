"""Multipart uploads through the proxy.

A 200 MiB file with `aws s3 cp`, awscli v1 and v2, over http and https (v1 over https
sends every part as an aws-chunked STREAMING-UNSIGNED-PAYLOAD-TRAILER body with a CRC32
trailer, which the proxy decodes); the bytes at the store and on download match. Then
the other multipart-capable clients (boto3 1.43 and 1.26 transfer managers, s3cmd,
rclone) with small parts, over both schemes.

About 1 GiB is written here in all: the module has a store of its own (lib/bigstore.py),
stopped at its end, so that the shared store's RAM (memstore) is not filled with tails
waiting for RGW's garbage collector.
"""

import hashlib
import shutil

import pytest

from lib import bigdata, bigstore, clients, ops, s3util
from lib.clients import Endpoint

MIB = 1024 * 1024
BIG = 200 * MIB
SCHEMES = ("http", "https")


@pytest.fixture(scope="module")
def mp_store():
    site = bigstore.start(2 * bigstore.GIB)
    yield site
    site.stop()


@pytest.fixture(scope="module")
def mp_s3(mp_store):
    return clients.boto3_client(Endpoint.of(mp_store))


@pytest.fixture
def mp_proxy(make_proxy, mp_store):
    return make_proxy(upstream=mp_store.url, store_key=bigstore.KEY)


@pytest.fixture
def mp_bucket(mp_s3, request):
    name = s3util.unique_bucket_name(request.node.name)
    mp_s3.create_bucket(Bucket=name)
    yield name
    bigstore.empty_and_delete(mp_s3, name)


@pytest.fixture(scope="module")
def file_200mib(tmp_path_factory):
    path = tmp_path_factory.mktemp("mp") / "200mib.bin"
    bigdata.write_file(path, BIG, seed=200)
    return path, bigdata.sha256_file(path)


def store_digest(store_s3, bucket, key):
    body = store_s3.get_object(Bucket=bucket, Key=key)["Body"]
    h = hashlib.sha256()
    n = 0
    for chunk in body.iter_chunks(MIB):
        h.update(chunk)
        n += len(chunk)
    return h.hexdigest(), n


def part_entries(log, key, minimum=1):
    return log.wait_for(op="UploadPart", key=key, minimum=minimum)


@pytest.mark.timeout(240)
@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("version", (1, 2))
def test_awscli_cp_200mib(mp_proxy, mp_s3, make_client, mp_bucket, file_200mib, tmp_path,
                          version, scheme):
    proxy, store_s3, bucket = mp_proxy, mp_s3, mp_bucket
    path, digest = file_200mib
    c = ops.make(make_client, f"awscli-v{version}", Endpoint.of(proxy, tls=scheme == "https"))
    log = ops.AccessLog(proxy)
    c.upload_file(bucket, "big/200mib.bin", path).check()

    # at the store: the bytes, and a multipart ETag of 25 parts of 8 MiB
    assert store_digest(store_s3, bucket, "big/200mib.bin") == (digest, BIG)
    etag = store_s3.head_object(Bucket=bucket, Key="big/200mib.bin")["ETag"].strip('"')
    assert etag.endswith("-25"), etag
    # what the proxy saw: create, 25 parts, complete, all answered 200
    create = log.wait_for(op="CreateMultipartUpload")
    parts = part_entries(log, "big/200mib.bin", 25)
    complete = log.wait_for(op="CompleteMultipartUpload")
    assert [e["status"] for e in create] == [200] and [e["status"] for e in complete] == [200]
    assert len(parts) == 25 and {e["status"] for e in parts} == {200}, parts
    framed = sum(e["bytes_in"] for e in parts)
    if version == 1 and scheme == "https":
        # aws-chunked: each part came with chunk framing and a trailer around its bytes
        assert framed > BIG, framed
    else:
        assert framed == BIG, framed

    out = tmp_path / "down.bin"
    c.download_file(bucket, "big/200mib.bin", out).check()
    assert out.stat().st_size == BIG and bigdata.sha256_file(out) == digest
    out.unlink()


SMALL_PARTS = [pytest.param(c, s, id=f"{c}-{s}") for c in
               ("boto3-modern", "boto3-debian", "s3cmd", "rclone") for s in SCHEMES]


def upload_in_parts(c, name, bucket, key, path, part):
    """The client's own multipart upload of `path` in parts of `part` bytes."""
    mib = part // MIB
    if name.startswith("boto3"):
        tc = {"multipart_threshold": part, "multipart_chunksize": part}
        if name == "boto3-debian":
            from boto3.s3.transfer import TransferConfig
            return c._do("upload_file", lambda: c.s3.upload_file(
                str(path), bucket, key, Config=TransferConfig(**tc)))
        return c.call("upload_file", Filename=str(path), Bucket=bucket, Key=key,
                      TransferConfig=tc)
    if name == "s3cmd":
        return c.run(f"--multipart-chunk-size-mb={mib}", "put", str(path), f"s3://{bucket}/{key}")
    if name == "rclone":
        return c.run(f"--s3-upload-cutoff={mib}M", f"--s3-chunk-size={mib}M", "copyto",
                     str(path), f"{c.remote}:{bucket}/{key}")
    raise ValueError(name)


@pytest.mark.parametrize("name, scheme", SMALL_PARTS)
def test_client_multipart_small_parts(mp_proxy, mp_s3, make_client, mp_bucket, tmp_path, name,
                                      scheme):
    proxy, store_s3, bucket = mp_proxy, mp_s3, mp_bucket
    if name in ("s3cmd", "rclone") and shutil.which(name) is None:
        pytest.skip(f"{name} is not installed")
    size = 11 * MIB + 5             # 5 MiB parts: 5 + 5 + 1 MiB and 5 bytes
    path = bigdata.write_file(tmp_path / "src.bin", size, seed=11)
    digest = bigdata.sha256_file(path)
    c = ops.make(make_client, name, Endpoint.of(proxy, tls=scheme == "https"))
    log = ops.AccessLog(proxy)
    upload_in_parts(c, name, bucket, "mp/obj", path, 5 * MIB).check()

    assert store_digest(store_s3, bucket, "mp/obj") == (digest, size)
    etag = store_s3.head_object(Bucket=bucket, Key="mp/obj")["ETag"].strip('"')
    assert etag.endswith("-3"), etag
    parts = part_entries(log, "mp/obj", 3)
    assert len(parts) == 3 and {e["status"] for e in parts} == {200}, parts
    assert [e["status"] for e in log.wait_for(op="CompleteMultipartUpload")] == [200]

    out = tmp_path / "down.bin"
    ops.for_client(c).get(bucket, "mp/obj", out)
    assert bigdata.sha256_file(out) == digest
