"""s3tee resync (tools/resync.c): anti-entropy between two sites for one bucket.

The replicators never run here, so every byte that moves between the sites is moved by
resync: a site restored from an old backup (missing keys, stale keys, keys deleted
elsewhere whose tombstones must win, and newer writes of its own), --dry-run, a second run
that changes nothing, kill -9 mid-run and resume from the checkpoint, and --join of a
site holding objects that were written around s3tee (no stamps).
"""
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bed"))
import bed  # noqa: E402
import sites as sitesmod  # noqa: E402
from test_60_replication import client, get_bytes, missing, store_client  # noqa: E402


def add_site_keys(d, s):
    """The tool reads the replicator's configuration; pulls also need the peer's site key
    here, which the proxy's credentials hold (`site P ...`)."""
    with open(s.replicator.creds_path, "a") as f:
        for p in d.ids:
            if p != s.id:
                ak, sk = sitesmod._site_key(p, s.id)
                f.write(f"site {p} {ak} {sk}\n")


@pytest.fixture(scope="module")
def two_sites():
    d = sitesmod.Deployment(["a", "b"], start_replicators=False).start()
    for s in d.sites.values():
        s.replicator.write_files()
        add_site_keys(d, s)
    yield d
    d.stop()


@pytest.fixture
def rbucket(two_sites, request):
    name = f"r{abs(hash(request.node.name)) % 10**8}-{os.getpid() % 1000}"
    for s in two_sites.sites.values():
        store_client(s).create_bucket(Bucket=name)
    return name


def resync(d, site, peer, bucket, *args, check=None, conf=None, proxy=True):
    """Runs s3tee resync at SITE; returns (exit code, JSON lines, summary dict, stderr)."""
    s = d[site]
    argv = [str(bed.build_dir() / "s3tee"), "resync", "-c", str(conf or s.replicator.conf_path),
            "--bucket", bucket, "--peer", peer, *(["--proxy", s.proxy.url] if proxy else []),
            *args]
    env = dict(os.environ)
    env.update(bed.SANITIZER_ENV)
    p = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env)
    assert "Sanitizer" not in p.stderr and "runtime error" not in p.stderr, p.stderr
    lines = p.stdout.strip().splitlines()
    assert lines, p.stderr
    summary = dict(kv.split("=") for kv in lines[-1].split())
    summary = {k: int(v) for k, v in summary.items()}
    reports = [json.loads(x) for x in lines[:-1]]
    if check is not None:
        assert p.returncode == check, (p.returncode, p.stdout, p.stderr)
    return p.returncode, reports, summary, p.stderr


def state(site, bucket):
    """key -> (ETag, stamp) of every object in SITE's store, read around the proxy."""
    c = store_client(site)
    out = {}
    for page in c.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for o in page.get("Contents", []):
            h = c.head_object(Bucket=bucket, Key=o["Key"])
            out[o["Key"]] = (o["ETag"], h["Metadata"].get("s3tee-stamp"))
    return out


def listing(site, bucket):
    """key -> ETag of SITE's store (no HEADs: for many keys)."""
    out = {}
    for page in store_client(site).get_paginator("list_objects_v2").paginate(Bucket=bucket):
        out.update({o["Key"]: o["ETag"] for o in page.get("Contents", [])})
    return out


def test_restored_site_converges_and_second_run_changes_nothing(two_sites, rbucket):
    d = two_sites
    a, b = client(d["a"].proxy.url), client(d["b"].proxy.url)
    # the state both sites had when b's backup was taken: resync copies a's writes to b
    for i in range(6):
        a.put_object(Bucket=rbucket, Key=f"k{i}", Body=f"v1 of k{i}".encode(),
                     Metadata={"colour": "blue"}, Tagging="t=1")
    rc, rep, summ, _ = resync(d, "a", "b", rbucket, check=0)
    assert summ == {"checked": 6, "pushed": 6, "pulled": 0, "deleted": 0, "errors": 0}
    assert {r["key"] for r in rep} == {f"k{i}" for i in range(6)}
    assert all(r["action"] == "push" and r["result"] == "applied" for r in rep)
    assert state(d["a"], rbucket) == state(d["b"], rbucket)
    assert store_client(d["b"]).get_object_tagging(Bucket=rbucket, Key="k0")["TagSet"] == \
        [{"Key": "t", "Value": "1"}]

    # after the backup, a went on: new keys, overwrites, deletes (tombstones at a only)
    a.put_object(Bucket=rbucket, Key="new one", Body=b"fresh")
    a.put_object(Bucket=rbucket, Key="k1", Body=b"v2 of k1")
    a.delete_object(Bucket=rbucket, Key="k2")
    a.delete_object(Bucket=rbucket, Key="k3")
    # and b, once restored, took writes of its own: newer than a's copies
    b.put_object(Bucket=rbucket, Key="k4", Body=b"v2 of k4 written at b")
    b.delete_object(Bucket=rbucket, Key="k5")
    # a PUT at b older than a's later delete of the same key: the tombstone must win
    b.put_object(Bucket=rbucket, Key="late", Body=b"b's old write")
    time.sleep(0.01)
    a.put_object(Bucket=rbucket, Key="late", Body=b"a's write")
    a.delete_object(Bucket=rbucket, Key="late")
    before = (state(d["a"], rbucket), state(d["b"], rbucket))

    rc, rep, summ, _ = resync(d, "b", "a", rbucket, "--dry-run", check=1)
    assert (state(d["a"], rbucket), state(d["b"], rbucket)) == before, "dry run changed data"
    acts = {r["key"]: r["action"] for r in rep}
    assert acts == {"new one": "pull", "k1": "pull", "k2": "pull-delete", "k3": "pull-delete",
                    "k4": "push", "k5": "push-delete", "late": "pull-delete"}, rep
    assert all(r["result"] == "dry-run" for r in rep)
    assert all(r["bucket"] == rbucket and r["local"] != r["peer"] for r in rep)
    assert summ["errors"] == 0

    rc, rep, summ, _ = resync(d, "b", "a", rbucket, check=0)
    assert {r["key"]: r["action"] for r in rep} == acts
    assert all(r["result"] == "applied" for r in rep), rep
    assert summ["pushed"] == 1 and summ["pulled"] == 2 and summ["deleted"] == 4, summ
    sa, sb = state(d["a"], rbucket), state(d["b"], rbucket)
    assert sa == sb
    assert set(sa) == {"k0", "k1", "k4", "new one"}
    assert get_bytes(store_client(d["b"]), rbucket, "k1") == b"v2 of k1"
    assert get_bytes(store_client(d["a"]), rbucket, "k4") == b"v2 of k4 written at b"
    assert missing(store_client(d["b"]), rbucket, "late")
    head = store_client(d["b"]).head_object(Bucket=rbucket, Key="k0")
    assert head["Metadata"]["colour"] == "blue"
    # the pulled write keeps its stamp from a, and b's index knows it
    st = d["b"].redis.command("HGET", f"s3tee:o:{rbucket}/k1", "st")
    assert (st.decode() if isinstance(st, bytes) else st) == sa["k1"][1]

    # a second run, from either side, finds nothing to do
    for site, peer in (("b", "a"), ("a", "b")):
        rc, rep, summ, _ = resync(d, site, peer, rbucket, check=0)
        assert rep == [] and summ == {"checked": 4, "pushed": 0, "pulled": 0, "deleted": 0,
                                      "errors": 0}, (site, rep, summ)
    # the tombstones are still there: the late PUT at b cannot come back
    assert d["a"].redis.command("HGET", f"s3tee:o:{rbucket}/late", "del") in (b"1", "1")


def test_kill9_mid_run_resumes_from_checkpoint(two_sites, rbucket):
    d = two_sites
    a = client(d["a"].proxy.url)
    n = 120
    for i in range(n):
        a.put_object(Bucket=rbucket, Key=f"obj/{i:04d}", Body=b"x%d" % i)
    s = d["a"]
    # 40 keys/s: the first checkpoint (after 2 s) comes well before the end (3 s)
    argv = [str(bed.build_dir() / "s3tee"), "resync", "-c", str(s.replicator.conf_path),
            "--bucket", rbucket, "--peer", "b", "--proxy", s.proxy.url, "--rate", "40"]
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ckpt = f"s3tee:resync:b:{rbucket}"
    deadline = time.time() + 20
    while time.time() < deadline and not s.redis.command("HGET", ckpt, "after"):
        time.sleep(0.02)
    p.send_signal(signal.SIGKILL)
    p.communicate()
    after = s.redis.command("HGET", ckpt, "after")
    assert after, "no checkpoint was saved"
    after = after.decode() if isinstance(after, bytes) else after
    done_before = len(listing(d["b"], rbucket))
    assert 0 < done_before < n
    rc, rep, summ, err = resync(d, "a", "b", rbucket, check=0)
    assert f"after key {after}" in err
    assert summ["checked"] == n - (int(after.split("/")[1]) + 1), (after, summ)
    assert summ["pushed"] == n - done_before
    assert listing(d["a"], rbucket) == listing(d["b"], rbucket)
    assert s.redis.command("EXISTS", ckpt) in (0, b"0"), "checkpoint left after a full pass"
    # a full pass from the start now finds nothing
    rc, rep, summ, _ = resync(d, "a", "b", rbucket, check=0)
    assert summ["checked"] == n and rep == []


def test_join_site_with_unstamped_data(two_sites, rbucket):
    d = two_sites
    a = client(d["a"].proxy.url)
    sb = store_client(d["b"])
    a.put_object(Bucket=rbucket, Key="from-a", Body=b"a's data")
    # b joins with data written straight into its store: no stamps anywhere
    sb.put_object(Bucket=rbucket, Key="own/1", Body=b"b one", ContentType="text/x-b",
                  Metadata={"owner": "b"})
    sb.put_object(Bucket=rbucket, Key="own/2", Body=b"b two")
    before = (state(d["a"], rbucket), state(d["b"], rbucket))

    # without --join, unstamped objects are named and the run does not claim convergence
    rc, rep, summ, _ = resync(d, "b", "a", rbucket, "--dry-run", check=1)
    assert {r["key"]: r["result"] for r in rep} == {"from-a": "dry-run", "own/1": "unstamped",
                                                     "own/2": "unstamped"}
    rc, rep, summ, _ = resync(d, "b", "a", rbucket, "--join", "--dry-run", check=1)
    assert {r["key"]: r["action"] for r in rep} == {"from-a": "pull", "own/1": "stamp+push",
                                                     "own/2": "stamp+push"}
    assert (state(d["a"], rbucket), state(d["b"], rbucket)) == before

    rc, rep, summ, _ = resync(d, "b", "a", rbucket, "--join", check=0)
    assert summ == {"checked": 3, "pushed": 2, "pulled": 1, "deleted": 0, "errors": 0}, rep
    sa, sbb = state(d["a"], rbucket), state(d["b"], rbucket)
    assert sa == sbb and set(sa) == {"from-a", "own/1", "own/2"}
    assert sa["own/1"][1].endswith(".b"), "the stamp is minted at the object's own site"
    h = store_client(d["a"]).head_object(Bucket=rbucket, Key="own/1")
    assert h["ContentType"] == "text/x-b" and h["Metadata"]["owner"] == "b"
    rc, rep, summ, _ = resync(d, "a", "b", rbucket, check=0)
    assert rep == []


def test_both_sites_at_once(two_sites, rbucket):
    """Every repair is a replica write carrying the winner's own stamp: two runs racing on
    a key write the same winner, or the second is told 'stale'."""
    d = two_sites
    a, b = client(d["a"].proxy.url), client(d["b"].proxy.url)
    for i in range(20):
        a.put_object(Bucket=rbucket, Key=f"both/{i:02d}", Body=b"a %d" % i)
    for i in range(10, 30):
        b.put_object(Bucket=rbucket, Key=f"both/{i:02d}", Body=b"b %d" % i)  # newer on 10..19
    b.delete_object(Bucket=rbucket, Key="both/00")

    def argv(site, peer):
        s = d[site]
        return [str(bed.build_dir() / "s3tee"), "resync", "-c", str(s.replicator.conf_path),
                "--bucket", rbucket, "--peer", peer, "--proxy", s.proxy.url]
    procs = [subprocess.Popen(argv(x, y), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for x, y in (("a", "b"), ("b", "a"))]
    outs = [p.communicate(timeout=60) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, (out, err)
    sa, sb = state(d["a"], rbucket), state(d["b"], rbucket)
    assert sa == sb and len(sa) == 29 and "both/00" not in sa
    assert get_bytes(store_client(d["a"]), rbucket, "both/15") == b"b 15"
    for site, peer in (("a", "b"), ("b", "a")):
        rc, rep, summ, _ = resync(d, site, peer, rbucket, check=0)
        assert rep == [] and summ["checked"] == 29


def test_failures_are_named_and_fail_the_run(two_sites, rbucket):
    d = two_sites
    client(d["b"].proxy.url).put_object(Bucket=rbucket, Key="only at b", Body=b"b")
    # a pull without this site's proxy cannot be applied: named, counted, exit 1
    rc, rep, summ, _ = resync(d, "a", "b", rbucket, check=1, proxy=False)
    assert [(r["key"], r["action"], r["result"]) for r in rep] == [("only at b", "pull",
                                                                    "failed")]
    assert "--proxy" in rep[0]["reason"] and summ["errors"] == 1
    assert missing(store_client(d["a"]), rbucket, "only at b")
    # an unreachable peer: the listing fails, the message names bucket and peer, exit 1
    r = d["a"].replicator
    port = bed.free_port()  # reserved, nothing listens
    # the peer's port, whatever its address (loopback, or a's relay in netns mode)
    text = re.sub(r"^(peer b https?://[0-9.]+:)\d+", rf"\g<1>{port}",
                  r.conf_path.read_text(), flags=re.M)
    assert str(port) in text
    conf = r.dir / "unreachable.conf"
    conf.write_text(text)
    rc, rep, summ, err = resync(d, "a", "b", rbucket, check=1, conf=conf)
    assert rep == [] and summ["errors"] == 1
    assert f"listing bucket={rbucket} at peer (b) failed" in err, err
    bed.release_port(port)
    # a peer that is not configured: refused before anything is read
    rc, rep, summ, err = resync(d, "a", "nowhere", rbucket, check=1)
    assert "peer 'nowhere' is not in" in err


def test_replicator_resyncs_a_peer_marked_for_rebuild_and_on_schedule(two_sites, rbucket):
    d = two_sites
    a, b = client(d["a"].proxy.url), client(d["b"].proxy.url)
    for i in range(5):
        a.put_object(Bucket=rbucket, Key=f"rb/{i}", Body=b"rebuild %d" % i)
    # the queue for b is gone (trimmed past a cap, say): only resync can bring b back
    d["a"].redis.command("DEL", "s3tee:log")
    d["a"].redis.command("SET", "s3tee:rebuild:b", "1")
    r = d["a"].replicator
    r.directives.update({"resync_bucket": rbucket, "resync_proxy": d["a"].proxy.url,
                         "resync_interval": "2s",
                         "resync_command": str(bed.build_dir() / "s3tee")})
    r.start()
    try:
        add_site_keys(d, d["a"])  # start() wrote the credentials again
        deadline = time.time() + 20
        while time.time() < deadline and d["a"].redis.command("EXISTS", "s3tee:rebuild:b") \
                not in (0, b"0"):
            time.sleep(0.1)
        assert d["a"].redis.command("EXISTS", "s3tee:rebuild:b") in (0, b"0"), \
            Path(r.stderr_path).read_text()[-3000:]
        assert listing(d["b"], rbucket) == listing(d["a"], rbucket)
        assert len(listing(d["b"], rbucket)) == 5
        log = Path(r.error_log).read_text()
        assert "started rebuild resync with peer b for bucket=" + rbucket in log
        # on schedule: a write at b (whose replicator is not running) is pulled to a
        b.put_object(Bucket=rbucket, Key="rb/from-b", Body=b"scheduled")
        deadline = time.time() + 20
        while time.time() < deadline and "rb/from-b" not in listing(d["a"], rbucket):
            time.sleep(0.2)
        assert get_bytes(store_client(d["a"]), rbucket, "rb/from-b") == b"scheduled"
        assert "started scheduled resync with peer b" in Path(r.error_log).read_text()
    finally:
        r.stop()
