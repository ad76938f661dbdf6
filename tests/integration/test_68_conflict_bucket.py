"""Where the loser of a conflict is kept (notes/replication.md, "Where losers are kept").

Two real sites (RGW, Redis, s3tee-proxy, s3tee-replicator each; a network namespace each
where the bed can make them, else loopback), both proxies
with `conflict_bucket conflicts`. A conflict is made by stopping the loser's replicator:
the loser's site writes a key first, the other site writes it a moment later (a higher
stamp, a vector that does not know the first write), and that write reaches the loser's
site while the loser is still the current value there. The loser's site keeps the loser's
bytes before it applies the winner: a copy in its conflict bucket, or a non-current
version in a versioned bucket. A conflict bucket that is missing makes the replica write
wait (503, retried by the peer's replicator) until it exists.
"""
import hashlib
import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bed"))
import sites as sitesmod  # noqa: E402
from lib import logscan  # noqa: E402
from test_60_replication import client, store_client, wait_for  # noqa: E402

CB = "conflicts"


@pytest.fixture(scope="module")
def two_sites():
    # a store that stops answering fails the keep after the first-byte timeout (5 s here)
    d = sitesmod.Deployment(["a", "b"], proxy_directives={"conflict_bucket": CB,
                                                          "upstream_first_byte_timeout": "5s"},
                            tls=False).start()
    yield d
    d.stop()


def make_bucket(d, name, versioned=False):
    for s in d.sites.values():
        c = store_client(s)
        c.create_bucket(Bucket=name)
        if versioned:
            c.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    return name


def text(v):
    return v.decode("latin-1") if isinstance(v, bytes) else str(v)


def conflicts(site, bucket, key):
    out = []
    for _id, flat in site.redis.command("XRANGE", "s3tee:conflicts", "-", "+"):
        f = {text(flat[i]): text(flat[i + 1]) for i in range(0, len(flat), 2)}
        if f["bucket"] == bucket and f["key"] == key:
            out.append(f)
    return out


def sha(b):
    return hashlib.sha256(b).hexdigest()


def body_at(site, bucket, key, **kw):
    return store_client(site).get_object(Bucket=bucket, Key=key, **kw)["Body"].read()


def put(site, bucket, key, body):
    """A client PUT at SITE's proxy; returns the stamp the proxy gave it."""
    r = client(site.proxy.url).put_object(Bucket=bucket, Key=key, Body=body)
    return r["ResponseMetadata"]["HTTPHeaders"]["x-s3tee-stamp"]


def conflict(d, loser, winner, bucket, key, loser_body, winner_body, between=None):
    """LOSER's site writes KEY, then WINNER's a moment later, with LOSER's replicator
    stopped so that the winner's write meets the loser's at LOSER. BETWEEN() runs in
    between. Returns both stamps; LOSER's replicator is left stopped."""
    d[loser].replicator.stop()
    ls = put(d[loser], bucket, key, loser_body)
    if between is not None:
        between()
    time.sleep(0.02)                        # the winner's stamp is higher
    ws = put(d[winner], bucket, key, winner_body)
    assert ws > ls
    return ls, ws


def test_loser_copied_to_the_conflict_bucket(two_sites):
    d = two_sites
    a, b = d["a"], d["b"]
    bucket = make_bucket(d, "plain68")
    store_client(a).create_bucket(Bucket=CB)
    key = "dir/hot key+1"
    loser, winner = b"from a, loses " * 5000, b"from b, wins " * 3000
    ls, ws = conflict(d, "a", "b", bucket, key, loser, winner)
    wait_for(lambda: body_at(a, bucket, key) == winner, what="winner applied at a")
    a.replicator.start()                    # a's write reaches b, where it is stale
    assert d.wait_drained(30)
    assert sha(body_at(b, bucket, key)) == sha(winner)
    # the loser's exact bytes at <conflict_bucket>/<bucket>/<key>/<stamp>, at its own site
    kept = f"{bucket}/{key}/{ls}"
    assert sha(body_at(a, CB, kept)) == sha(loser)
    # the conflict log names that place, once, at the loser's site only
    recs = conflicts(a, bucket, key)
    assert len(recs) == 1 and conflicts(b, bucket, key) == []
    rec = recs[0]
    assert (rec["loser"], rec["winner"]) == (ls, ws)
    assert rec["kept_at"] == f"s3://{CB}/{kept}"
    assert int(rec["loser_size"]) == len(loser)
    # and the operator's tool prints it
    out = logscan.run_tool("conflicts", "--redis", f"{a.redis.host}:{a.redis.port}",
                           "--bucket", bucket)
    assert out.returncode == 0, out.stderr
    lines = [json.loads(x) for x in out.stdout.splitlines()]
    assert [x["kept_at"] for x in lines if x["key"] == key] == [f"s3://{CB}/{kept}"]


def test_versioned_bucket_keeps_the_loser_as_a_noncurrent_version(two_sites):
    d = two_sites
    a, b = d["a"], d["b"]
    bucket = make_bucket(d, "versioned68", versioned=True)
    key = "v"
    loser, winner = b"a-version " * 700, b"b-version " * 900
    ls, ws = conflict(d, "a", "b", bucket, key, loser, winner)
    wait_for(lambda: body_at(a, bucket, key) == winner, what="winner applied at a")
    a.replicator.start()
    assert d.wait_drained(30)
    vs = store_client(a).list_object_versions(Bucket=bucket, Prefix=key)["Versions"]
    assert len(vs) == 2, vs
    old = [v for v in vs if not v["IsLatest"]][0]
    assert sha(body_at(a, bucket, key, VersionId=old["VersionId"])) == sha(loser)
    [rec] = conflicts(a, bucket, key)
    assert rec["kept_at"] == f"version:{old['VersionId']}"
    # no copy was made: the store keeps it already
    listed = store_client(a).list_objects_v2(Bucket=CB, Prefix=f"{bucket}/")
    assert listed.get("KeyCount", 0) == 0


def test_deleted_loser_has_nothing_to_keep(two_sites):
    d = two_sites
    a, b = d["a"], d["b"]
    bucket = make_bucket(d, "tomb68")
    key = "gone"
    a.replicator.stop()
    put(a, bucket, key, b"short-lived")
    client(a.proxy.url).delete_object(Bucket=bucket, Key=key)
    time.sleep(0.02)
    ws = put(b, bucket, key, b"newer at b")
    wait_for(lambda: body_at(a, bucket, key) == b"newer at b", what="winner applied at a")
    a.replicator.start()
    assert d.wait_drained(30)
    [rec] = conflicts(a, bucket, key)
    assert rec["winner"] == ws and rec["kept_at"] == "" and rec["loser_size"] == "0"
    listed = store_client(a).list_objects_v2(Bucket=CB, Prefix=f"{bucket}/")
    assert listed.get("KeyCount", 0) == 0


def test_missing_conflict_bucket_makes_the_replica_write_wait(two_sites):
    """b loses, and b's store has no conflict bucket yet: a's write waits in a's queue
    (503, retried), b keeps serving its own value, and once the bucket exists the copy is
    made and the write goes through."""
    d = two_sites
    a, b = d["a"], d["b"]
    bucket = make_bucket(d, "wait68")
    key = "k"
    loser, winner = b"b's value " * 400, b"a's value " * 500
    ls, ws = conflict(d, "b", "a", bucket, key, loser, winner)
    marker = f"could not keep the loser in conflict bucket {CB}"

    def refused():
        log = Path(b.proxy.error_log).read_text(errors="replace")
        return [ln for ln in log.splitlines() if marker in ln and f"key={key}" in ln]

    lines = wait_for(refused, what="the keep failure in b's log")
    assert f"bucket={bucket}" in lines[0] and "from site a" in lines[0] and ls in lines[0]
    time.sleep(1.0)                         # a few retries
    assert body_at(b, bucket, key) == loser, "the winner was applied without keeping the loser"
    assert d.backlog("a") >= 1, "a's entry was dropped instead of retried"
    refusals = [e for e in logscan.access_entries(b.proxy)
                if e["key"] == key and e["method"] == "PUT" and e["status"] == 503]
    assert refusals
    store_client(b).create_bucket(Bucket=CB)
    wait_for(lambda: body_at(b, bucket, key) == winner, what="winner applied at b")
    assert sha(body_at(b, CB, f"{bucket}/{key}/{ls}")) == sha(loser)
    b.replicator.start()
    assert d.wait_drained(30)
    assert sha(body_at(a, bucket, key)) == sha(winner)
    [rec] = conflicts(b, bucket, key)
    assert rec["kept_at"] == f"s3://{CB}/{bucket}/{key}/{ls}"


def test_multipart_loser_and_delete_winner(two_sites):
    """A loser written as a multipart upload (its ETag from CompleteMultipartUpload's XML)
    is copied too; and a concurrent DELETE at the other site that wins does not take the
    loser's bytes with it."""
    d = two_sites
    a, b = d["a"], d["b"]
    bucket = make_bucket(d, "mpdel68")
    store_client(a).create_bucket(Bucket=CB)       # exists already after the first test
    parts = [os.urandom(5 * 1024 * 1024), os.urandom(1000)]
    a.replicator.stop()
    ca = client(a.proxy.url)
    up = ca.create_multipart_upload(Bucket=bucket, Key="mp")
    etags = [ca.upload_part(Bucket=bucket, Key="mp", UploadId=up["UploadId"], PartNumber=n,
                            Body=p)["ETag"] for n, p in enumerate(parts, 1)]
    ca.complete_multipart_upload(
        Bucket=bucket, Key="mp", UploadId=up["UploadId"],
        MultipartUpload={"Parts": [{"PartNumber": n, "ETag": e} for n, e in enumerate(etags, 1)]})
    assert store_client(a).head_object(Bucket=bucket, Key="mp")["ETag"].endswith('-2"')
    ls = store_client(a).head_object(Bucket=bucket, Key="mp")["Metadata"]["s3tee-stamp"]
    time.sleep(0.02)
    client(b.proxy.url).delete_object(Bucket=bucket, Key="mp")     # b never saw a's upload
    wait_for(lambda: store_client(a).list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0,
             what="b's delete applied at a")
    a.replicator.start()
    assert d.wait_drained(30)
    kept = f"{bucket}/mp/{ls}"
    assert sha(body_at(a, CB, kept)) == sha(b"".join(parts))
    [rec] = conflicts(a, bucket, "mp")
    assert rec["kept_at"] == f"s3://{CB}/{kept}"


@pytest.mark.parametrize("case", ["key_too_long", "gone_from_store", "replaced_at_store"])
def test_loser_that_cannot_be_kept_is_logged_and_the_write_goes_ahead(two_sites, case):
    """Waiting would not help here: the write goes ahead, an ERROR names what was not kept,
    and the conflict record says it is kept nowhere."""
    d = two_sites
    a, b = d["a"], d["b"]
    bucket = make_bucket(d, f"nk68-{case.replace('_', '-')}")
    store_client(a).create_bucket(Bucket=CB)       # exists already after the first test
    key = "k" * 1000 if case == "key_too_long" else "k"
    sa = store_client(a)
    between = {
        "key_too_long": None,
        "gone_from_store": lambda: sa.delete_object(Bucket=bucket, Key=key),
        "replaced_at_store": lambda: sa.put_object(Bucket=bucket, Key=key, Body=b"around s3tee"),
    }[case]
    reason = {
        "key_too_long": "would be 10",
        "gone_from_store": "the store does not hold the loser (404)",
        "replaced_at_store": "the store holds ETag",
    }[case]
    ls, ws = conflict(d, "a", "b", bucket, key, b"loser", b"winner", between)
    wait_for(lambda: body_at(a, bucket, key) == b"winner", what="winner applied at a")
    a.replicator.start()
    assert d.wait_drained(30)
    [rec] = conflicts(a, bucket, key)
    assert rec["kept_at"] == "" and rec["loser"] == ls
    log = Path(a.proxy.error_log).read_text(errors="replace")
    lines = [ln for ln in log.splitlines() if "NOT kept" in ln and f"bucket={bucket} " in ln]
    assert len(lines) == 1 and " ERROR " in lines[0] and reason in lines[0], lines
    listed = store_client(a).list_objects_v2(Bucket=CB, Prefix=f"{bucket}/")
    assert listed.get("KeyCount", 0) == 0


def test_store_that_does_not_answer_makes_the_replica_write_wait(two_sites):
    """The loser's store hangs (SIGSTOP) while the winner arrives: the keep gives up after
    the first-byte timeout, the write waits (503, retried), and goes through, kept, once
    the store answers again."""
    d = two_sites
    a, b = d["a"], d["b"]
    bucket = make_bucket(d, "hang68")
    store_client(a).create_bucket(Bucket=CB)       # exists already after the first test
    key = "k"
    pid = int((Path(a.store.dir) / "run" / "client.rgw.a.pid").read_text())
    marker = "did not answer the HEAD in time"

    def stop_store():
        os.kill(pid, signal.SIGSTOP)

    try:
        ls, ws = conflict(d, "a", "b", bucket, key, b"loser at a", b"winner at b", stop_store)
        wait_for(lambda: any(marker in ln and f"bucket={bucket} " in ln for ln in
                             Path(a.proxy.error_log).read_text(errors="replace").splitlines()),
                 timeout=30, what="the keep's timeout in a's log")
    finally:
        os.kill(pid, signal.SIGCONT)
    wait_for(lambda: body_at(a, bucket, key) == b"winner at b", what="winner applied at a")
    assert body_at(a, CB, f"{bucket}/{key}/{ls}") == b"loser at a"
    a.replicator.start()
    assert d.wait_drained(30)
    [rec] = conflicts(a, bucket, key)
    assert rec["kept_at"] == f"s3://{CB}/{bucket}/{key}/{ls}"


def test_replicator_that_gives_up_during_the_keep(two_sites):
    """The winner's replicator stops waiting (its transfer_timeout, 2 s here) while the
    loser's store hangs: the proxy drops the keep with the request (access log 499), and
    the retry after the store is back keeps the loser and applies the winner."""
    d = two_sites
    a, b = d["a"], d["b"]
    bucket = make_bucket(d, "gone68")
    store_client(a).create_bucket(Bucket=CB)       # exists already after the first test
    key = "k"
    pid = int((Path(a.store.dir) / "run" / "client.rgw.a.pid").read_text())
    b.replicator.directives["transfer_timeout"] = "2s"
    b.replicator.restart(kill=False)
    try:
        try:
            ls, ws = conflict(d, "a", "b", bucket, key, b"loser", b"winner",
                              lambda: os.kill(pid, signal.SIGSTOP))
            wait_for(lambda: [e for e in logscan.access_entries(a.proxy)
                              if e["bucket"] == bucket and e["method"] == "PUT"
                              and e["status"] == 499], timeout=30, what="the replica write given up")
        finally:
            os.kill(pid, signal.SIGCONT)
        wait_for(lambda: body_at(a, bucket, key) == b"winner", what="winner applied at a")
        assert body_at(a, CB, f"{bucket}/{key}/{ls}") == b"loser"
        a.replicator.start()
        assert d.wait_drained(30)
        [rec] = conflicts(a, bucket, key)
        assert rec["kept_at"] == f"s3://{CB}/{bucket}/{key}/{ls}"
    finally:
        del b.replicator.directives["transfer_timeout"]
        b.replicator.restart(kill=False)
