"""Names and values that need encoding, per client and scheme: keys with blanks, '+', '%',
non-ASCII, reserved characters, '//', a trailing '/', a key of 1024 bytes; user metadata
with non-ASCII values, as RFC 2047 words (what the AWS SDKs make an application send:
botocore refuses non-ASCII metadata) and as raw UTF-8 bytes (curl, rclone, s3cmd).

The proxy verifies the client's signature over its own canonical form of the path and
headers and signs again for the store: any difference in encoding shows up as a 403, a
wrong key at the store, or altered bytes.
"""

import email.header
import hashlib
import shutil
from pathlib import Path

import pytest

from lib import clients, ops
from lib.clients import Endpoint

SCHEMES = ("http", "https")
PREFIX = "files/"


def _long_key():
    key = PREFIX + "/".join(["L" * 200] * 5)          # 6 + 1004 bytes, parts fit a file name
    return key + "/" + "y" * (1024 - len(key) - 1)


LONG = _long_key()
assert len(LONG.encode()) == 1024

# keys a local file can stand for (the file-tree clients copy directories)
FILE_KEYS = [PREFIX + k for k in [
    "sp ace", "plus+sign", "per%cent", "per%25", "uni/\u00fcn\u00ef/\u65e5\u672c\u8a9e",
    "tilde~", "bang!", "dollar$", "amp&", "quote'", "paren(x)", "star*", "eq=", "colon:",
    "at@", "comma,", "semi;", "mix !$&'()*+,;=:@~ %"]] + [LONG]
# keys no file can stand for: the S3 API clients only
RAW_KEYS = ["raw/double//slash", "raw/trailing/"]


def body_of(key):
    return b"key=" + key.encode() + b"\n" + hashlib.sha256(key.encode()).digest() * 50


def matrix(*names):
    return [pytest.param(c, s, id=f"{c}-{s}") for c in names for s in SCHEMES]


def need(binary):
    if shutil.which(binary) is None:
        pytest.skip(f"{binary} is not installed")


def keys_at_store(store_s3, bucket):
    out = []
    for page in store_s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        out += [o["Key"] for o in page.get("Contents", [])]
    return sorted(out)


def check_store(store_s3, bucket, keys):
    assert keys_at_store(store_s3, bucket) == sorted(keys)
    for k in keys:
        got = store_s3.get_object(Bucket=bucket, Key=k)["Body"].read()
        assert got == body_of(k), k


def write_tree(root, keys):
    for k in keys:
        p = Path(root) / k[len(PREFIX):]
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(body_of(k))


def check_tree(root, keys):
    found = sorted(PREFIX + str(p.relative_to(root)) for p in Path(root).rglob("*") if p.is_file())
    assert found == sorted(keys)
    for k in keys:
        assert (Path(root) / k[len(PREFIX):]).read_bytes() == body_of(k), k


# ---------------------------------------------------------------------------------------
# S3 API clients: every key one by one

BOTO_SCRIPT = '''
import hashlib
def body_of(key):
    return b"key=" + key.encode() + b"\\n" + hashlib.sha256(key.encode()).digest() * 50
out = {"get": {}, "head": {}, "list": []}
for k in KEYS:
    s3.put_object(Bucket=BUCKET, Key=k, Body=body_of(k))
for k in KEYS:
    out["get"][k] = s3.get_object(Bucket=BUCKET, Key=k)["Body"].read() == body_of(k)
    out["head"][k] = s3.head_object(Bucket=BUCKET, Key=k)["ContentLength"]
for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
    out["list"] += [o["Key"] for o in page.get("Contents", [])]
for page in s3.get_paginator("list_objects").paginate(Bucket=BUCKET):
    out["list"] += [o["Key"] for o in page.get("Contents", [])]
result = out
'''


@pytest.mark.parametrize("name, scheme", matrix("boto3-modern", "boto3-debian", "curl"))
def test_special_keys_api(proxy, make_client, store_s3, bucket, name, scheme):
    c = ops.make(make_client, name, Endpoint.of(proxy, tls=scheme == "https"))
    keys = FILE_KEYS + RAW_KEYS
    log = ops.AccessLog(proxy)
    if name == "curl":
        for k in keys:
            r = c.request("PUT", f"/{bucket}/{clients.quote_key(k)}", data=body_of(k))
            assert r.status == 200, (k, r)
        check_store(store_s3, bucket, keys)
        for k in keys:
            r = c.request("GET", f"/{bucket}/{clients.quote_key(k)}")
            assert r.status == 200 and r.body == body_of(k), (k, r.status)
            r = c.request("HEAD", f"/{bucket}/{clients.quote_key(k)}", extra=["-I"])
            assert r.status == 200 and int(r.headers["content-length"]) == len(body_of(k)), k
        listed = ops.for_client(c).list(bucket)
        assert listed == sorted(keys)
    else:
        code = f"KEYS = {keys!r}\nBUCKET = {bucket!r}\n" + BOTO_SCRIPT
        if isinstance(c, clients.Boto3InProcess):
            scope = {"s3": c.s3}
            exec(code, scope)
            out = scope["result"]
        else:
            out = c.exec(code).check().value
        check_store(store_s3, bucket, keys)
        assert out["get"] == {k: True for k in keys}
        assert out["head"] == {k: len(body_of(k)) for k in keys}
        assert sorted(out["list"]) == sorted(keys * 2)      # v2 and v1 listings
    entries = log.wait_for(method="PUT", minimum=len(keys))
    assert sorted(e["key"] for e in entries) == sorted(keys)   # the proxy read them right
    assert {e["status"] for e in log.entries()} == {200}
    code = f"for k in {keys!r}:\n    s3.delete_object(Bucket={bucket!r}, Key=k)\n"
    if name == "curl":
        for k in keys:
            assert c.request("DELETE", f"/{bucket}/{clients.quote_key(k)}").status == 204, k
    elif isinstance(c, clients.Boto3InProcess):
        exec(code, {"s3": c.s3})
    else:
        c.exec(code).check()     # one driver process for all (not one per key)
    assert keys_at_store(store_s3, bucket) == []


@pytest.mark.parametrize("name, scheme", matrix("awscli-v1", "awscli-v2"))
def test_special_keys_awscli(proxy, make_client, store_s3, bucket, tmp_path, name, scheme):
    c = ops.make(make_client, name, Endpoint.of(proxy, tls=scheme == "https"))
    src, dst = tmp_path / "src", tmp_path / "dst"
    write_tree(src, FILE_KEYS)
    c.s3("cp", "--recursive", str(src), f"s3://{bucket}/{PREFIX}").check()
    for k in RAW_KEYS:
        f = tmp_path / "raw"
        f.write_bytes(body_of(k))
        c.s3api("put-object", "--bucket", bucket, "--key", k, "--body", str(f)).check()
    check_store(store_s3, bucket, FILE_KEYS + RAW_KEYS)
    c.s3("cp", "--recursive", f"s3://{bucket}/{PREFIX}", str(dst)).check()
    check_tree(dst, FILE_KEYS)
    for k in RAW_KEYS:
        out = tmp_path / "raw.out"
        c.s3api("get-object", "--bucket", bucket, "--key", k, str(out)).check()
        assert out.read_bytes() == body_of(k), k
    r = c.s3api_json("list-objects-v2", "--bucket", bucket).check()
    assert sorted(x["Key"] for x in r.value["Contents"]) == sorted(FILE_KEYS + RAW_KEYS)
    c.s3("rm", "--recursive", f"s3://{bucket}/").check()
    assert keys_at_store(store_s3, bucket) == []


@pytest.mark.parametrize("name, scheme", matrix("s3cmd", "rclone"))
def test_special_keys_tree_clients(proxy, make_client, store_s3, bucket, tmp_path, name, scheme):
    need(name)
    c = ops.make(make_client, name, Endpoint.of(proxy, tls=scheme == "https"))
    src, dst = tmp_path / "src", tmp_path / "dst"
    write_tree(src, FILE_KEYS)
    dst.mkdir()
    if name == "s3cmd":
        c.run("put", "--recursive", f"{src}/", f"s3://{bucket}/{PREFIX}").check()
        check_store(store_s3, bucket, FILE_KEYS)
        c.run("get", "--recursive", f"s3://{bucket}/{PREFIX}", f"{dst}/").check()
    else:
        c.run("copy", str(src), f"{c.remote}:{bucket}/{PREFIX}").check()
        check_store(store_s3, bucket, FILE_KEYS)
        c.run("copy", f"{c.remote}:{bucket}/{PREFIX}", str(dst)).check()
    check_tree(dst, FILE_KEYS)
    assert ops.for_client(c).list(bucket) == sorted(FILE_KEYS)
    if name == "s3cmd":
        c.run("del", "--recursive", f"s3://{bucket}/{PREFIX}").check()
    else:
        c.run("delete", f"{c.remote}:{bucket}/{PREFIX}").check()
    assert keys_at_store(store_s3, bucket) == []


# ---------------------------------------------------------------------------------------
# non-ASCII metadata

RFC2047 = {"b-word": "=?UTF-8?B?w7xuw69jw7hkZSDml6XmnKw=?=",     # "ünïcøde 日本"
           "q-word": "=?UTF-8?Q?=C3=BCn=C3=AFc=C3=B8de?=",        # "ünïcøde"
           "plain": "ascii"}


def decoded(v):
    return str(email.header.make_header(email.header.decode_header(v)))


@pytest.mark.parametrize("name, scheme", matrix("awscli-v1", "awscli-v2", "boto3-modern",
                                                "boto3-debian"))
def test_metadata_rfc2047(proxy, make_client, store_s3, bucket, tmp_path, name, scheme):
    o = ops.for_client(ops.make(make_client, name, Endpoint.of(proxy, tls=scheme == "https")))
    src = tmp_path / "src"
    src.write_bytes(b"rfc 2047\n")
    o.put(bucket, "m", src, meta=RFC2047)
    at_store = store_s3.head_object(Bucket=bucket, Key="m")["Metadata"]
    assert {k: at_store.get(k) for k in RFC2047} == RFC2047   # stored as sent
    h = o.head(bucket, "m")
    assert h.status == 200 and {k: h.meta.get(k) for k in RFC2047} == RFC2047, h
    assert decoded(h.meta["b-word"]) == "\u00fcn\u00efc\u00f8de \u65e5\u672c"
    assert decoded(h.meta["q-word"]) == "\u00fcn\u00efc\u00f8de"


RAW_VALUE = "\u00fcn\u00efc\u00f8de \u65e5\u672c"


@pytest.mark.parametrize("name, scheme", matrix("curl", "rclone", "s3cmd"))
def test_metadata_raw_utf8(proxy, store, make_client, store_s3, bucket, tmp_path, name, scheme):
    need(name)
    o = ops.for_client(ops.make(make_client, name, Endpoint.of(proxy, tls=scheme == "https")))
    src = tmp_path / "src"
    src.write_bytes(b"raw utf-8\n")
    o.put(bucket, "m", src, meta={"name": RAW_VALUE})
    # the bytes as the store keeps them, read with curl straight from it
    direct = clients.Curl(Endpoint.of(store)).request("HEAD", f"/{bucket}/m", extra=["-I"])
    assert direct.status == 200 and direct.headers.get("x-amz-meta-name") == RAW_VALUE, direct
    via = clients.Curl(Endpoint.of(proxy, tls=scheme == "https")).request(
        "HEAD", f"/{bucket}/m", extra=["-I"])
    assert via.status == 200 and via.headers.get("x-amz-meta-name") == RAW_VALUE, via
    h = o.head(bucket, "m")
    if name == "s3cmd":     # s3cmd shows header bytes as Latin-1
        assert h.meta.get("name") == RAW_VALUE.encode().decode("latin-1"), h
    else:
        assert h.meta.get("name") == RAW_VALUE, h
