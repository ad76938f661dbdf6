"""Active-active replication, async mode: every kind of write at one site appears at the
others, in both directions, exactly once (full mesh, no ping-pong).

Real parts only: one Ceph RGW store, one Redis, one s3tee-proxy and one s3tee-replicator per
site, each site in its own network namespace where the bed can make them (else on
loopback; tests/bed/sites.py). Clients: Debian's boto3 1.26 in process.
"""
import hashlib
import os
import re
import sys
import time
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bed"))
import sites as sitesmod  # noqa: E402
from lib import logscan  # noqa: E402

REGION = "us-east-1"


def client(url, ak="AKIDCLIENT", sk="secretclient"):
    return boto3.client("s3", endpoint_url=url, region_name=REGION, aws_access_key_id=ak,
                        aws_secret_access_key=sk,
                        config=Config(s3={"addressing_style": "path"},
                                      retries={"max_attempts": 1}))


def store_client(site):
    return client(site.store.url, site.store.access_key, site.store.secret)


def wait_for(pred, timeout=30.0, what="condition"):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            last = pred()
            if last:
                return last
        except Exception as e:  # not there yet
            last = e
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}: last={last!r}")


def get_bytes(c, bucket, key):
    return c.get_object(Bucket=bucket, Key=key)["Body"].read()


def missing(c, bucket, key):
    try:
        c.head_object(Bucket=bucket, Key=key)
        return False
    except c.exceptions.ClientError as e:
        return e.response["Error"]["Code"] in ("404", "NoSuchKey")


@pytest.fixture(scope="module")
def two_sites():
    d = sitesmod.Deployment(["a", "b"]).start()
    yield d
    d.stop()


@pytest.fixture
def rbucket(two_sites, request):
    """A bucket that exists at both sites (created directly at each store)."""
    name = f"r{abs(hash(request.node.name)) % 10**8}-{os.getpid() % 1000}"
    for s in two_sites.sites.values():
        store_client(s).create_bucket(Bucket=name)
    return name


@pytest.mark.parametrize("frm,to", [("a", "b"), ("b", "a")])
def test_put_replicates_with_same_bytes_and_metadata(two_sites, rbucket, frm, to):
    src, dst = two_sites[frm], two_sites[to]
    body = os.urandom(300_000)
    key = "dir/obj one+%.bin"
    client(src.proxy.url).put_object(Bucket=rbucket, Key=key, Body=body,
                                     Metadata={"colour": "blue"}, ContentType="text/x-test")
    got = wait_for(lambda: get_bytes(client(dst.proxy.url), rbucket, key), what="replica")
    assert hashlib.sha256(got).hexdigest() == hashlib.sha256(body).hexdigest()
    head = client(dst.proxy.url).head_object(Bucket=rbucket, Key=key)
    assert head["Metadata"] == {"colour": "blue"}          # hidden stamps are stripped
    assert head["ContentType"] == "text/x-test"
    raw = store_client(dst).head_object(Bucket=rbucket, Key=key)
    src_raw = store_client(src).head_object(Bucket=rbucket, Key=key)
    assert raw["Metadata"]["s3tee-stamp"] == src_raw["Metadata"]["s3tee-stamp"]
    assert raw["Metadata"]["s3tee-stamp"].endswith("." + frm)
    assert raw["ETag"] == src_raw["ETag"]


def test_delete_replicates(two_sites, rbucket):
    a, b = two_sites["a"], two_sites["b"]
    client(a.proxy.url).put_object(Bucket=rbucket, Key="gone", Body=b"x")
    wait_for(lambda: get_bytes(client(b.proxy.url), rbucket, "gone") == b"x", what="put at b")
    client(b.proxy.url).delete_object(Bucket=rbucket, Key="gone")
    wait_for(lambda: missing(store_client(a), rbucket, "gone"), what="delete at a")


def test_tagging_replicates(two_sites, rbucket):
    a, b = two_sites["a"], two_sites["b"]
    client(a.proxy.url).put_object(Bucket=rbucket, Key="t", Body=b"t", Tagging="k1=v1")
    wait_for(lambda: get_bytes(client(b.proxy.url), rbucket, "t") == b"t", what="put at b")
    tags = client(b.proxy.url).get_object_tagging(Bucket=rbucket, Key="t")["TagSet"]
    assert tags == [{"Key": "k1", "Value": "v1"}]
    client(a.proxy.url).put_object_tagging(
        Bucket=rbucket, Key="t", Tagging={"TagSet": [{"Key": "colour & size", "Value": "<big>"}]})
    wait_for(lambda: client(b.proxy.url).get_object_tagging(Bucket=rbucket, Key="t")["TagSet"]
             == [{"Key": "colour & size", "Value": "<big>"}], what="tags at b")
    client(b.proxy.url).delete_object_tagging(Bucket=rbucket, Key="t")
    wait_for(lambda: client(a.proxy.url).get_object_tagging(Bucket=rbucket, Key="t")["TagSet"]
             == [], what="tags deleted at a")


def test_multipart_unequal_parts_same_etag(two_sites, rbucket):
    a, b = two_sites["a"], two_sites["b"]
    ca = client(a.proxy.url)
    parts = [os.urandom(5 * 1024 * 1024 + 7), os.urandom(6 * 1024 * 1024), os.urandom(1234)]
    up = ca.create_multipart_upload(Bucket=rbucket, Key="mp")
    etags = []
    for n, p in enumerate(parts, 1):
        etags.append(ca.upload_part(Bucket=rbucket, Key="mp", UploadId=up["UploadId"],
                                    PartNumber=n, Body=p)["ETag"])
    ca.complete_multipart_upload(
        Bucket=rbucket, Key="mp", UploadId=up["UploadId"],
        MultipartUpload={"Parts": [{"PartNumber": n, "ETag": e} for n, e in enumerate(etags, 1)]})
    whole = b"".join(parts)
    got = wait_for(lambda: get_bytes(client(b.proxy.url), rbucket, "mp"), timeout=60,
                   what="multipart at b")
    assert hashlib.sha256(got).digest() == hashlib.sha256(whole).digest()
    ea = store_client(a).head_object(Bucket=rbucket, Key="mp")["ETag"]
    eb = store_client(b).head_object(Bucket=rbucket, Key="mp")["ETag"]
    assert ea == eb and ea.endswith('-3"')


def test_copy_carries_a_new_stamp(two_sites, rbucket):
    a, b = two_sites["a"], two_sites["b"]
    ca = client(a.proxy.url)
    ca.put_object(Bucket=rbucket, Key="src", Body=b"copy me", Metadata={"m": "1"})
    ca.copy_object(Bucket=rbucket, Key="dst", CopySource={"Bucket": rbucket, "Key": "src"})
    src_stamp = store_client(a).head_object(Bucket=rbucket, Key="src")["Metadata"]["s3tee-stamp"]
    dst_head = store_client(a).head_object(Bucket=rbucket, Key="dst")
    assert dst_head["Metadata"]["s3tee-stamp"] > src_stamp
    assert dst_head["Metadata"]["m"] == "1"            # COPY semantics kept
    got = wait_for(lambda: get_bytes(client(b.proxy.url), rbucket, "dst"), what="copy at b")
    assert got == b"copy me"
    with pytest.raises(ca.exceptions.ClientError) as e:
        ca.copy_object(Bucket=rbucket, Key="src", CopySource={"Bucket": rbucket, "Key": "src"})
    assert e.value.response["Error"]["Code"] == "InvalidRequest"


def test_delete_objects_each_key_replicates(two_sites, rbucket):
    a, b = two_sites["a"], two_sites["b"]
    ca = client(a.proxy.url)
    keys = [f"many/{i}" for i in range(20)]
    for k in keys:
        ca.put_object(Bucket=rbucket, Key=k, Body=k.encode())
    wait_for(lambda: all(not missing(store_client(b), rbucket, k) for k in keys), timeout=60,
             what="puts at b")
    client(b.proxy.url).delete_objects(Bucket=rbucket,
                                       Delete={"Objects": [{"Key": k} for k in keys]})
    wait_for(lambda: all(missing(store_client(a), rbucket, k) for k in keys), timeout=60,
             what="deletes at a")


def test_client_may_not_send_hidden_metadata(two_sites, rbucket):
    ca = client(two_sites["a"].proxy.url)
    with pytest.raises(ca.exceptions.ClientError) as e:
        ca.put_object(Bucket=rbucket, Key="x", Body=b"x", Metadata={"s3tee-stamp": "forged"})
    assert e.value.response["Error"]["Code"] == "InvalidArgument"


def test_sequential_writes_log_no_conflict(two_sites, rbucket):
    a, b = two_sites["a"], two_sites["b"]
    for i, site in enumerate([a, b, a, b]):
        client(site.proxy.url).put_object(Bucket=rbucket, Key="seq", Body=f"v{i}".encode())
        assert two_sites.wait_drained(30)
        for other in (a, b):
            wait_for(lambda o=other, i=i: get_bytes(client(o.proxy.url), rbucket, "seq")
                     == f"v{i}".encode(), what=f"v{i} everywhere")
    for s in (a, b):
        conflicts = s.redis.command("XRANGE", "s3tee:conflicts", "-", "+")
        mine = [c for c in conflicts if rbucket.encode() in c[1]]
        assert mine == []


def test_lifecycle_refused_on_replicated_bucket(two_sites, rbucket):
    ca = client(two_sites["a"].proxy.url)
    with pytest.raises(ca.exceptions.ClientError) as e:
        ca.put_bucket_lifecycle_configuration(
            Bucket=rbucket, LifecycleConfiguration={"Rules": [
                {"ID": "x", "Status": "Enabled", "Filter": {"Prefix": ""},
                 "Expiration": {"Days": 1}}]})
    assert e.value.response["Error"]["Code"] == "InvalidRequest"
    assert "replicated" in e.value.response["Error"]["Message"]


def test_three_sites_full_mesh_exactly_once():
    d = sitesmod.Deployment(["a", "b", "c"]).start()
    try:
        name = f"mesh{os.getpid() % 10000}"
        for s in d.sites.values():
            store_client(s).create_bucket(Bucket=name)
        for i, s in enumerate(d.sites.values()):
            for j in range(5):
                client(s.proxy.url).put_object(Bucket=name, Key=f"{s.id}/{j}", Body=b"%d" % j)
        assert d.wait_drained(60)
        for s in d.sites.values():
            keys = sorted(o["Key"] for o in
                          store_client(s).list_objects_v2(Bucket=name).get("Contents", []))
            assert keys == sorted(f"{o}/{j}" for o in d.ids for j in range(5))
        # every site received exactly the other sites' writes once: 2 peers x 5 writes
        for s in d.sites.values():
            replica_puts = 0
            for e in logscan.access_entries(s.proxy):
                if e["access_key"].startswith("AKSITE") and e["method"] == "PUT" \
                        and e["bucket"] == name and e["status"] == 200:
                    replica_puts += 1
            assert replica_puts == 10, f"site {s.id} applied {replica_puts} replica writes"
    finally:
        d.stop()


# ---------------------------------------------------------------------------------------
# Regressions found by the chaos test (test_70_chaos.py)

def replica_client(d, frm, to, stamp, vv):
    """boto3 at site TO's proxy with FRM's site key, every request carrying STAMP and VV
    the way FRM's replicator sends them."""
    c = client(d[to].proxy.url, *sitesmod._site_key(frm, to))

    def add(request, **_kw):
        request.headers["x-s3tee-stamp"] = stamp
        request.headers["x-s3tee-vv"] = vv

    c.meta.events.register("before-sign.s3.*", add)
    return c


def fresh_stamp(site):
    return "%016x.%s" % (int(time.time() * 1000) << 16, site)


def test_replica_abort_of_a_failed_upload_does_not_record_the_key(two_sites, rbucket):
    """A replicator whose multipart apply failed half-way aborts the upload and retries the
    entry. The Abort carries the entry's stamp; recording it made the retry's Complete
    'stale' and the object never reached the peer."""
    d = two_sites
    stamp = fresh_stamp("a")
    rc = replica_client(d, "a", "b", stamp, "a=1")
    up = rc.create_multipart_upload(Bucket=rbucket, Key="mpu")["UploadId"]
    rc.abort_multipart_upload(Bucket=rbucket, Key="mpu", UploadId=up)
    up = rc.create_multipart_upload(Bucket=rbucket, Key="mpu")["UploadId"]
    e = rc.upload_part(Bucket=rbucket, Key="mpu", UploadId=up, PartNumber=1, Body=b"p" * 1000)["ETag"]
    r = rc.complete_multipart_upload(Bucket=rbucket, Key="mpu", UploadId=up,
                                     MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": e}]})
    assert r["ResponseMetadata"]["HTTPHeaders"].get("x-s3tee-result") == "applied"
    head = store_client(d["b"]).head_object(Bucket=rbucket, Key="mpu")
    assert head["Metadata"]["s3tee-stamp"] == stamp


def _text(v):
    return v.decode() if isinstance(v, bytes) else v


def test_tags_for_an_object_the_peer_lacks_are_kept_for_its_older_put(two_sites, rbucket):
    """A tag change whose object is not at the peer (its PUT is still on the way, from a
    third site or held up by a partition, or a delete older than the tags removed it there)
    is recorded in the peer's index all the same: tags are a register of their own. The
    older PUT, landing later, gets the newer tags; a newer PUT keeps its own. The chaos
    test (seed 732378109) lost such a change at one site: the proxy there answered NoSuchKey
    and recorded nothing, the origin had no object either by then, so the entry was done,
    and the older PUT arrived afterwards with its own tags."""
    d = two_sites
    a, b = d["a"], d["b"]
    old = fresh_stamp("b")
    # an object at a that b lacks: a replica write from "b" (replica writes are not logged)
    replica_client(d, "b", "a", old, "b=1").put_object(
        Bucket=rbucket, Key="t", Body=b"old, at a first", Tagging="k=old")
    client(a.proxy.url).put_object_tagging(Bucket=rbucket, Key="t", Tagging={"TagSet": [
        {"Key": "k", "Value": "v"}]})
    assert d.wait_drained(30), "the tag change is applied at b at once, not left waiting"
    st, tst, tags = (_text(v) for v in b.redis.command(
        "HMGET", f"s3tee:o:{rbucket}/t", "st", "tst", "tags"))
    assert st is None and tst > old and tags == "k=v", (st, tst, tags)
    assert missing(store_client(b), rbucket, "t"), "nothing was written to b's store"

    # the older PUT reaches b now: its bytes, the newer tags
    r = replica_client(d, "a", "b", old, "b=1").put_object(
        Bucket=rbucket, Key="t", Body=b"old, at a first", Tagging="k=old")
    assert r["ResponseMetadata"]["HTTPHeaders"].get("x-s3tee-result") == "applied"
    sb = store_client(b)
    assert get_bytes(sb, rbucket, "t") == b"old, at a first"
    assert sb.get_object_tagging(Bucket=rbucket, Key="t")["TagSet"] == [{"Key": "k", "Value": "v"}]
    assert _text(b.redis.command("HGET", f"s3tee:o:{rbucket}/t", "tst")) == tst

    # a PUT newer than the tags keeps its own
    client(a.proxy.url).put_object(Bucket=rbucket, Key="t", Body=b"new", Tagging="k=w")
    wait_for(lambda: get_bytes(sb, rbucket, "t") == b"new", timeout=30, what="the newer PUT at b")
    assert sb.get_object_tagging(Bucket=rbucket, Key="t")["TagSet"] == [{"Key": "k", "Value": "w"}]
    assert d.wait_drained(30)
    lines = [ln for ln in Path(a.replicator.error_log).read_text().splitlines()
             if f"bucket={rbucket} key=t " in ln]
    assert not [ln for ln in lines if re.search(r"failure \d+ of|waiting for it there", ln)], lines
    assert not any(rbucket in str(x) for x in a.redis.command("XRANGE", "s3tee:dead", "-", "+"))


def test_emptied_tag_set_replicates_without_blanking_the_listing_etag(two_sites, rbucket):
    """RGW 16.2's DELETE ?tagging blanks the object's ETag in bucket listings; the
    replicator removes tags with PUT ?tagging and an empty TagSet instead."""
    d = two_sites
    ca = client(d["a"].proxy.url)
    ca.put_object(Bucket=rbucket, Key="e", Body=b"etag stays", Tagging="x=1")
    ca.put_object_tagging(Bucket=rbucket, Key="e", Tagging={"TagSet": []})
    sb = store_client(d["b"])
    wait_for(lambda: sb.head_object(Bucket=rbucket, Key="e") and
             sb.get_object_tagging(Bucket=rbucket, Key="e")["TagSet"] == [], what="tags gone at b")
    assert d.wait_drained(30)
    listed = {o["Key"]: o["ETag"] for o in sb.list_objects_v2(Bucket=rbucket)["Contents"]}
    assert listed["e"] == sb.head_object(Bucket=rbucket, Key="e")["ETag"] != '""'


def test_multipart_older_than_a_tag_change_ends_with_the_newer_tags(two_sites, rbucket):
    """A multipart upload takes its tags at Create; a tag change made elsewhere between its
    Create and its Complete is newer (tags are a register of their own). Both stores end
    with the newer tags, under the upload's bytes: at a (local Complete) and at b (replica
    Complete), the proxy sets them at the store before it commits."""
    a, b = two_sites["a"], two_sites["b"]
    key = "mpu/older-than-tags"
    ca, cb = client(a.proxy.url), client(b.proxy.url)
    ca.put_object(Bucket=rbucket, Key=key, Body=b"first", Tagging="t=first")
    wait_for(lambda: get_bytes(cb, rbucket, key) == b"first", what="first at b")
    up = ca.create_multipart_upload(Bucket=rbucket, Key=key, Tagging="t=create")["UploadId"]
    body = os.urandom(100_000)
    etag = ca.upload_part(Bucket=rbucket, Key=key, UploadId=up, PartNumber=1, Body=body)["ETag"]
    cb.put_object_tagging(Bucket=rbucket, Key=key,
                          Tagging={"TagSet": [{"Key": "t", "Value": "newer"}]})

    def tags_at_store(site):
        return store_client(site).get_object_tagging(Bucket=rbucket, Key=key)["TagSet"]

    wait_for(lambda: tags_at_store(a) == [{"Key": "t", "Value": "newer"}], what="tags at a")
    ca.complete_multipart_upload(Bucket=rbucket, Key=key, UploadId=up,
                                 MultipartUpload={"Parts": [{"ETag": etag, "PartNumber": 1}]})
    wait_for(lambda: get_bytes(cb, rbucket, key) == body, what="the upload's bytes at b")
    for site in (a, b):
        assert get_bytes(store_client(site), rbucket, key) == body
        assert tags_at_store(site) == [{"Key": "t", "Value": "newer"}], site.id


def test_multipart_create_whose_stamp_cannot_be_kept_is_refused(two_sites, rbucket):
    """The store writes a Create's stamp into the upload; if Redis cannot keep it for the
    Complete, the proxy aborts the upload and answers 503 SlowDown (a Complete that logged
    another stamp than the object carries could never be replicated: the chaos test found
    this with Redis restarting under a Create). Here the set of open uploads holds a string
    (WRONGTYPE), so the save fails."""
    a = two_sites["a"]
    ca = client(a.proxy.url)
    a.redis.command("SET", "s3tee:mpus", "not a sorted set")
    try:
        with pytest.raises(ClientError) as ei:
            ca.create_multipart_upload(Bucket=rbucket, Key="refused")
        assert ei.value.response["Error"]["Code"] == "SlowDown"
        assert ei.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
        ups = store_client(a).list_multipart_uploads(Bucket=rbucket).get("Uploads", [])
        assert [u for u in ups if u["Key"] == "refused"] == [], "the refused upload was left open"
    finally:
        a.redis.command("DEL", "s3tee:mpus")
    # the proxy serves the retry
    up = ca.create_multipart_upload(Bucket=rbucket, Key="refused")["UploadId"]
    e = ca.upload_part(Bucket=rbucket, Key="refused", UploadId=up, PartNumber=1, Body=b"x")["ETag"]
    ca.complete_multipart_upload(Bucket=rbucket, Key="refused", UploadId=up,
                                 MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": e}]})
    assert int(a.redis.command("ZCARD", "s3tee:mpus")) == 0, "a completed upload still holds the horizon"
    got = wait_for(lambda: get_bytes(client(two_sites["b"].proxy.url), rbucket, "refused"),
                   timeout=30, what="the retried upload at b")
    assert got == b"x"
