"""Tests of the test bed itself, straight against the RGW store (no proxy): every client
wrapper round-trips bytes, the store's known quirks are still there, Redis/moto/ports/
cleanup behave, and bed.Proxy works (against a stub). When a proxy test fails later, these
passing means the proxy is to blame, not the bed."""

import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest

import bed
from lib import clients, s3util
from lib.clients import Endpoint

# bed_slow: tests that exercise only the bed and the clients (no s3tee build); the
# sanitizer pass of .ci/run deselects them
slow = pytest.mark.bed_slow

HERE = Path(__file__).resolve().parent
STUB = HERE / "lib" / "stub_proxy.py"
MODERN = ("awscli-v1", "boto3-modern")   # botocore >= 1.36: aws-chunked trailers over https
TRANSFER = ("awscli-v1", "awscli-v2", "boto3-modern", "boto3-debian")  # multipart capable


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


# ---------------------------------------------------------------------------------------
# every client against RGW, http and https

@slow
@pytest.mark.parametrize("scheme", ["http", "https"])
@pytest.mark.parametrize("name", clients.CLIENT_NAMES)
def test_client_round_trip(store, make_client, bucket_name, tmp_path, name, scheme, request):
    ep = Endpoint.of(store, tls=scheme == "https")
    kw = {}
    if scheme == "https" and name in MODERN:
        # RGW Pacific refuses the STREAMING-UNSIGNED-PAYLOAD-TRAILER uploads these send over
        # https (see test_modern_sdk_https_upload_refused_by_rgw): ask for the old behaviour
        if name == "awscli-v1":
            kw["checksum"] = "when_required"
        else:
            kw["config"] = {"request_checksum_calculation": "when_required",
                            "response_checksum_validation": "when_required"}
    c = make_client(name, ep, **kw)
    request.node.user_properties.append(("client", c.describe()))

    data = bytes(range(256)) * 400 + b"end"
    src = tmp_path / "src.bin"
    src.write_bytes(data)
    key = "dir/hello world+1.bin"

    c.make_bucket(bucket_name).check()
    c.put_object(bucket_name, key, src).check()
    dst = tmp_path / "dst.bin"
    c.get_object(bucket_name, key, dst).check()
    assert dst.read_bytes() == data

    if name in TRANSFER and scheme == "http":   # the transfer manager: multipart above 8 MiB
        big = s3util.write_payload(tmp_path / "big.bin", 9 * 1024 * 1024 + 7, seed=1)
        c.upload_file(bucket_name, "big", big).check()
        c.download_file(bucket_name, "big", tmp_path / "big.out").check()
        assert (tmp_path / "big.out").read_bytes() == Path(big).read_bytes()
        c.delete_object(bucket_name, "big").check()

    listed = c.list_keys(bucket_name).check()
    assert listed.keys == [key]
    c.delete_object(bucket_name, key).check()
    assert c.list_keys(bucket_name).check().keys == []
    c.delete_bucket(bucket_name).check()
    s3 = clients.boto3_client(Endpoint.of(store))
    assert not s3util.bucket_exists(s3, bucket_name)


def test_modern_sdk_https_upload_refused_by_rgw(store, bucket):
    """The premise of the proxy's de-chunking: boto3 >= 1.36 sends
    STREAMING-UNSIGNED-PAYLOAD-TRAILER over https, which RGW Pacific refuses."""
    c = clients.Boto3(Endpoint.of(store, tls=True), python="modern")
    if c.substitute:
        pytest.skip("needs boto3 >= 1.36 (the pyenv python), absent here")
    r = c.call("put_object", Bucket=bucket, Key="k", Body=b"x" * 1000)
    assert r.rc == 1, r
    assert r.error["Code"] in ("MissingContentLength", "XAmzContentSHA256Mismatch"), r
    over_http = clients.Boto3(Endpoint.of(store), python="modern")
    over_http.call("put_object", Bucket=bucket, Key="k", Body=b"x" * 1000).check()


def test_driver_reports_its_interpreter(store):
    modern = clients.Boto3(Endpoint.of(store), python="modern").call("list_buckets").check()
    debian = clients.Boto3(Endpoint.of(store), python="debian").call("list_buckets").check()
    assert debian.meta["python"] == clients.DEBIAN_PYTHON
    assert debian.meta["boto3"].startswith("1.26")
    if clients.modern_python():
        assert modern.meta["python"] != clients.DEBIAN_PYTHON
        assert tuple(map(int, modern.meta["boto3"].split(".")[:2])) >= (1, 36)
    else:
        assert modern.meta["python"] == clients.DEBIAN_PYTHON
        assert any("boto3-modern" in f for f in clients.FALLBACKS)


def test_driver_exec_and_errors(store, bucket):
    c = clients.Boto3(Endpoint.of(store), python="modern")
    r = c.exec("s3.put_object(Bucket=%r, Key='a', Body=b'\\x00\\xff')\n"
               "result = s3.get_object(Bucket=%r, Key='a')['Body'].read()" % (bucket, bucket))
    assert r.check().value == b"\x00\xff"
    r = c.call("get_object", Bucket=bucket, Key="missing")
    assert r.rc == 1 and r.error["Code"] == "NoSuchKey" and r.error["Status"] == 404


def test_curl_needs_content_sha256_header(store, bucket):
    """curl 7.88 --aws-sigv4 does not send x-amz-content-sha256; RGW then refuses it."""
    c = clients.Curl(Endpoint.of(store))
    r = c.request("PUT", f"/{bucket}/k", data=b"hello")
    assert r.rc == 0 and r.status == 200, r
    r = c.request("PUT", f"/{bucket}/k2", data=b"hello", payload_hash="UNSIGNED-PAYLOAD")
    assert r.status == 200, r
    r = c.request("GET", f"/{bucket}/k", payload_hash=False)
    assert r.status == 403 and "SignatureDoesNotMatch" in r.stdout, r
    r = c.request("GET", f"/{bucket}/k")
    assert r.status == 200 and r.body == b"hello"
    assert r.headers["etag"] == '"%s"' % s3util.md5_hex(b"hello")
    r = c.request("GET", f"/{bucket}", query={"list-type": "2", "prefix": "k"})
    assert r.status == 200 and "<Key>k2</Key>" in r.stdout, r


def test_presigned_url_s3v4(store, bucket):
    s3 = clients.boto3_client(Endpoint.of(store))
    s3.put_object(Bucket=bucket, Key="p", Body=b"presigned")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "p"})
    assert "X-Amz-Signature=" in url
    path = url[len(store.url):]
    r = clients.Curl(Endpoint.of(store)).request("GET", path, sign=False)
    assert r.status == 200 and r.body == b"presigned", r


def test_wrong_secret_refused(store, bucket):
    ep = Endpoint.of(store).with_keys(store.access_key, "wrong")
    r = clients.make_client("boto3-debian", ep).list_keys(bucket)
    assert r.rc == 1 and "SignatureDoesNotMatch" in r.stderr


# ---------------------------------------------------------------------------------------
# stores

def test_rgw_store_basics(store, store_s3, bucket):
    assert store.start_seconds is not None and store.start_seconds < 120
    store_s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    v1 = store_s3.put_object(Bucket=bucket, Key="k", Body=b"1")["VersionId"]
    store_s3.put_object(Bucket=bucket, Key="k", Body=b"2")
    assert store_s3.get_object(Bucket=bucket, Key="k", VersionId=v1)["Body"].read() == b"1"
    r = store.admin("user", "info", "--uid=s3tee-test")
    assert r.returncode == 0 and store.access_key in r.stdout


def test_bucket_cleanup_handles_versions_markers_uploads(store_s3):
    name = s3util.unique_bucket_name("cleanup")
    store_s3.create_bucket(Bucket=name)
    store_s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    for i in range(3):
        store_s3.put_object(Bucket=name, Key="k", Body=b"%d" % i)
    store_s3.delete_object(Bucket=name, Key="k")     # a delete marker
    store_s3.create_multipart_upload(Bucket=name, Key="mp")
    assert s3util.delete_bucket(store_s3, name) is None
    assert not s3util.bucket_exists(store_s3, name)


@slow
def test_two_more_sites_side_by_side(store, tmp_path):
    """Several clusters at once, each with its own ports; they do not see each other."""
    sites = [bed.RgwSite(f"AKIDSITE{i}", f"secret{i}") for i in (1, 2)]
    try:
        bed.RgwSite.start_many(sites)
        s3a, s3b = (clients.boto3_client(Endpoint.of(s)) for s in sites)
        s3a.create_bucket(Bucket="only-in-a")
        assert [b["Name"] for b in s3a.list_buckets()["Buckets"]] == ["only-in-a"]
        assert s3b.list_buckets()["Buckets"] == []
        assert len({s.port for s in sites} | {s.mon_port for s in sites} | {store.port}) == 5
        assert sites[0].osd_window != sites[1].osd_window
        pids = [p for s in sites for p in s.pids().values()]
        assert len(pids) == 6
    finally:
        bed.RgwSite.stop_many(sites)
    time.sleep(0.2)
    assert not [p for p in pids if _alive(p)]


def test_moto(moto, tmp_path):
    s3 = clients.boto3_client(Endpoint.of(moto))
    s3.create_bucket(Bucket="motob")
    s3.put_object(Bucket="motob", Key="k", Body=b"moto")
    assert s3.get_object(Bucket="motob", Key="k")["Body"].read() == b"moto"


# ---------------------------------------------------------------------------------------
# redis

def test_redis_durability_settings_and_restart(redis):
    assert redis.command("CONFIG", "GET", "appendonly") == ["appendonly", "yes"]
    assert redis.command("CONFIG", "GET", "appendfsync") == ["appendfsync", "always"]
    assert redis.command("CONFIG", "GET", "maxmemory-policy") == ["maxmemory-policy", "noeviction"]
    redis.command("XADD", "repl", "*", "op", "put", "key", "k")
    pid = redis.pid
    redis.kill9()             # the AOF with fsync always keeps the acknowledged write
    assert not _alive(pid)
    redis.start()
    assert redis.command("XLEN", "repl") == 1


def test_children_die_with_a_killed_bed(tmp_path):
    """PDEATHSIG: a bed user killed with SIGKILL takes its Redis along."""
    code = ("import sys, time; sys.path.insert(0, %r); import bed\n"
            "r = bed.Redis().start(); print(r.pid, flush=True); time.sleep(60)"
            % str(bed.BED_DIR))
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        pid = int(p.stdout.readline())
        assert _alive(pid)
    finally:
        p.kill()
        p.wait()
    for _ in range(50):
        if not _alive(pid):
            break
        time.sleep(0.05)
    assert not _alive(pid)
    bed.sweep_stale()   # and its directory goes at the next sweep


# ---------------------------------------------------------------------------------------
# ports, TLS

def test_ports_do_not_collide():
    ports = [bed.free_port() for _ in range(20)]
    try:
        assert len(set(ports)) == 20
        lo, _hi = bed._ephemeral_range()
        w = bed.free_port_window(20)
        assert w + 20 <= lo or w > _hi
        bed.release_port_window(w)
    finally:
        for p in ports:
            bed.release_port(p)


def test_tls_files_verify(bed_tls):
    tls = bed_tls
    ctx = ssl.create_default_context(cafile=str(tls.ca))
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(tls.cert, tls.key)
    assert oct(os.stat(tls.key).st_mode & 0o777) == "0o600"
    # verified by the CA for 127.0.0.1 and a virtual-host name
    lsock = socket.create_server(("127.0.0.1", 0))
    port = lsock.getsockname()[1]
    import threading

    def serve():
        for _ in range(2):
            conn, _ = lsock.accept()
            try:
                server_ctx.wrap_socket(conn, server_side=True).close()
            except (ssl.SSLError, OSError):
                conn.close()

    t = threading.Thread(target=serve)
    t.start()
    for name in ("127.0.0.1", "bucket.s3.localhost"):
        with socket.create_connection(("127.0.0.1", port)) as s:
            ctx.wrap_socket(s, server_hostname=name).close()
    t.join()
    lsock.close()


# ---------------------------------------------------------------------------------------
# bed.Proxy, against a stub proxy

def test_proxy_class_with_stub(make_proxy, store, tmp_path):
    p = make_proxy(binary=STUB, client_header_timeout="2s",
                   virtual_host_domain=["s3.localhost", "s3.test"])
    conf = p.conf_path.read_text()
    assert f"listen 127.0.0.1:{p.port}\n" in conf
    assert f"upstream {store.url}\n" in conf
    assert "virtual_host_domain s3.localhost\nvirtual_host_domain s3.test\n" in conf
    assert oct(os.stat(p.creds_path).st_mode & 0o777) == "0o600"
    assert p.creds_path.read_text() == ("client AKIDCLIENT secretclient *\n"
                                        "store AKIDSTORE secretstore\n")
    r = clients.Curl(Endpoint.of(p)).request("GET", "/", sign=False)
    assert r.status == 200 and r.body == b"stub\n"
    r = clients.Curl(Endpoint.of(p, tls=True)).request("GET", "/", sign=False)
    assert r.status == 200 and r.body == b"stub\n", r
    assert p.rss_peak_kb() > 0
    p.reload()
    for _ in range(100):
        if "reload" in p.error_log.read_text():
            break
        time.sleep(0.02)
    assert "reload" in p.error_log.read_text()
    assert p.check_config().returncode == 0
    p.stop()
    assert p.returncode == 0


@pytest.mark.parametrize("env, expect", [
    ({"STUB_SANITIZER": "1"}, "ERROR: AddressSanitizer"),
    ({"STUB_EXIT": "3"}, "exit status 3"),
    ({"STUB_IGNORE_TERM": "1"}, "did not exit"),
])
def test_proxy_stop_detects_bad_exits(store, bed_tls, env, expect):
    p = bed.Proxy(store.url, tls=bed_tls, binary=STUB, env=env).start()
    with pytest.raises(bed.SanitizerError) as e:
        p.stop(timeout=1.0)
    assert expect in str(e.value)
    p.close(check=False)


def test_proxy_kill9_and_missing_binary(make_proxy, tmp_path):
    p = make_proxy(binary=STUB)
    pid = p.pid
    p.kill9()
    assert p.returncode == -signal.SIGKILL and not _alive(pid)
    q = make_proxy(binary=tmp_path / "nope", start=False)
    with pytest.raises(bed.BedError, match="not built"):
        q.start()
