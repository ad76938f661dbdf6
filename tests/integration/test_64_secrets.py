"""Secrets between and inside sites: credentials files others can read are refused, replica
writes travel over TLS with the peer's certificate verified (plain http only by opt-in),
a site key rotates while replication keeps flowing, and no log, metrics file or tool
output of the suite holds a secret or a signature.

Real parts: RGW stores, Redis, s3tee-proxy, s3tee-replicator and the s3tee tool, in a
network namespace per site where the bed can make them, else on loopback; the bed's CA
signs the proxies' certificate (IP SAN 127.0.0.1, and the namespaces' addresses).
"""
import datetime
import hashlib
import hmac
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bed"))
import bed  # noqa: E402
import sites as sitesmod  # noqa: E402
from lib import logscan  # noqa: E402
from test_60_replication import client, get_bytes, missing, store_client, wait_for  # noqa: E402


@pytest.fixture(scope="module")
def two_sites():
    d = sitesmod.Deployment(["a", "b"]).start()
    yield d
    d.stop()


def make_bucket(d, hint):
    name = f"{hint}{os.getpid() % 10000}"
    for s in d.sites.values():
        store_client(s).create_bucket(Bucket=name)
    return name


def replicator_check(tmp_path, conf_lines, creds_mode=0o600):
    """Runs `s3tee-replicator -t` on a config of CONF_LINES (+ the required ones) in TMP_PATH
    with a credentials file of mode CREDS_MODE; returns (exit status, stdout + stderr)."""
    creds = tmp_path / "creds"
    creds.write_text("store AKSTORE secretstore\npeer b AKTOB secrettob\n")
    os.chmod(creds, creds_mode)
    conf = tmp_path / "replicator.conf"
    conf.write_text("\n".join(["site_id a", "redis 127.0.0.1:1", "upstream http://127.0.0.1:1",
                               f"credentials_file {creds}"] + conf_lines) + "\n")
    r = subprocess.run([str(bed.build_dir() / "s3tee-replicator"), "-t", "-c", str(conf)],
                       capture_output=True, text=True, timeout=30)
    return r.returncode, r.stdout + r.stderr, conf, creds


# ---------------------------------------------------------------------------------------
# credentials files

@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660])
def test_credentials_readable_by_others_are_refused(tmp_path, mode):
    rc, out, _, creds = replicator_check(tmp_path, ["peer b https://127.0.0.1:2"], mode)
    assert rc == 1
    assert (f"s3tee-replicator: {creds}: permissions {mode:04o} are too open; "
            f"run chmod 600 {creds}") in out, out
    assert "secret" not in out

    p = bed.Proxy("http://127.0.0.1:1", tls=False, directory=tmp_path / "proxy")
    try:
        p.write_files()
        os.chmod(p.creds_path, mode)
        r = subprocess.run([str(p.binary), "-t", "-c", str(p.conf_path)], env=p.env(),
                           capture_output=True, text=True, timeout=30)
    finally:
        p.close(check=False)
    assert r.returncode == 1
    assert (f"{p.creds_path}: permissions {mode:04o} are too open; run chmod 600 "
            f"{p.creds_path}") in r.stdout + r.stderr, r.stdout + r.stderr
    assert "secret" not in r.stdout + r.stderr


def test_owner_only_credentials_are_accepted(tmp_path):
    rc, out, _, _ = replicator_check(tmp_path, ["peer b https://127.0.0.1:2"], 0o600)
    assert rc == 0, out
    rc, out, _, _ = replicator_check(tmp_path, ["peer b https://127.0.0.1:2"], 0o400)
    assert rc == 0, out


# ---------------------------------------------------------------------------------------
# key material and core dumps

def derived_key(secret, region="us-east-1"):
    """Today's SigV4 signing key for SECRET, as the proxy and replicator cache it."""
    def mac(k, m):
        return hmac.new(k, m.encode(), hashlib.sha256).digest()
    date8 = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d")
    return mac(mac(mac(mac(("AWS4" + secret).encode(), date8), region), "s3"), "aws4_request")


def core_of(pid, directory):
    """A core file of live process PID (gdb's gcore, which leaves out MADV_DONTDUMP pages as
    the kernel does), read and deleted."""
    out = Path(directory) / "core"
    r = subprocess.run(["gcore", "-o", str(out), str(pid)], capture_output=True, text=True,
                       timeout=120)
    path = Path(f"{out}.{pid}")
    assert r.returncode == 0 and path.exists(), r.stdout + r.stderr
    try:
        return path.read_bytes()
    finally:
        path.unlink()


@pytest.mark.skipif(shutil.which("gcore") is None, reason="gdb's gcore is not installed")
@pytest.mark.skipif(bed.asan_build(), reason="an ASan process maps terabytes of shadow memory: "
                    "its core file does not fit in memory (the plain pass checks the cores)")
def test_core_dumps_hold_no_key_material(two_sites, tmp_path):
    """Secrets and the signing keys derived from them stay out of the proxy's and the
    replicator's core files; the access key ids (heap) are there, so the search works."""
    d = two_sites
    a, b = d["a"], d["b"]
    bucket = make_bucket(d, "core")
    client(a.proxy.url).put_object(Bucket=bucket, Key="k", Body=b"signed and replicated")
    wait_for(lambda: get_bytes(store_client(b), bucket, "k") == b"signed and replicated",
             what="replica")
    peer_ak, peer_sk = a.replicator.peer_keys["b"]
    checks = [
        (a.proxy.pid, a.proxy.access_key, [a.proxy.secret, a.store.secret]),
        (b.proxy.pid, peer_ak, [peer_sk, b.store.secret]),   # b verified a's replica write
        (a.replicator.proc.pid, peer_ak, [peer_sk, a.store.secret]),
    ]
    for pid, ak, secrets in checks:
        core = core_of(pid, tmp_path)
        assert ak.encode() in core, f"pid {pid}: the core lacks even the access key id"
        for sk in secrets:
            assert sk.encode() not in core, f"pid {pid}: a secret is in its core file"
            assert derived_key(sk) not in core, f"pid {pid}: a signing key is in its core"


# ---------------------------------------------------------------------------------------
# TLS between sites

def test_plain_http_peer_needs_explicit_opt_in(tmp_path):
    rc, out, conf, _ = replicator_check(tmp_path, ["peer b http://127.0.0.1:2"])
    assert rc == 1
    assert (f"{conf}:5: peer: 'b' has a plain http:// URL (http://127.0.0.1:2): replica "
            "writes would cross the network unencrypted; use https:// or, on a trusted "
            "network only, set 'peer_plain_http yes'") in out, out
    rc, out, _, _ = replicator_check(tmp_path, ["peer b http://127.0.0.1:2",
                                                "peer_plain_http yes"])
    assert rc == 0, out
    rc, out, conf, _ = replicator_check(tmp_path, ["peer b https://127.0.0.1:2 missing-ca.pem"])
    assert rc == 1 and f"{conf}:5: peer: cannot read '{tmp_path}/missing-ca.pem'" in out, out


def test_replica_writes_go_over_verified_tls(two_sites, tmp_path):
    d = two_sites
    a, b = d["a"], d["b"]
    conf = a.replicator.config_text()
    relay = d.wan[("a", "b")] if d.wan else None      # netns mode: b is reached by relay
    want = f"{relay.host}:{relay.port}" if relay else f"127.0.0.1:{b.proxy.tls_port}"
    assert f"peer b https://{want}\n" in conf
    assert f"peer_ca_file {d.tls_files.ca}\n" in conf and "peer_plain_http" not in conf
    bucket = make_bucket(d, "tls")
    client(a.proxy.url).put_object(Bucket=bucket, Key="one", Body=b"over tls")
    wait_for(lambda: get_bytes(store_client(b), bucket, "one") == b"over tls", what="replica")

    # a replicator that trusts another CA refuses b's certificate: nothing reaches b
    other = bed.tls_files(names=("127.0.0.1",), directory=tmp_path / "other-ca")
    a.replicator.stop()
    log_start = a.replicator.error_log.stat().st_size
    a.replicator.directives["peer_ca_file"] = other.ca
    a.replicator.start()
    try:
        client(a.proxy.url).put_object(Bucket=bucket, Key="two", Body=b"held back")
        # common/upstream_tls.c names the peer and OpenSSL's verdict
        logscan.wait_log(a.replicator.error_log, "the certificate was refused: self-signed "
                         "certificate in certificate chain", timeout=15, start=log_start)
        assert missing(store_client(b), bucket, "two")
    finally:
        a.replicator.stop()
        a.replicator.directives["peer_ca_file"] = d.tls_files.ca
        a.replicator.start()
    # the right CA again: the held entry goes through
    wait_for(lambda: get_bytes(store_client(b), bucket, "two") == b"held back",
             what="held entry after the CA is fixed")
    assert d.wait_drained(30)
    assert int(a.redis.command("XLEN", "s3tee:dead")) == 0


# ---------------------------------------------------------------------------------------
# site key rotation (README: "Rotating a site key")

def test_site_key_rotates_while_replication_flows(two_sites):
    """a signs its replica writes at b with a site key; a new key takes over with no write
    refused, none dead-lettered and none lost: b accepts both (SIGHUP), a switches
    (SIGHUP), b drops the old one (SIGHUP)."""
    d = two_sites
    a, b = d["a"], d["b"]
    bucket = make_bucket(d, "rot")
    old_ak, old_sk = a.replicator.peer_keys["b"]
    new_ak, new_sk = "AKSITEATOBNEW", "secret-a-to-b-rotated"
    old_line = f"site a {old_ak} {old_sk}"
    assert old_line in b.proxy.extra_creds
    written, stop = [], threading.Event()

    def writer():
        c = client(a.proxy.url)
        i = 0
        while not stop.is_set():
            c.put_object(Bucket=bucket, Key=f"k{i:04d}", Body=b"v%d" % i)
            written.append(i)
            i += 1
            time.sleep(0.02)

    def replicated():
        """Waits for three more writes at a and the last of them at b."""
        target = len(written) + 3
        wait_for(lambda: len(written) >= target, what="more writes")
        wait_for(lambda: not missing(store_client(b), bucket, f"k{target - 1:04d}"),
                 what=f"k{target - 1:04d} at b")

    t = threading.Thread(target=writer, daemon=True)
    t.start()
    try:
        replicated()
        # 1. b accepts the new key as well as the old one
        start = Path(b.proxy.error_log).stat().st_size
        b.proxy.extra_creds.append(f"site a {new_ak} {new_sk}")
        b.proxy.reload()
        logscan.wait_log(b.proxy.error_log, "configuration reloaded", start=start)
        replicated()
        # 2. a signs with the new key from now on
        start = Path(a.replicator.error_log).stat().st_size
        a.replicator.peer_keys["b"] = (new_ak, new_sk)
        a.replicator.write_files()
        a.replicator.proc.send_signal(signal.SIGHUP)
        logscan.wait_log(a.replicator.error_log, "credentials reloaded", start=start)
        logscan.wait_access(b.proxy, lambda e: e["access_key"] == new_ak and e["status"] == 200,
                            timeout=15)
        replicated()
        # 3. b forgets the old key
        start = Path(b.proxy.error_log).stat().st_size
        b.proxy.extra_creds.remove(old_line)
        b.proxy.reload()
        logscan.wait_log(b.proxy.error_log, "configuration reloaded", start=start)
        replicated()
    finally:
        stop.set()
        t.join(10)
    assert d.wait_drained(60)
    sb = store_client(b)
    for i in written:
        assert get_bytes(sb, bucket, f"k{i:04d}") == b"v%d" % i, f"k{i:04d} lost"
    assert int(a.redis.command("XLEN", "s3tee:dead")) == 0
    replica = [e for e in logscan.access_entries(b.proxy) if e["bucket"] == bucket]
    assert {e["access_key"] for e in replica} == {old_ak, new_ak}
    refused = [e for e in replica if e["status"] >= 400]
    assert refused == [], refused[:3]
    # the old key is refused now
    with pytest.raises(Exception) as e:
        client(b.proxy.url, old_ak, old_sk).head_object(Bucket=bucket, Key="k0000")
    assert "403" in str(e.value)


# ---------------------------------------------------------------------------------------
# the sweep: logs, metrics and tool output hold no secret and no signature

def test_leak_sweep_reads_replicators_and_tool_output(tmp_path):
    """find_leaks() would notice a secret in a replicator's metrics or log, or a signature
    in the tool's output (fake directories, so this cannot pass by finding nothing)."""
    rd, td = tmp_path / "replicator-fake", tmp_path / "tool-fake"
    rd.mkdir()
    td.mkdir()
    (rd / "credentials").write_text("store AKS storeSekrit9\npeer b AKTOB peerSekrit77\n")
    (rd / "error.log").write_text("fine\n")
    (rd / "metrics.json").write_text('{"peers": {}}\n')
    (td / "stdout.log").write_text('{"key": "k"}\n')
    assert logscan.find_leaks(dirs=[rd, td]) == []
    assert {p.name for p in logscan.swept_files([rd, td])} == {"error.log", "metrics.json",
                                                               "stdout.log"}
    (rd / "metrics.json").write_text('{"peer": "peerSekrit77"}\n')
    assert len(logscan.find_leaks(dirs=[rd, td])) == 1
    (rd / "metrics.json").write_text("{}\n")
    (rd / "stderr.log").write_text("store key storeSekrit9\n")
    assert len(logscan.find_leaks(dirs=[rd, td])) == 1
    (rd / "stderr.log").unlink()
    (td / "stdout.log").write_text("x-amz-signature=" + "0f" * 32 + "\n")
    assert len(logscan.find_leaks(dirs=[rd, td])) == 1


def test_zz_no_secret_in_logs_metrics_or_tool_output(two_sites):
    """Last: a dead letter and a conflict for the tool to print, then every log, metrics
    file and tool output of everything this session started is swept."""
    d = two_sites
    a, b = d["a"], d["b"]
    bucket = make_bucket(d, "sweep")
    # a conflict: the same key written at both sites while a's replicator is down
    a.replicator.stop()
    a.replicator.directives["max_attempts"] = "1"
    client(a.proxy.url).put_object(Bucket=bucket, Key="both", Body=b"from a")
    time.sleep(0.01)
    client(b.proxy.url).put_object(Bucket=bucket, Key="both", Body=b"from b")
    # a dead letter: a bucket only a has
    store_client(a).create_bucket(Bucket=bucket + "-only-a")
    client(a.proxy.url).put_object(Bucket=bucket + "-only-a", Key="orphan", Body=b"x")
    a.replicator.start()
    wait_for(lambda: int(a.redis.command("XLEN", "s3tee:dead")) >= 1, what="dead letter")
    wait_for(lambda: int(a.redis.command("XLEN", "s3tee:conflicts") or 0)
             + int(b.redis.command("XLEN", "s3tee:conflicts") or 0) >= 1, what="conflict")
    time.sleep(5.5)   # one more metrics snapshot (every 5 s)
    outputs = []
    for s in (a, b):
        for what in ("dead", "conflicts"):
            r = logscan.run_tool(what, "--redis", f"{s.redis.host}:{s.redis.port}")
            assert r.returncode == 0, r.stderr
            outputs.append(r.stdout)
    assert '"orphan"' in outputs[0] and any('"both"' in o for o in outputs[1::2]), outputs
    assert logscan.run_tool("dead", "--redis", "127.0.0.1:1").returncode != 0
    swept = {str(p) for p in logscan.swept_files()}
    for part in (a.replicator.error_log, a.replicator.metrics_path, b.proxy.access_log):
        assert str(part) in swept, part
    assert any("/tool-" in p for p in swept)
    leaks = logscan.find_leaks()
    assert leaks == [], leaks
