"""Bounded Redis (DESIGN.md "Durability of the queue"): a peer that is away long enough to
owe more than backlog_cap entries, or whose backlog fills Redis past backlog_memory_cap of
its maxmemory, is marked "resync from T" (s3tee:rebuild:<peer>), its consumer group
restarts at the stream's end, the stream is trimmed, an alarm is logged, and local writes
keep succeeding throughout. And a Redis that comes back with fewer writes than it
acknowledged (restored from an old copy of its AOF) is noticed through the count kept in
the store, every peer is marked, and resync (trusting the stamps in the store) delivers
the writes Redis forgot.

Real parts: two sites (RGW store, Redis with AOF, proxy, replicator each) from
tests/bed/sites.py; Debian's boto3 1.26 as the client; site b's proxy stopped as the
outage (its replicator keeps running).
"""
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bed"))
import bed  # noqa: E402
import sites as sitesmod  # noqa: E402


def client(url, ak="AKIDCLIENT", sk="secretclient"):
    return boto3.client("s3", endpoint_url=url, region_name="us-east-1", aws_access_key_id=ak,
                        aws_secret_access_key=sk,
                        config=Config(s3={"addressing_style": "path"},
                                      retries={"max_attempts": 1}))


def wait_for(pred, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def rebuild_mark(site, peer):
    v = site.redis.command("GET", f"s3tee:rebuild:{peer}")
    return json.loads(v) if v else None


def xlen(site):
    return int(site.redis.command("XLEN", "s3tee:log") or 0)


@pytest.fixture(scope="module")
def two_sites():
    """Two sites; a's replicator measures every 300 ms, marks b past 60 entries."""
    d = sitesmod.Deployment(["a", "b"], replicator_directives={
        "trim_interval": "300ms", "backlog_cap": "60", "retry_base": "50ms",
        "retry_max": "200ms"}).start()
    yield d
    d.stop()


@pytest.fixture
def outage(two_sites, request):
    """A fresh bucket at both sites, and b's proxy down (its replicator keeps running).
    Afterwards b is back, a's queue drained and the mark cleared, for the next test."""
    d = two_sites
    bk = f"bnd-{request.node.name[5:25].replace('_', '-').strip('-')}"
    for s in d.sites.values():
        client(s.store.url, s.store.access_key, s.store.secret).create_bucket(Bucket=bk)
    d["b"].proxy.stop()
    try:
        yield d, bk
    finally:
        d["a"].redis.command("CONFIG", "SET", "maxmemory", "0")
        if not d["b"].proxy.is_alive():
            d["b"].proxy.start()
        d.wait_drained(30)
        d["a"].redis.command("DEL", "s3tee:rebuild:b")


def test_backlog_cap_marks_peer_and_trims(outage):
    d, bk = outage
    a = d["a"]
    c = client(a.proxy.url)
    t_first = time.time() * 1000
    for i in range(100):
        c.put_object(Bucket=bk, Key=f"k{i:03d}", Body=b"x%d" % i)
    mark = wait_for(lambda: rebuild_mark(a, "b"), 15, "s3tee:rebuild:b at site a")
    assert mark["marked_by"] == "a" and "backlog_cap 60" in mark["reason"]
    # T is the oldest write b never acknowledged: no later than the first write here
    assert mark["since_ms"] <= time.time() * 1000 and mark["since_ms"] >= t_first - 5000
    # the group restarted at the end: the stream is trimmed below it
    wait_for(lambda: xlen(a) < 40, 15, f"the stream trimmed (XLEN {xlen(a)})")
    log = Path(a.replicator.error_log).read_text()
    assert "ALARM peer b marked for resync" in log and "s3tee resync --peer b" in log
    # local writes go on, and new ones queue for b as before
    for i in range(10):
        c.put_object(Bucket=bk, Key=f"after{i}", Body=b"y")
    wait_for(lambda: json.loads(Path(a.replicator.metrics_path).read_text())
             ["peers"]["b"]["marked_for_resync_ms"], 10, "the mark in a's metrics")
    # b back: what was queued after the mark arrives; the mark stays for resync to clear
    d["b"].proxy.start()
    store_b = client(d["b"].store.url, d["b"].store.access_key, d["b"].store.secret)
    wait_for(lambda: d.backlog("a") == 0, 30, "a's backlog for b drained")
    keys = {o["Key"] for o in store_b.list_objects_v2(Bucket=bk).get("Contents", [])}
    assert {f"after{i}" for i in range(10)} <= keys
    assert rebuild_mark(a, "b") is not None
    # what the dropped queue held comes back by resync, the way the alarm says
    env = dict(os.environ)
    env.update(bed.SANITIZER_ENV)
    p = subprocess.run([str(bed.build_dir() / "s3tee"), "resync", "-c", str(a.replicator.conf_path),
                        "--bucket", bk, "--peer", "b"], capture_output=True, text=True,
                       timeout=60, env=env)
    assert p.returncode == 0, (p.stdout, p.stderr)
    keys = {o["Key"] for o in store_b.list_objects_v2(Bucket=bk).get("Contents", [])}
    assert keys == {f"k{i:03d}" for i in range(100)} | {f"after{i}" for i in range(10)}


def test_memory_cap_marks_largest_backlog(outage):
    d, bk = outage
    a = d["a"]
    c = client(a.proxy.url)
    # a backlog under backlog_cap, then Redis told its maxmemory is nearly reached
    for i in range(30):
        c.put_object(Bucket=bk, Key=f"m{i:03d}", Body=b"m")
    used = int(dict(line.split(":", 1) for line in
                    a.redis.command("INFO", "memory").splitlines()
                    if ":" in line)["used_memory"])
    a.redis.command("CONFIG", "SET", "maxmemory", str(int(used * 1.1)))
    try:
        mark = wait_for(lambda: rebuild_mark(a, "b"), 15, "s3tee:rebuild:b at site a")
        assert "maxmemory" in mark["reason"] and "backlog_memory_cap 80%" in mark["reason"]
        # local writes keep succeeding (noeviction would refuse them once Redis is full)
        for i in range(20):
            c.put_object(Bucket=bk, Key=f"n{i:03d}", Body=b"n")
    finally:
        a.redis.command("CONFIG", "SET", "maxmemory", "0")


def watermark(site):
    """entries_added of the store's copy (s3tee-meta/<site>/redis-watermark.json), or -1."""
    c = client(site.store.url, site.store.access_key, site.store.secret)
    try:
        body = c.get_object(Bucket="s3tee-meta", Key=f"{site.id}/redis-watermark.json")["Body"]
        return json.loads(body.read())["entries_added"]
    except c.exceptions.ClientError:
        return -1


def entries_added(site):
    if not int(site.redis.command("EXISTS", "s3tee:log")):
        return 0
    info = site.redis.command("XINFO", "STREAM", "s3tee:log")
    return int(dict(zip(info[0::2], info[1::2]))["entries-added"])


def put_ok(c, bk, key):
    try:
        c.put_object(Bucket=bk, Key=key, Body=b"l")
        return True
    except c.exceptions.ClientError as e:
        if e.response["Error"]["Code"] != "SlowDown":
            raise
        return False


def test_redis_restored_from_old_aof_is_noticed_and_resynced(outage, tmp_path):
    d, bk = outage
    a, b = d["a"], d["b"]
    c = client(a.proxy.url)
    base = entries_added(a)        # earlier tests wrote at this site too
    wait_for(lambda: watermark(a) == base, 15, "the store's copy to catch up")
    for i in range(5):
        c.put_object(Bucket=bk, Key=f"early{i}", Body=b"e")
    wait_for(lambda: watermark(a) >= base + 5, 15, "the store's copy of a's count")
    # an operator's copy of a's Redis, taken now
    a.redis.stop()
    shutil.copytree(a.redis.dir / "appendonlydir", tmp_path / "aof")
    a.redis.start()
    # the proxy answers 503 SlowDown until it has reconnected to Redis
    wait_for(lambda: put_ok(c, bk, "late0"), 15, "a write accepted after the Redis restart")
    for i in range(1, 20):
        c.put_object(Bucket=bk, Key=f"late{i}", Body=b"l")
    wait_for(lambda: watermark(a) >= base + 25, 15, "the store's copy to follow")
    # ... and the copy put back: Redis forgot 20 acknowledged writes
    a.redis.stop()
    shutil.rmtree(a.redis.dir / "appendonlydir")
    shutil.copytree(tmp_path / "aof", a.redis.dir / "appendonlydir")
    a.redis.start()
    mark = wait_for(lambda: rebuild_mark(a, "b"), 15, "s3tee:rebuild:b after the restore")
    assert "lost acknowledged writes" in mark["reason"]
    log = Path(a.replicator.error_log).read_text()
    assert "ALARM this site's Redis lost acknowledged writes" in log
    wait_for(lambda: watermark(a) == base + 5, 15, "the store's copy to follow Redis again")
    # the late entries are gone from Redis; the replicator may still hold some it read
    # before the restore (it retries them from memory), but nothing else would carry them
    assert int(a.redis.command("XLEN", "s3tee:log")) <= base + 5
    b.proxy.start()
    wait_for(lambda: d.backlog("a") == 0, 30, "a's remaining queue drained")
    store_b = client(b.store.url, b.store.access_key, b.store.secret)
    keys = {o["Key"] for o in store_b.list_objects_v2(Bucket=bk).get("Contents", [])}
    assert {f"early{i}" for i in range(5)} <= keys
    env = dict(os.environ)
    env.update(bed.SANITIZER_ENV)
    p = subprocess.run([str(bed.build_dir() / "s3tee"), "resync", "-c", str(a.replicator.conf_path),
                        "--bucket", bk, "--peer", "b"], capture_output=True, text=True,
                       timeout=60, env=env)
    assert p.returncode == 0, (p.stdout, p.stderr)
    keys = {o["Key"] for o in store_b.list_objects_v2(Bucket=bk).get("Contents", [])}
    assert keys == {f"early{i}" for i in range(5)} | {f"late{i}" for i in range(20)}
