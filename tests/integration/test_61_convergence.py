"""Convergence under conflict, clocks, and the queue's failure modes (async mode).

Two real sites (RGW, Redis, s3tee-proxy, s3tee-replicator each; a network namespace each
where the bed can make them, else loopback: tests/bed/sites.py); site b's proxy runs with
a test-only clock offset (S3TEE_CLOCK_OFFSET_MS) within max_clock_offset.
"""
import concurrent.futures as cf
import json
import os
import random
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bed"))
import sites as sitesmod  # noqa: E402
from test_60_replication import client, missing, store_client, wait_for  # noqa: E402

KEYS = [f"hot/{i}" for i in range(6)]


@pytest.fixture(scope="module")
def skewed():
    """Site b's clock runs 3 s ahead (well within max_clock_offset 60s)."""
    d = sitesmod.Deployment(["a", "b"], proxy_env={"b": {"S3TEE_CLOCK_OFFSET_MS": "3000"}}).start()
    yield d
    d.stop()


def make_bucket(d, name):
    for s in d.sites.values():
        store_client(s).create_bucket(Bucket=name)
    return name


def state(site, bucket, key):
    """(present, bytes, tags, stamp) as the store at SITE holds it."""
    c = store_client(site)
    try:
        obj = c.get_object(Bucket=bucket, Key=key)
    except c.exceptions.NoSuchKey:
        return (False, None, None, None)
    body = obj["Body"].read()
    tags = c.get_object_tagging(Bucket=bucket, Key=key)["TagSet"]
    return (True, body, sorted((t["Key"], t["Value"]) for t in tags),
            obj["Metadata"].get("s3tee-stamp"))


def text(v):
    return v.decode("latin-1") if isinstance(v, bytes) else str(v)


def fields_of(flat):
    return {text(flat[i]): text(flat[i + 1]) for i in range(0, len(flat), 2)}


def conflicts(site, bucket):
    out = []
    for _id, flat in site.redis.command("XRANGE", "s3tee:conflicts", "-", "+"):
        f = fields_of(flat)
        if f["bucket"] == bucket:
            out.append(f)
    return out


def test_concurrent_writers_converge_and_losers_are_logged_once(skewed):
    d = skewed
    bucket = make_bucket(d, f"conv{os.getpid() % 10000}")
    rng = random.Random(7)

    def worker(site_id, n):
        c = client(d[site_id].proxy.url)
        done = 0
        for i in range(n):
            key = rng.choice(KEYS)
            op = rng.random()
            try:
                if op < 0.6:
                    c.put_object(Bucket=bucket, Key=key, Body=f"{site_id}-{i}".encode() * 50)
                elif op < 0.8:
                    c.delete_object(Bucket=bucket, Key=key)
                else:
                    c.put_object_tagging(Bucket=bucket, Key=key, Tagging={"TagSet": [
                        {"Key": "w", "Value": f"{site_id}{i}"}]})
                done += 1
            except c.exceptions.ClientError as e:
                # tagging a key deleted a moment ago, or a busy key: a refused write is not
                # an acknowledged one, so it may not count
                assert e.response["Error"]["Code"] in ("NoSuchKey", "SlowDown", "404"), e
        return done

    with cf.ThreadPoolExecutor(8) as ex:
        futs = [ex.submit(worker, s, 40) for s in ("a", "b") for _ in range(4)]
        acked = sum(f.result() for f in futs)
    assert acked > 200
    assert d.wait_drained(120), "queues did not drain"
    time.sleep(0.5)
    for key in KEYS:
        sa, sb = state(d["a"], bucket, key), state(d["b"], bucket, key)
        assert sa == sb, f"{key} diverged: a={sa} b={sb}"
    # every conflict is logged once: no losing stamp appears twice across the sites
    losers = [c["loser"] for s in d.sites.values() for c in conflicts(s, bucket)]
    assert len(losers) == len(set(losers)), "a conflict was logged twice"
    # each conflict is logged at the loser's origin site
    for s in d.sites.values():
        for c in conflicts(s, bucket):
            assert c["loser"].endswith("." + s.id)


def test_two_proxies_at_one_site_never_share_a_stamp(skewed):
    d = skewed
    bucket = make_bucket(d, f"twin{os.getpid() % 10000}")
    a = d["a"]
    twin = sitesmod.bed.Proxy(a.store.url, store_key=(a.store.access_key, a.store.secret),
                              tls=False, directives=dict(a.proxy.directives),
                              extra_creds=a.proxy.extra_creds)
    twin.start()
    try:
        c1, c2 = client(a.proxy.url), client(twin.url)

        def put(c, i):
            c.put_object(Bucket=bucket, Key=f"k{i}", Body=b"x")

        with cf.ThreadPoolExecutor(16) as ex:
            list(ex.map(lambda i: put(c1 if i % 2 else c2, i), range(200)))
        # the stamps as the store keeps them (the stream is trimmed once peers acked it)
        sc = store_client(a)
        with cf.ThreadPoolExecutor(8) as ex:
            stamps = list(ex.map(lambda i: sc.head_object(Bucket=bucket, Key=f"k{i}")
                                 ["Metadata"]["s3tee-stamp"], range(200)))
        assert len(set(stamps)) == 200, "two writes shared a stamp"
        assert all(st.endswith(".a") for st in stamps)
    finally:
        twin.stop()


def test_delete_then_delayed_older_put_does_not_resurrect(skewed):
    d = skewed
    bucket = make_bucket(d, f"tomb{os.getpid() % 10000}")
    a, b = d["a"], d["b"]
    a.replicator.stop()                # a's writes wait in a's queue
    try:
        client(a.proxy.url).put_object(Bucket=bucket, Key="k", Body=b"old put at a")
        time.sleep(0.05)
        client(b.proxy.url).put_object(Bucket=bucket, Key="k", Body=b"b")
        client(b.proxy.url).delete_object(Bucket=bucket, Key="k")   # newer stamp (b runs ahead)
        assert d.wait_drained(30) is False or True
        wait_for(lambda: missing(store_client(a), bucket, "k"), what="delete at a")
    finally:
        a.replicator.start()           # the delayed older PUT now reaches b
    assert d.wait_drained(60)
    time.sleep(0.3)
    assert missing(store_client(b), bucket, "k"), "an older PUT resurrected a deleted key"
    assert missing(store_client(a), bucket, "k")


def test_peer_clock_beyond_offset_is_refused_then_applied(tmp_path):
    d = sitesmod.Deployment(["a", "b"], proxy_directives={"max_clock_offset": "2s"},
                            proxy_env={"a": {"S3TEE_CLOCK_OFFSET_MS": "30000"}}).start()
    try:
        bucket = make_bucket(d, f"clock{os.getpid() % 10000}")
        a, b = d["a"], d["b"]
        client(a.proxy.url).put_object(Bucket=bucket, Key="k", Body=b"from the future")
        time.sleep(2.0)
        assert missing(store_client(b), bucket, "k"), "a stamp 30 s ahead was applied"
        log = Path(b.proxy.error_log).read_text()
        assert "ALARM clock" in log and "site a" in log
        assert d.backlog("a") > 0, "the refused entry must wait in a's queue"
        # fix a's clock: restart its proxy without the offset; the queued entry applies
        a.proxy.stop()
        a.proxy.extra_env.pop("S3TEE_CLOCK_OFFSET_MS", None)
        a.proxy.start()
        wait_for(lambda: not missing(store_client(b), bucket, "k"), timeout=90,
                 what="entry applied once the stamp is no longer in the future")
    finally:
        d.stop()


def test_redis_down_writes_slow_down_reads_work_then_resume(skewed):
    d = skewed
    bucket = make_bucket(d, f"redis{os.getpid() % 10000}")
    a = d["a"]
    ca = client(a.proxy.url)
    ca.put_object(Bucket=bucket, Key="before", Body=b"1")
    a.redis.stop()
    try:
        with pytest.raises(ca.exceptions.ClientError) as e:
            ca.put_object(Bucket=bucket, Key="during", Body=b"2")
        assert e.value.response["Error"]["Code"] == "SlowDown"
        assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
        assert missing(store_client(a), bucket, "during"), "a refused write reached the store"
        assert ca.get_object(Bucket=bucket, Key="before")["Body"].read() == b"1"
    finally:
        a.redis.start()
    wait_for(lambda: ca.put_object(Bucket=bucket, Key="after", Body=b"3"), timeout=20,
             what="writes resume by themselves")
    wait_for(lambda: not missing(store_client(d["b"]), bucket, "after"), what="after at b")


def test_peer_down_backlog_drains_and_failures_dead_letter():
    d = sitesmod.Deployment(["a", "b"], replicator_directives={"max_attempts": "3"}).start()
    try:
        bucket = make_bucket(d, f"down{os.getpid() % 10000}")
        a, b = d["a"], d["b"]
        b.proxy.stop()
        ca = client(a.proxy.url)
        for i in range(30):
            ca.put_object(Bucket=bucket, Key=f"k{i}", Body=b"%d" % i)
        time.sleep(1.0)
        assert d.backlog("a") > 0
        b.proxy.start()
        assert d.wait_drained(90)
        for i in range(30):
            assert store_client(b).get_object(Bucket=bucket, Key=f"k{i}")["Body"].read() == b"%d" % i
        # an entry that keeps failing: its bucket does not exist at b
        store_client(a).create_bucket(Bucket=bucket + "-only-a")
        ca.put_object(Bucket=bucket + "-only-a", Key="orphan", Body=b"x")
        wait_for(lambda: int(a.redis.command("XLEN", "s3tee:dead")) >= 1, timeout=60,
                 what="dead letter")
        dead = a.redis.command("XRANGE", "s3tee:dead", "-", "+")
        f = fields_of(dead[-1][1])
        assert f["key"] == "orphan" and f["peer"] == "b" and f["reason"]
        assert d.wait_drained(30), "the dead entry must leave the pending list"
    finally:
        d.stop()
