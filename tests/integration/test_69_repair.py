"""A store that fell behind its index is repaired from a site that holds the winner.

The one way a lower stamp becomes visible despite the per-key lease: a write W1 passes its
lease check, sends its last byte, and then the store stalls for longer than the lease. W2
takes the lease, commits (index and queue: stamp s2, replicated), and only then does W1
land in the store with s1 < s2. Here the stall is a frozen relay between a second proxy of
site a and a's store (lease_time 1s on that proxy). W1's commit finds its lease gone: the
client gets 503 (never a success for a write that did not win), and the key goes to
s3tee:repair. a's replicator notices the store's s1 under the index's s2, logs an ALARM,
and pulls s2 from b through a's proxy (a repair replica write): every site ends on W2.
"""

import hashlib
import os
import signal
import sys
import threading
import time
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bed"))
import bed  # noqa: E402
import sites as sitesmod  # noqa: E402
import wan  # noqa: E402
from test_60_replication import client, get_bytes, store_client, wait_for  # noqa: E402
from test_63_resync import add_site_keys  # noqa: E402


@pytest.fixture(scope="module")
def two_sites():
    d = sitesmod.Deployment(["a", "b"], start_replicators=False).start()
    try:
        for s in d.sites.values():
            s.replicator.directives["resync_proxy"] = s.proxy.url
            s.replicator.start()
            add_site_keys(d, s)    # start() wrote the credentials; pulls need the site keys
            s.replicator.proc.send_signal(signal.SIGHUP)
        for s in d.sites.values():
            wait_for(lambda: "credentials reloaded" in Path(s.replicator.error_log).read_text(),
                     timeout=10, what="replicator reload")
        yield d
    finally:
        d.stop()


def stamp_at_store(site, bucket, key):
    return store_client(site).head_object(Bucket=bucket, Key=key)["Metadata"].get("s3tee-stamp")


def test_store_behind_index_is_repaired_from_peer(two_sites):
    a, b = two_sites["a"], two_sites["b"]
    bucket = f"repair-{os.getpid() % 10000}"
    for s in (a, b):
        store_client(s).create_bucket(Bucket=bucket)
    key = "late/write"
    w1 = b"W1 older write that reaches the store last " * 1000      # ~44 KB: fits socket buffers
    w2 = b"W2 the newer write, acknowledged and replicated " * 900

    # a second proxy of site a whose store link can be frozen
    relay = wan.Relay(a.store.port, name="p1->store-a", target_host=a.store.host).start()
    p1 = bed.Proxy(relay.url, store_key=a.proxy.store_key, clients=a.proxy.clients, tls=False,
                   extra_creds=a.proxy.extra_creds,
                   directives={**a.proxy.directives, "lease_time": "1s",
                               "upstream_io_timeout": "120s"}).start()
    result = {}
    try:
        relay.partition()
        # one attempt: a retry would be a new, newer write (and rightly win)
        c1 = boto3.client("s3", endpoint_url=p1.url, region_name="us-east-1",
                          aws_access_key_id=p1.access_key, aws_secret_access_key=p1.secret,
                          config=Config(s3={"addressing_style": "path"}, read_timeout=120,
                                        retries={"total_max_attempts": 1}))

        def put_w1():
            try:
                c1.put_object(Bucket=bucket, Key=key, Body=w1)
                result["w1"] = "ok"
            except ClientError as e:
                result["w1"] = e.response["Error"]["Code"]
            except Exception as e:  # noqa: BLE001 - reported below
                result["w1"] = repr(e)

        t = threading.Thread(target=put_w1, daemon=True)
        t.start()
        time.sleep(3.0)                       # W1's bytes sit in the relay; its 1 s lease lapsed
        assert "w1" not in result, result
        client(a.proxy.url).put_object(Bucket=bucket, Key=key, Body=w2)
        s2 = stamp_at_store(a, bucket, key)
        wait_for(lambda: get_bytes(client(b.proxy.url), bucket, key) == w2, what="W2 at b")
        relay.heal()                          # W1 lands at a's store after W2
        t.join(60)
        assert result.get("w1") == "SlowDown", result   # never acknowledged
        log = a.replicator.error_log
        wait_for(lambda: "ALARM bucket=" + bucket in Path(log).read_text(), timeout=30,
                 what="the repair's ALARM at a")
        wait_for(lambda: stamp_at_store(a, bucket, key) == s2, timeout=30, what="a repaired")
        assert hashlib.sha256(store_client(a).get_object(Bucket=bucket, Key=key)["Body"].read()) \
            .hexdigest() == hashlib.sha256(w2).hexdigest()
        assert get_bytes(client(b.proxy.url), bucket, key) == w2
        assert stamp_at_store(b, bucket, key) == s2
        text = Path(log).read_text()
        assert "restored (read from site b)" in text, bed.tail(log, 30)
        wait_for(lambda: a.redis.command("ZCARD", "s3tee:repair") == 0, timeout=15,
                 what="repair set empty")
    finally:
        relay.heal()
        p1.stop()
        relay.stop()


def test_consistent_key_in_repair_set_is_forgotten(two_sites):
    """A key put in the set whose store already matches the index (a lease lost with no
    writer in between) is checked and dropped, with no ALARM."""
    a, b = two_sites["a"], two_sites["b"]
    bucket = f"repair-ok-{os.getpid() % 10000}"
    for s in (a, b):
        store_client(s).create_bucket(Bucket=bucket)
    client(a.proxy.url).put_object(Bucket=bucket, Key="fine", Body=b"fine")
    a.redis.command("ZADD", "s3tee:repair", "0", f"{bucket}/fine")
    wait_for(lambda: a.redis.command("ZCARD", "s3tee:repair") == 0, timeout=15,
             what="checked and dropped")
    text = Path(a.replicator.error_log).read_text()
    assert f"bucket={bucket} key=fine: consistent" in text
    assert f"ALARM bucket={bucket}" not in text
