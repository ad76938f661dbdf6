"""Intents a dead proxy left behind are settled by the replicator (notes/replication.md):
a write that reached the store but never the queue is indexed, logged and replicated; one
that never reached the store is forgotten without a mutation; a delete the store did is
replicated as a delete.

Site a's proxy runs with a 2 s lease and 2 s upstream timeouts, so its intents may be
settled ~6 s after they were recorded. The last test SIGKILLs site a's proxy during a
CompleteMultipartUpload and never restarts it.
"""
import hashlib
import json
import os
import sys
import threading
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bed"))
import sites as sitesmod  # noqa: E402
from test_60_replication import client, get_bytes, missing, store_client, wait_for  # noqa: E402

INTENTS = "s3tee:intents"


@pytest.fixture(scope="module")
def two_sites():
    d = sitesmod.Deployment(["a", "b"], proxy_directives={
        "lease_time": "2s", "upstream_first_byte_timeout": "2s",
        "upstream_io_timeout": "2s"}).start()
    yield d
    d.stop()


@pytest.fixture
def rbucket(two_sites, request):
    name = f"i{abs(hash(request.node.name)) % 10**8}-{os.getpid() % 1000}"
    for s in two_sites.sites.values():
        store_client(s).create_bucket(Bucket=name)
    return name


def uri_key(key):
    """queue.c's encoding of a key in the intent: S3 URI encoding, '/' kept."""
    keep = set(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~/")
    return "".join(chr(c) if c in keep else f"%{c:02X}" for c in key.encode())


def intent(op, bucket, key, holder="dead-proxy-1"):
    """The member text queue.c builds (same field order, no spaces)."""
    return ('{"site":"a","holder":%s,"op":%s,"bucket":%s,"key":"%s"}'
            % (json.dumps(holder), json.dumps(op), json.dumps(bucket), uri_key(key)))


def mint_stamp(site="a"):
    return f"{(int(time.time() * 1000) << 16):016x}.{site}"


def log_len(site):
    """Entries ever added to s3tee:log (XLEN would shrink when the replicator trims)."""
    try:
        info = site.redis.command("XINFO", "STREAM", "s3tee:log")
    except Exception:
        return 0
    info = [x.decode() if isinstance(x, bytes) else x for x in info]
    return int(dict(zip(info[0::2], info[1::2]))["entries-added"])


def intents(site):
    return [m.decode() if isinstance(m, bytes) else m
            for m in site.redis.command("ZRANGE", INTENTS, "0", "-1")]


def test_write_that_reached_only_the_store_is_replicated(two_sites, rbucket):
    a, b = two_sites["a"], two_sites["b"]
    key = "dir/left behind+1.bin"
    body = os.urandom(200_000)
    stamp = mint_stamp()
    store_client(a).put_object(Bucket=rbucket, Key=key, Body=body, ContentType="text/x-dead",
                               Metadata={"s3tee-stamp": stamp, "s3tee-vv": "a=1",
                                         "colour": "red"},
                               Tagging="team=x%20y&w=a%26b")
    before = log_len(a)
    member = intent("put", rbucket, key)
    a.redis.command("ZADD", INTENTS, str(int(time.time() * 1000) - 1000), member)
    got = wait_for(lambda: get_bytes(store_client(b), rbucket, key), timeout=30,
                   what="the settled write at b")
    assert hashlib.sha256(got).digest() == hashlib.sha256(body).digest()
    head = store_client(b).head_object(Bucket=rbucket, Key=key)
    assert head["Metadata"]["s3tee-stamp"] == stamp
    assert head["Metadata"]["colour"] == "red"
    assert head["ContentType"] == "text/x-dead"
    # the tags the dead proxy's write stored travel with it (read with GET ?tagging)
    tags = store_client(b).get_object_tagging(Bucket=rbucket, Key=key)["TagSet"]
    assert sorted((t["Key"], t["Value"]) for t in tags) == [("team", "x y"), ("w", "a&b")]
    assert member not in intents(a)
    assert log_len(a) == before + 1
    idx = a.redis.command("HGET", f"s3tee:o:{rbucket}/{key}", "st")
    assert (idx.decode() if isinstance(idx, bytes) else idx) == stamp
    # the proxy at a sees the index entry like any other write
    assert get_bytes(client(a.proxy.url), rbucket, key) == body


def test_write_that_never_reached_the_store_is_forgotten(two_sites, rbucket):
    a, b = two_sites["a"], two_sites["b"]
    key = "never landed"
    before = log_len(a)
    member = intent("put", rbucket, key, holder="dead-proxy-2")
    a.redis.command("ZADD", INTENTS, str(int(time.time() * 1000) - 1000), member)
    wait_for(lambda: member not in intents(a), timeout=30, what="the intent dropped")
    assert log_len(a) == before
    assert a.redis.command("EXISTS", f"s3tee:o:{rbucket}/{key}") in (0, b"0", "0")
    assert missing(store_client(b), rbucket, key)


def test_intent_of_a_held_key_waits(two_sites, rbucket):
    a = two_sites["a"]
    key = "held"
    member = intent("put", rbucket, key, holder="live-proxy")
    a.redis.command("SET", f"s3tee:l:{rbucket}/{key}", "live-proxy", "PX", "8000")
    a.redis.command("ZADD", INTENTS, str(int(time.time() * 1000) - 1000), member)
    time.sleep(6)  # more than a settle round
    assert member in intents(a), "settled while a live writer held the lease"
    wait_for(lambda: member not in intents(a), timeout=30, what="the intent after the lease")


def test_delete_that_reached_only_the_store_is_replicated(two_sites, rbucket):
    a, b = two_sites["a"], two_sites["b"]
    key = "to delete"
    client(a.proxy.url).put_object(Bucket=rbucket, Key=key, Body=b"x")
    wait_for(lambda: get_bytes(store_client(b), rbucket, key) == b"x", what="put at b")
    store_client(a).delete_object(Bucket=rbucket, Key=key)
    before = log_len(a)
    member = intent("delete", rbucket, key, holder="dead-proxy-3")
    a.redis.command("ZADD", INTENTS, str(int(time.time() * 1000) - 1000), member)
    try:
        wait_for(lambda: missing(store_client(b), rbucket, key), timeout=30, what="delete at b")
    except AssertionError:
        print("replicator a:", Path(a.replicator.error_log).read_text()[-3000:])
        print("index a:", a.redis.command("HGETALL", f"s3tee:o:{rbucket}/{key}"))
        raise
    assert member not in intents(a)
    assert log_len(a) == before + 1
    assert a.redis.command("HGET", f"s3tee:o:{rbucket}/{key}", "del") in (b"1", "1")


def test_proxy_killed_during_complete_multipart(two_sites, rbucket):
    """Last in the module: site a's proxy is SIGKILLed while the store completes the upload
    and is not restarted once that happened. When the kill comes too early (the store never
    completed), the proxy is restarted and the Complete sent again with a later kill."""
    a, b = two_sites["a"], two_sites["b"]
    key = "big/killed during complete"
    parts = [os.urandom(5 * 1024 * 1024) for _ in range(12)] + [os.urandom(4321)]
    ca = client(a.proxy.url)
    up = ca.create_multipart_upload(Bucket=rbucket, Key=key)
    etags = [ca.upload_part(Bucket=rbucket, Key=key, UploadId=up["UploadId"], PartNumber=n,
                            Body=p)["ETag"] for n, p in enumerate(parts, 1)]
    two_sites.wait_drained(timeout=30)
    before = log_len(a)

    def complete():
        try:
            client(a.proxy.url).complete_multipart_upload(
                Bucket=rbucket, Key=key, UploadId=up["UploadId"],
                MultipartUpload={"Parts": [{"PartNumber": n, "ETag": e}
                                           for n, e in enumerate(etags, 1)]})
        except Exception:
            pass   # the proxy dies under it

    def at_store():
        try:
            return store_client(a).head_object(Bucket=rbucket, Key=key)
        except Exception:
            return None

    landed = False
    for delay_ms in (0, 2, 4, 6, 8, 10, 13, 16, 20, 25, 30, 40, 50, 70):
        n0 = len(intents(a))
        t = threading.Thread(target=complete, daemon=True)
        t.start()
        deadline = time.time() + 30     # ListParts of 13 parts first; slow on a loaded machine
        while len(intents(a)) <= n0 and time.time() < deadline:
            pass                        # no sleep: the kill must follow the intent closely
        assert len(intents(a)) > n0, "Complete never recorded its intent"
        # the intent is recorded: the proxy is forwarding the Complete to the store now
        time.sleep(delay_ms / 1000)
        a.proxy.kill9()
        t.join(timeout=30)
        end = time.time() + 3
        while at_store() is None and time.time() < end:
            time.sleep(0.05)
        if at_store() is not None:
            landed = True
            break
        a.proxy.start()        # too early: the store never saw the whole Complete
        time.sleep(2.2)        # the dead proxy's lease runs out
    assert landed, "the store never completed the upload"
    assert log_len(a) == before, (
        f"the proxy committed before it died (kill {delay_ms} ms after the intent)")
    whole = b"".join(parts)
    got = wait_for(lambda: get_bytes(store_client(b), rbucket, key), timeout=60,
                   what="the upload at b")
    assert hashlib.sha256(got).digest() == hashlib.sha256(whole).digest()
    wait_for(lambda: not intents(a), timeout=30, what="every intent settled")
    assert log_len(a) == before + 1
    assert (store_client(b).head_object(Bucket=rbucket, Key=key)["Metadata"]["s3tee-stamp"]
            == at_store()["Metadata"]["s3tee-stamp"])
