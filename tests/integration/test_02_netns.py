"""The bed's network namespace mode (sites.Deployment(netns=True), root only): each site in
its own namespace, the sites linked only through the WAN relays in the root namespace.

What the tests built on it assume: a write replicates across the relay; a site cannot reach
another site except through its relay (so a partition of the relay is a real partition);
the processes of a site can be killed, restarted and given a clock offset as on loopback;
teardown and the sweep of a dead run leave no namespace or veth behind.

No s3tee code is new here: bed_slow, so the sanitizer pass of .ci/run does not run it again.
"""
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

pytestmark = [pytest.mark.bed_slow,
              pytest.mark.skipif(bed.netns_available() is not None,
                                 reason=f"netns mode: {bed.netns_available()}")]

BUCKET = "netns"

# Run inside a namespace: connect to HOST PORT, print "connected" or the errno's name.
PROBE = """
import errno, socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3).close()
    print("connected")
except socket.timeout:
    print("timeout")
except OSError as e:
    print(errno.errorcode.get(e.errno, str(e)))
"""


def probe(netns, host, port):
    r = netns.run([sys.executable, "-c", PROBE, host, str(port)], capture_output=True,
                  text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def client(url):
    return boto3.client("s3", endpoint_url=url, region_name="us-east-1",
                        aws_access_key_id="AKIDCLIENT", aws_secret_access_key="secretclient",
                        config=Config(s3={"addressing_style": "path"},
                                      retries={"max_attempts": 2}, connect_timeout=5,
                                      read_timeout=30))


def store_has(site, key):
    s3 = boto3.client("s3", endpoint_url=site.store.url, region_name="us-east-1",
                      aws_access_key_id=site.store.access_key,
                      aws_secret_access_key=site.store.secret,
                      config=Config(s3={"addressing_style": "path"}, connect_timeout=5))
    try:
        return s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    except s3.exceptions.NoSuchKey:
        return None


def wait_for(site, key, want, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if store_has(site, key) == want:
            return True
        time.sleep(0.2)
    return False


def namespaces():
    return set(subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                              check=True).stdout.split())


@pytest.mark.timeout(150)
def test_two_sites_in_namespaces():
    d = sitesmod.Deployment(["a", "b"], netns=True, clock_offset={"b": 1500})
    d.start()
    a, b = d["a"], d["b"]
    made = {a.netns.name, b.netns.name}
    veths = [a.netns.veth, b.netns.veth]
    try:
        assert made <= namespaces()
        assert all(n.startswith(f"s3tee-{bed.run_id()}-") for n in made)
        # every process of a site runs in its namespace
        own = Path(f"/proc/self/ns/net").resolve()
        for s in (a, b):
            inside = set(s.netns.pids())
            for pid in (s.proxy.pid, s.replicator.proc.pid, s.redis.pid,
                        *s.store.pids().values()):
                assert pid in inside, (s.id, pid)
                assert Path(f"/proc/{pid}/ns/net").resolve() != own
        env = Path(f"/proc/{b.proxy.pid}/environ").read_bytes().split(b"\0")
        assert b"S3TEE_CLOCK_OFFSET_MS=1500" in env

        # a sees b only through its relay: b's addresses are not routed from a's namespace
        relay = d.wan[("a", "b")]
        assert relay.host == a.netns.gateway and relay.target_host == b.netns.host
        assert probe(a.netns, a.netns.gateway, relay.port) == "connected"
        assert probe(a.netns, a.proxy.host, a.proxy.port) == "connected"
        for host in (b.netns.host, b.netns.gateway):
            assert probe(a.netns, host, b.proxy.tls_port) == "ENETUNREACH", host
        assert probe(a.netns, "127.0.0.1", b.proxy.port) == "ECONNREFUSED"  # a's own lo
        # nor b's relay towards a (it listens on b's side)
        assert probe(a.netns, d.wan[("b", "a")].host, d.wan[("b", "a")].port) == "ENETUNREACH"

        # bucket creation reaches b through the relay; a PUT at a replicates to b
        ca = client(a.proxy.url)
        ca.create_bucket(Bucket=BUCKET)
        ca.put_object(Bucket=BUCKET, Key="k1", Body=b"one")
        assert wait_for(b, "k1", b"one", 30), "k1 did not replicate a->b"
        assert relay.counters["bytes"] > 0

        # a partition of the relays stops replication, healing resumes it
        d.wan.partition("a")
        ca.put_object(Bucket=BUCKET, Key="k2", Body=b"two")
        assert not wait_for(b, "k2", b"two", 3), "k2 crossed a partitioned relay"
        d.wan.heal("a")
        assert wait_for(b, "k2", b"two", 30), "k2 did not replicate after the heal"

        # kill -9 and restarts work in the namespaces: b's gateway, a's Redis (AOF kept),
        # proxy and replicator; then writes flow both ways
        b.store.gateway_down()
        b.store.gateway_up()
        a.redis.restart()
        a.proxy.restart()
        a.replicator.restart()
        assert a.proxy.pid in a.netns.pids() and a.redis.pid in a.netns.pids()
        client(a.proxy.url).put_object(Bucket=BUCKET, Key="k3", Body=b"three")
        client(b.proxy.url).put_object(Bucket=BUCKET, Key="k4", Body=b"four")
        assert wait_for(b, "k3", b"three", 30), "k3 did not replicate after the restarts"
        assert wait_for(a, "k4", b"four", 30), "k4 did not replicate b->a"
    finally:
        d.stop()
    assert not made & namespaces()
    for v in veths:
        assert not Path(f"/sys/class/net/{v}").exists(), v


def test_sweep_removes_namespaces_of_dead_runs():
    """A namespace named for a run that is gone (no run directory, or its owner dead) is
    deleted with its veth and what runs inside; the live run's own stays."""
    mine = bed.Netns("z").start()
    dead = f"{bed.NETNS_PREFIX}999999999-deadrun0-x"
    sleeper = None
    try:
        subprocess.run(["ip", "netns", "add", dead], check=True)
        sleeper = subprocess.Popen(["nsenter", f"--net=/run/netns/{dead}", "--",
                                    "sleep", "300"])
        deadline = time.monotonic() + 10
        while str(sleeper.pid) not in subprocess.run(["ip", "netns", "pids", dead],
                                                     capture_output=True, text=True).stdout:
            assert time.monotonic() < deadline, "sleep never entered the namespace"
            time.sleep(0.02)
        bed.sweep_stale()
        assert dead not in namespaces()
        assert sleeper.wait(10) == -9
        assert mine.name in namespaces()
        assert probe(mine, mine.gateway, 9) == "ECONNREFUSED"    # veth still up
    finally:
        if sleeper is not None and sleeper.poll() is None:
            sleeper.kill()
            sleeper.wait()
        subprocess.run(["ip", "netns", "del", dead], stderr=subprocess.DEVNULL)
        name, veth = mine.name, mine.veth
        mine.stop()
    assert name not in namespaces()
    assert not Path(f"/sys/class/net/{veth}").exists()
