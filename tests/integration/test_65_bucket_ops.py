"""Bucket-level operations run at every site before the client gets its answer
(DESIGN.md "Bucket-level operations"): CreateBucket, DeleteBucket, PutBucketVersioning and
PutObjectLockConfiguration sent to one site's proxy reach every store; a site that is down
turns the answer into 503 naming it, and the retry finishes the job; DeleteBucket refuses
while any site still holds objects, and deletes nothing then.

Real parts: two sites (RGW store, Redis, proxy, replicator each) from tests/bed/sites.py.
Clients: Debian's boto3 1.26 in process, and the image's boto3 1.43 in a subprocess
(lib/clients.Boto3), which sends a CRC checksum where 1.26 sends Content-MD5.
"""
import os
import sys
import time
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bed"))
import sites as sitesmod  # noqa: E402
from lib import clients, logscan  # noqa: E402
from lib.clients import Endpoint  # noqa: E402

REGION = "us-east-1"


def client(url, ak="AKIDCLIENT", sk="secretclient"):
    return boto3.client("s3", endpoint_url=url, region_name=REGION, aws_access_key_id=ak,
                        aws_secret_access_key=sk,
                        config=Config(s3={"addressing_style": "path"},
                                      retries={"max_attempts": 1}))


def store_client(site):
    return client(site.store.url, site.store.access_key, site.store.secret)


def bucket_exists(site, name):
    try:
        store_client(site).head_bucket(Bucket=name)
        return True
    except store_client(site).exceptions.ClientError as e:
        if e.response["Error"]["Code"] in ("404", "NoSuchBucket"):
            return False
        raise


def error_of(call):
    try:
        call()
    except Exception as e:  # botocore.exceptions.ClientError
        return e.response["ResponseMetadata"]["HTTPStatusCode"], e.response["Error"]
    raise AssertionError("the call succeeded")


@pytest.fixture(scope="module")
def sites():
    d = sitesmod.Deployment(["a", "b"], proxy_directives={
        "bucket_replication": "local-only off", "bucket_op_timeout": "3s"}).start()
    yield d
    d.stop()


def unique(tag):
    return f"bo-{tag}-{os.getpid() % 10000}-{int(time.time() * 1000) % 100000}"


def test_create_bucket_reaches_every_site(sites):
    name = unique("create")
    r = client(sites["a"].proxy.url).create_bucket(Bucket=name)
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert bucket_exists(sites["a"], name) and bucket_exists(sites["b"], name)
    # the peer served it as a plain pass-through: exactly one CreateBucket at b, from a's
    # site key, and b did not send it back to a (one CreateBucket at a: the client's)
    creates_b = [e for e in logscan.access_entries(sites["b"].proxy)
                 if e["bucket"] == name and e["op"] == "CreateBucket"]
    creates_a = [e for e in logscan.access_entries(sites["a"].proxy)
                 if e["bucket"] == name and e["op"] == "CreateBucket"]
    assert len(creates_b) == 1 and creates_b[0]["access_key"].startswith("AKSITEA")
    assert len(creates_a) == 1 and creates_a[0]["access_key"] == "AKIDCLIENT"
    # an object written after it replicates: the bucket is there at b
    client(sites["a"].proxy.url).put_object(Bucket=name, Key="k", Body=b"v")
    assert sites.wait_drained(30)
    assert store_client(sites["b"]).get_object(Bucket=name, Key="k")["Body"].read() == b"v"


def test_create_bucket_with_location_constraint(sites):
    """A LocationConstraint names this site's store's region (RGW's zonegroup "default"
    here); the peers create the bucket in their own."""
    name = unique("loc")
    client(sites["b"].proxy.url).create_bucket(
        Bucket=name, CreateBucketConfiguration={"LocationConstraint": "default"})
    assert bucket_exists(sites["a"], name) and bucket_exists(sites["b"], name)


def modern(site):
    return clients.Boto3(Endpoint(site.proxy.url, "AKIDCLIENT", "secretclient"),
                         python="modern")


def test_versioning_reaches_every_site(sites):
    name = unique("ver")
    c = client(sites["a"].proxy.url)
    c.create_bucket(Bucket=name)
    c.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    for s in sites.sites.values():
        assert store_client(s).get_bucket_versioning(Bucket=name).get("Status") == "Enabled"
    modern(sites["b"]).call("put_bucket_versioning", Bucket=name,
                            VersioningConfiguration={"Status": "Suspended"}).check()
    for s in sites.sites.values():
        assert store_client(s).get_bucket_versioning(Bucket=name).get("Status") == "Suspended"


@pytest.mark.parametrize("boto", ["debian", "modern"])
def test_object_lock_reaches_every_site(sites, boto):
    """Object lock at creation (a header) and a default retention (a body the store wants
    with an integrity check: Content-MD5 from boto3 1.26, a CRC from 1.43)."""
    name = unique("lock" + boto[0])
    lock = {"ObjectLockEnabled": "Enabled",
            "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1}}}
    if boto == "debian":
        c = client(sites["b"].proxy.url)
        c.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
        c.put_object_lock_configuration(Bucket=name, ObjectLockConfiguration=lock)
    else:
        modern(sites["b"]).calls([
            ("create_bucket", {"Bucket": name, "ObjectLockEnabledForBucket": True}),
            ("put_object_lock_configuration", {"Bucket": name, "ObjectLockConfiguration": lock}),
        ]).check()
    for s in sites.sites.values():
        cfg = store_client(s).get_object_lock_configuration(Bucket=name)["ObjectLockConfiguration"]
        assert cfg["ObjectLockEnabled"] == "Enabled", s.id
        assert cfg["Rule"]["DefaultRetention"] == {"Mode": "GOVERNANCE", "Days": 1}, s.id


def test_delete_bucket_refused_while_a_site_holds_objects(sites):
    name = unique("del")
    c = client(sites["a"].proxy.url)
    c.create_bucket(Bucket=name)
    # an object only b's store has (as if its replication had not arrived yet)
    store_client(sites["b"]).put_object(Bucket=name, Key="only-at-b", Body=b"x")
    status, err = error_of(lambda: c.delete_bucket(Bucket=name))
    assert status == 409 and err["Code"] == "BucketNotEmpty"
    assert "site b" in err["Message"]
    assert bucket_exists(sites["a"], name) and bucket_exists(sites["b"], name)
    store_client(sites["b"]).delete_object(Bucket=name, Key="only-at-b")
    assert c.delete_bucket(Bucket=name)["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert not bucket_exists(sites["a"], name) and not bucket_exists(sites["b"], name)


def test_delete_bucket_refused_by_the_local_store(sites):
    """The local store's own BucketNotEmpty is the answer, and the peers keep the bucket."""
    name = unique("dell")
    c = client(sites["a"].proxy.url)
    c.create_bucket(Bucket=name)
    store_client(sites["a"]).put_object(Bucket=name, Key="only-at-a", Body=b"x")
    status, err = error_of(lambda: c.delete_bucket(Bucket=name))
    assert status == 409 and err["Code"] == "BucketNotEmpty"
    assert bucket_exists(sites["b"], name)


def test_site_down_gives_503_and_a_retry_finishes(sites):
    name = unique("down")
    c = client(sites["a"].proxy.url)
    sites["b"].proxy.stop()
    try:
        t0 = time.time()
        status, err = error_of(lambda: c.create_bucket(Bucket=name))
        assert status == 503 and err["Code"] == "ServiceUnavailable"
        assert "site b" in err["Message"] and "retry" in err["Message"]
        assert time.time() - t0 < 10
        assert bucket_exists(sites["a"], name) and not bucket_exists(sites["b"], name)
        # DeleteBucket while b is down: nothing is deleted anywhere
        status, err = error_of(lambda: c.delete_bucket(Bucket=name))
        assert status == 503 and "site b" in err["Message"]
        assert bucket_exists(sites["a"], name)
    finally:
        sites["b"].proxy.start()
    assert c.create_bucket(Bucket=name)["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert bucket_exists(sites["b"], name)
    text = Path(sites["a"].proxy.error_log).read_text()
    assert f"bucket={name}" in text and "not at site b" in text


def test_unreplicated_bucket_stays_local(sites):
    """bucket_replication local-only off: a plain pass-through, as before."""
    c = client(sites["a"].proxy.url)
    try:
        c.create_bucket(Bucket="local-only")
        assert bucket_exists(sites["a"], "local-only")
        assert not bucket_exists(sites["b"], "local-only")
    finally:
        c.delete_bucket(Bucket="local-only")


def test_peer_refuses_bucket_ops_without_site_key_only(sites):
    """A client key cannot pretend to be a peer: a bucket op it sends with x-s3tee-* headers
    is refused, and one without them is fanned out (not a pass-through)."""
    c = client(sites["b"].proxy.url)
    name = unique("hdr")

    def add_header(request, **kwargs):
        request.headers["x-s3tee-stamp"] = "0000000000000001.a"
    c.meta.events.register("before-sign.s3.CreateBucket", add_header)
    status, err = error_of(lambda: c.create_bucket(Bucket=name))
    assert status == 400 and err["Code"] == "InvalidArgument"
    assert not bucket_exists(sites["a"], name) and not bucket_exists(sites["b"], name)
