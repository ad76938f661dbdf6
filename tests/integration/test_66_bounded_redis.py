"""Bounded Redis (DESIGN.md "Durability of the queue"): a peer that is away long enough to
owe more than backlog_cap entries, or whose backlog fills Redis past backlog_memory_cap of
its maxmemory, is marked "resync from T" (s3tee:rebuild:<peer>), its consumer group
restarts at the stream's end, the stream is trimmed, an alarm is logged, and local writes
keep succeeding throughout.

Real parts: two sites (RGW store, Redis with AOF, proxy, replicator each) from
tests/bed/sites.py; Debian's boto3 1.26 as the client; site b's proxy stopped as the
outage (its replicator keeps running).
"""
import json
import os
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


@pytest.fixture
def outage():
    """Two sites, b's proxy down; a's replicator measures every 300 ms."""
    d = sitesmod.Deployment(["a", "b"], replicator_directives={
        "trim_interval": "300ms", "backlog_cap": "60", "retry_base": "50ms",
        "retry_max": "200ms"}).start()
    try:
        for s in d.sites.values():
            client(s.store.url, s.store.access_key, s.store.secret).create_bucket(Bucket="bnd")
        d["b"].proxy.stop()
        yield d
    finally:
        d.stop()


def test_backlog_cap_marks_peer_and_trims(outage):
    d = outage
    a = d["a"]
    c = client(a.proxy.url)
    t_first = time.time() * 1000
    for i in range(100):
        c.put_object(Bucket="bnd", Key=f"k{i:03d}", Body=b"x%d" % i)
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
        c.put_object(Bucket="bnd", Key=f"after{i}", Body=b"y")
    wait_for(lambda: json.loads(Path(a.replicator.metrics_path).read_text())
             ["peers"]["b"]["marked_for_resync_ms"], 10, "the mark in a's metrics")
    # b back: what was queued after the mark arrives; the mark stays for resync to clear
    d["b"].proxy.start()
    store_b = client(d["b"].store.url, d["b"].store.access_key, d["b"].store.secret)
    wait_for(lambda: d.backlog("a") == 0, 30, "a's backlog for b drained")
    keys = {o["Key"] for o in store_b.list_objects_v2(Bucket="bnd").get("Contents", [])}
    assert {f"after{i}" for i in range(10)} <= keys
    assert rebuild_mark(a, "b") is not None
    # what the dropped queue held comes back by resync, the way the alarm says
    env = dict(os.environ)
    env.update(bed.SANITIZER_ENV)
    p = subprocess.run([str(bed.build_dir() / "s3tee"), "resync", "-c", str(a.replicator.conf_path),
                        "--bucket", "bnd", "--peer", "b"], capture_output=True, text=True,
                       timeout=60, env=env)
    assert p.returncode == 0, (p.stdout, p.stderr)
    keys = {o["Key"] for o in store_b.list_objects_v2(Bucket="bnd").get("Contents", [])}
    assert keys == {f"k{i:03d}" for i in range(100)} | {f"after{i}" for i in range(10)}


def test_memory_cap_marks_largest_backlog(outage):
    d = outage
    a = d["a"]
    c = client(a.proxy.url)
    # a backlog under backlog_cap, then Redis told its maxmemory is nearly reached
    for i in range(30):
        c.put_object(Bucket="bnd", Key=f"m{i:03d}", Body=b"m")
    used = int(dict(line.split(":", 1) for line in
                    a.redis.command("INFO", "memory").splitlines()
                    if ":" in line)["used_memory"])
    a.redis.command("CONFIG", "SET", "maxmemory", str(int(used * 1.1)))
    try:
        mark = wait_for(lambda: rebuild_mark(a, "b"), 15, "s3tee:rebuild:b at site a")
        assert "maxmemory" in mark["reason"] and "backlog_memory_cap 80%" in mark["reason"]
        # local writes keep succeeding (noeviction would refuse them once Redis is full)
        for i in range(20):
            c.put_object(Bucket="bnd", Key=f"n{i:03d}", Body=b"n")
    finally:
        a.redis.command("CONFIG", "SET", "maxmemory", "0")
