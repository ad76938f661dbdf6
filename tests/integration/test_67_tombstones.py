"""Tombstones outlive partitions (DESIGN.md "Deletes and tombstones"): a PUT queued at a
partitioned site before a later DELETE elsewhere must not bring the key back after the
partition heals, however long it lasted - longer than every window the replicators use
(retry_max, claim_idle, lease_time here). The DELETE leaves a tombstone with its stamp in
the index; the old PUT arrives with an older stamp and is answered "stale".

Tombstones are then dropped once causally stable (replicator/gc.h): the replicators here
run a collection round every 300 ms with no extra keep time, so every test also checks
that a tombstone stays while some site may still send an older write of its key (a
partitioned peer's queued PUT, an open multipart upload) and goes once none can.

Real parts: two sites (RGW store, Redis, proxy, replicator each), the links between them
through the bed's WAN relay (tests/bed/wan.py), partitioned and healed at run time;
Debian's boto3 1.26 as the client.
"""
import sys
import time
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bed"))
import sites as sitesmod  # noqa: E402
from lib import logscan  # noqa: E402

WINDOW_S = 2   # retry_max, claim_idle and lease_time are all at most this


def client(url, ak="AKIDCLIENT", sk="secretclient"):
    return boto3.client("s3", endpoint_url=url, region_name="us-east-1", aws_access_key_id=ak,
                        aws_secret_access_key=sk,
                        config=Config(s3={"addressing_style": "path"},
                                      retries={"max_attempts": 1}))


def store(site):
    return client(site.store.url, site.store.access_key, site.store.secret)


def absent(site, bucket, key):
    try:
        store(site).head_object(Bucket=bucket, Key=key)
        return False
    except store(site).exceptions.ClientError as e:
        return e.response["Error"]["Code"] in ("404", "NoSuchKey")


@pytest.fixture(scope="module")
def wan_sites():
    d = sitesmod.Deployment(["a", "b"], wan=True, proxy_directives={"lease_time": "2s"},
                            replicator_directives={"retry_base": "100ms", "retry_max": "1s",
                                                   "claim_idle": "2s", "gc_interval": "300ms",
                                                   "tombstone_keep": "0s"}).start()
    try:
        for s in d.sites.values():
            store(s).create_bucket(Bucket="tomb")
        yield d
    finally:
        d.wan.heal()
        d.stop()


def tombstone(site, bucket, key):
    v = site.redis.command("HGET", f"s3tee:o:{bucket}/{key}", "del")
    return str(v) in ("1", "b'1'")


def wait_collected(d, bucket, key, timeout=20.0):
    """Waits until no site's index holds the key's tombstone; returns the sites still holding it."""
    deadline = time.monotonic() + timeout
    while True:
        left = [s.id for s in d.sites.values() if tombstone(s, bucket, key)]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.2)


def gc_metrics(site):
    import json
    return json.loads(Path(site.replicator.metrics_path).read_text()).get("gc", {})


def test_old_put_from_partitioned_site_does_not_resurrect(wan_sites):
    d = wan_sites
    a, b = d["a"], d["b"]
    client(a.proxy.url).put_object(Bucket="tomb", Key="k", Body=b"v1")
    assert d.wait_drained(30)
    assert store(b).get_object(Bucket="tomb", Key="k")["Body"].read() == b"v1"

    d.wan.partition()                      # both directions
    # b's overwrite waits in b's queue; a's later delete waits in a's
    client(b.proxy.url).put_object(Bucket="tomb", Key="k", Body=b"v2-old")
    time.sleep(0.05)
    client(a.proxy.url).delete_object(Bucket="tomb", Key="k")
    assert absent(a, "tomb", "k")
    time.sleep(3 * WINDOW_S)               # longer than any window in the config
    # while cut off, each site keeps its own view; nothing was dropped from the queues
    assert d.backlog("a") >= 1 and d.backlog("b") >= 1
    # collection ran many rounds meanwhile, but b's queued PUT is older than the delete and
    # b has not been heard from since: a keeps the tombstone
    assert tombstone(a, "tomb", "k"), "a dropped the tombstone while b could still send the PUT"
    d.wan.heal()
    assert d.wait_drained(60)
    time.sleep(0.5)
    assert absent(a, "tomb", "k"), "the older PUT from b resurrected the key at a"
    assert absent(b, "tomb", "k"), "the newer DELETE from a did not reach b"
    # the PUT reached a and was answered stale: applied nowhere, logged once as a conflict
    # at its origin (b), where it was the visible value until the delete arrived
    puts_at_a = [e for e in logscan.access_entries(a.proxy)
                 if e["key"] == "k" and e["method"] == "PUT" and e["access_key"].startswith("AKSITE")]
    assert puts_at_a and all(e["status"] == 200 for e in puts_at_a)
    # now nothing older can come: both sites drop the tombstone, and the key stays gone
    assert wait_collected(d, "tomb", "k") == []
    for s in (a, b):
        assert absent(s, "tomb", "k"), f"the key came back at {s.id} after its tombstone went"
        deadline = time.monotonic() + 10
        while True:
            g = gc_metrics(s)
            if g.get("tombstones_dropped", 0) >= 1 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert g.get("tombstones_dropped", 0) >= 1 and g.get("horizon_ms", -1) > 0, (s.id, g)


def test_open_multipart_upload_holds_the_tombstone(wan_sites):
    """An upload started before a DELETE elsewhere still may complete with its older Create
    stamp: while it is open, no site drops the key's tombstone; once it is aborted, they do."""
    d = wan_sites
    a, b = d["a"], d["b"]
    client(a.proxy.url).put_object(Bucket="tomb", Key="m", Body=b"base")
    assert d.wait_drained(30)
    up = client(b.proxy.url).create_multipart_upload(Bucket="tomb", Key="m")["UploadId"]
    time.sleep(0.05)
    client(a.proxy.url).delete_object(Bucket="tomb", Key="m")
    assert d.wait_drained(30)
    time.sleep(10 * 0.3)                   # ten collection rounds
    for s in (a, b):
        assert tombstone(s, "tomb", "m"), f"{s.id} dropped the tombstone under an open upload"
    # completing it now loses to the delete (its stamp is the Create's), so it is refused
    part = client(b.proxy.url).upload_part(Bucket="tomb", Key="m", UploadId=up, PartNumber=1,
                                           Body=b"late")
    with pytest.raises(Exception) as ei:
        client(b.proxy.url).complete_multipart_upload(
            Bucket="tomb", Key="m", UploadId=up,
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]})
    assert "OperationAborted" in str(ei.value)
    client(b.proxy.url).abort_multipart_upload(Bucket="tomb", Key="m", UploadId=up)
    assert wait_collected(d, "tomb", "m") == []
    for s in (a, b):
        assert absent(s, "tomb", "m"), s.id


def test_delete_during_partition_then_recreate(wan_sites):
    """A tombstone is not a ban: a PUT made after the DELETE (a higher stamp) wins again."""
    d = wan_sites
    a, b = d["a"], d["b"]
    client(a.proxy.url).put_object(Bucket="tomb", Key="r", Body=b"one")
    assert d.wait_drained(30)
    d.wan.partition()
    client(a.proxy.url).delete_object(Bucket="tomb", Key="r")
    time.sleep(0.05)
    client(b.proxy.url).put_object(Bucket="tomb", Key="r", Body=b"two-newer")
    time.sleep(WINDOW_S + 1)
    d.wan.heal()
    assert d.wait_drained(60)
    for s in (a, b):
        assert store(s).get_object(Bucket="tomb", Key="r")["Body"].read() == b"two-newer", s.id


def test_tag_register_without_an_object_is_collected(wan_sites):
    """A peer's tag change that found no object here is kept in the index as a bare tag
    register (test_60): only a PUT older than it can need it, so it goes like a tombstone,
    once no site can still send one."""
    d = wan_sites
    b = d["b"]
    stamp = "%016x.a" % (int(time.time() * 1000) << 16)
    peer = client(b.proxy.url, *sitesmod._site_key("a", "b"))

    def add(request, **_kw):
        request.headers["x-s3tee-stamp"] = stamp
        request.headers["x-s3tee-vv"] = "a=1"

    peer.meta.events.register("before-sign.s3.*", add)
    r = peer.put_object_tagging(Bucket="tomb", Key="g",
                                Tagging={"TagSet": [{"Key": "k", "Value": "v"}]})
    assert r["ResponseMetadata"]["HTTPHeaders"].get("x-s3tee-result") == "applied"
    tst = b.redis.command("HGET", "s3tee:o:tomb/g", "tst")
    assert (tst.decode() if isinstance(tst, bytes) else tst) == stamp
    deadline = time.monotonic() + 20
    while b.redis.command("EXISTS", "s3tee:o:tomb/g") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not b.redis.command("EXISTS", "s3tee:o:tomb/g"), "the bare tag register stayed"
    assert absent(b, "tomb", "g")
