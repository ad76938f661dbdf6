"""ListObjects v1 and v2 through the proxy with prefixes, delimiters and paging (small
MaxKeys, continuation tokens, markers), per client and scheme. The keys include blanks,
'+' and non-ASCII so that markers and tokens echoed back in the query string need
encoding, which the proxy must verify and re-sign exactly as sent.
"""

import json
import math
import shutil
import xml.etree.ElementTree as ET

import pytest

from lib import clients, ops
from lib.clients import Endpoint

SCHEMES = ("http", "https")
KEYS = sorted(["a/1", "a/2", "a/b/3", "a/b/4", "a/c d/5", "c/6", "d", "e f/7", "z+/8",
               "\u00fc/9", "\u00fc/\u65e5\u672c/10", "top"])


def matrix(*names):
    return [pytest.param(c, s, id=f"{c}-{s}") for c in names for s in SCHEMES]


def expect(prefix="", delimiter=""):
    """(keys, common prefixes) S3 lists for this prefix and delimiter."""
    keys, prefixes = [], []
    for k in KEYS:
        if not k.startswith(prefix):
            continue
        rest = k[len(prefix):]
        if delimiter and delimiter in rest:
            p = prefix + rest[:rest.index(delimiter) + len(delimiter)]
            if p not in prefixes:
                prefixes.append(p)
        else:
            keys.append(k)
    return keys, prefixes


@pytest.fixture
def listing_bucket(store_s3, bucket):
    for k in KEYS:
        store_s3.put_object(Bucket=bucket, Key=k, Body=k.encode())
    return bucket


# paging loop shared by boto3 1.26 (in process) and 1.43 (through the driver's exec)
PAGER = '''
def page_all(s3, version, bucket, prefix, delimiter, page):
    keys, prefixes, calls, token = [], [], 0, None
    kw = dict(Bucket=bucket, MaxKeys=page, Prefix=prefix, Delimiter=delimiter)
    while True:
        calls += 1
        if version == 2:
            r = s3.list_objects_v2(**kw, **({"ContinuationToken": token} if token else {}))
        else:
            r = s3.list_objects(**kw, **({"Marker": token} if token else {}))
        keys += [c["Key"] for c in r.get("Contents", [])]
        prefixes += [p["Prefix"] for p in r.get("CommonPrefixes", [])]
        if not r.get("IsTruncated"):
            return keys, prefixes, calls
        if version == 2:
            token = r["NextContinuationToken"]
        else:
            token = r.get("NextMarker") or r["Contents"][-1]["Key"]
'''

# (ListObjects version, prefix, delimiter, MaxKeys)
CASES = [(2, "", "", 2), (2, "a/", "/", 1), (1, "", "", 3), (1, "a/", "/", 1),
         (2, "\u00fc/", "", 1), (1, "", "/", 2)]


def boto_listings(c, bucket):
    calls = [list(case) for case in CASES]
    code = PAGER + "result = [page_all(s3, v, %r, p, d, n) for v, p, d, n in %s]" % (
        bucket, json.dumps(calls))
    if isinstance(c, clients.Boto3InProcess):
        scope = {"s3": c.s3}
        exec(code, scope)
        return scope["result"]
    return [tuple(x) for x in c.exec(code).check().value]


@pytest.mark.parametrize("name, scheme", matrix("boto3-modern", "boto3-debian"))
def test_list_paging_boto3(proxy, make_client, store_s3, listing_bucket, name, scheme):
    c = ops.make(make_client, name, Endpoint.of(proxy, tls=scheme == "https"))
    log = ops.AccessLog(proxy)
    results = boto_listings(c, listing_bucket)
    scope = {}
    exec(PAGER, scope)
    for (version, prefix, delim, page), got in zip(CASES, results):
        keys, prefixes, ncalls = got
        # the same paging straight at the store: the proxy must not change a thing
        assert tuple(got) == scope["page_all"](store_s3, version, listing_bucket, prefix, delim,
                                               page), (version, prefix, delim)
        want_keys, want_prefixes = expect(prefix, delim)
        if (version, delim) == (1, "/"):
            # RGW's v1 NextMarker for the prefix "z+/" reads "z /" to boto3 (url encoding
            # type, '+' left unescaped): the page after it repeats "z+/", at RGW directly too
            prefixes = sorted(set(prefixes), key=prefixes.index)
        assert (keys, prefixes) == (want_keys, want_prefixes), (version, prefix, delim)
        assert ncalls >= max(1, math.ceil((len(want_keys) + len(want_prefixes)) / page))
    lists = log.wait_for(method="GET", bucket=listing_bucket, minimum=sum(r[2] for r in results))
    assert len(lists) == sum(r[2] for r in results) and {e["status"] for e in lists} == {200}


def curl_page_all(c, bucket, version, prefix, delimiter, page):
    ns = clients.S3_NS
    keys, prefixes, calls, token = [], [], 0, None
    while True:
        q = [("max-keys", str(page))]
        if version == 2:
            q.append(("list-type", "2"))
        if prefix:
            q.append(("prefix", prefix))
        if delimiter:
            q.append(("delimiter", delimiter))
        if token:
            q.append(("continuation-token" if version == 2 else "marker", token))
        r = c.request("GET", f"/{bucket}", query=sorted(q))
        assert r.status == 200, r
        calls += 1
        root = ET.fromstring(r.body)
        keys += [e.find(ns + "Key").text for e in root.findall(ns + "Contents")]
        prefixes += [e.find(ns + "Prefix").text for e in root.findall(ns + "CommonPrefixes")]
        if root.findtext(ns + "IsTruncated") != "true":
            return keys, prefixes, calls
        if version == 2:
            token = root.findtext(ns + "NextContinuationToken")
        else:
            token = root.findtext(ns + "NextMarker") or keys[-1]


@pytest.mark.parametrize("scheme", SCHEMES)
def test_list_paging_curl(proxy, listing_bucket, scheme):
    c = clients.Curl(Endpoint.of(proxy, tls=scheme == "https"))
    for version, prefix, delim, page in CASES:
        keys, prefixes, ncalls = curl_page_all(c, listing_bucket, version, prefix, delim, page)
        want_keys, want_prefixes = expect(prefix, delim)
        assert (keys, prefixes) == (want_keys, want_prefixes), (version, prefix, delim)
        assert ncalls == max(1, math.ceil((len(want_keys) + len(want_prefixes)) / page))


@pytest.mark.parametrize("name, scheme", matrix("awscli-v1", "awscli-v2"))
def test_list_paging_awscli(proxy, make_client, listing_bucket, name, scheme):
    c = ops.make(make_client, name, Endpoint.of(proxy, tls=scheme == "https"))
    log = ops.AccessLog(proxy)
    # the CLI pages by itself: --page-size is MaxKeys, and it follows the tokens/markers
    for cmd, prefix, delim, page in [("list-objects-v2", "", "", 2), ("list-objects", "", "", 3),
                                     ("list-objects-v2", "a/", "/", 1),
                                     ("list-objects", "a/", "/", 1)]:
        args = [cmd, "--bucket", listing_bucket, "--page-size", str(page)]
        if prefix:
            args += ["--prefix", prefix]
        if delim:
            args += ["--delimiter", delim]
        log.mark()
        r = c.s3api_json(*args).check()
        keys = [x["Key"] for x in r.value.get("Contents", [])]
        prefixes = [x["Prefix"] for x in r.value.get("CommonPrefixes", [])]
        want_keys, want_prefixes = expect(prefix, delim)
        assert (keys, prefixes) == (want_keys, want_prefixes), args
        pages = math.ceil((len(want_keys) + len(want_prefixes)) / page)
        n = len(log.wait_for(method="GET", bucket=listing_bucket, minimum=pages))
        assert n == pages, (args, n)
    # aws s3 ls: a delimiter listing of one "directory"
    r = c.run("s3", "ls", f"s3://{listing_bucket}/a/").check()
    names = [line.split("PRE ", 1)[1] if line.strip().startswith("PRE ") else line.split(None, 3)[3]
             for line in r.stdout.splitlines() if line.strip()]
    assert sorted(names) == ["1", "2", "b/", "c d/"], r.stdout


@pytest.mark.parametrize("scheme", SCHEMES)
def test_list_s3cmd(proxy, make_client, listing_bucket, scheme):
    if shutil.which("s3cmd") is None:
        pytest.skip("s3cmd is not installed")
    o = ops.for_client(ops.make(make_client, "s3cmd", Endpoint.of(proxy, tls=scheme == "https")))
    assert o.list(listing_bucket) == KEYS
    assert o.list(listing_bucket, "a/") == [k for k in KEYS if k.startswith("a/")]
    r = o.c.run("ls", f"s3://{listing_bucket}/a/").check()   # delimiter "/"
    got = sorted(line.split("s3://", 1)[1][len(listing_bucket) + 1:]
                 for line in r.stdout.splitlines() if "s3://" in line)
    want_keys, want_prefixes = expect("a/", "/")
    assert got == sorted(want_keys + want_prefixes)


@pytest.mark.parametrize("version", (1, 2))
@pytest.mark.parametrize("scheme", SCHEMES)
def test_list_rclone(proxy, make_client, listing_bucket, scheme, version):
    if shutil.which("rclone") is None:
        pytest.skip("rclone is not installed")
    c = ops.make(make_client, "rclone", Endpoint.of(proxy, tls=scheme == "https"))
    log = ops.AccessLog(proxy)
    # --s3-list-chunk 2: pages of two; --s3-list-version: ListObjects v1 or v2
    paging = ["--s3-list-chunk", "2", "--s3-list-version", str(version)]
    r = c.run(*paging, "lsf", "-R", "--files-only", f"{c.remote}:{listing_bucket}").check()
    assert sorted(r.stdout.splitlines()) == KEYS
    gets = log.wait_for(method="GET", bucket=listing_bucket, minimum=math.ceil(len(KEYS) / 2))
    assert len(gets) >= math.ceil(len(KEYS) / 2) and {e["status"] for e in gets} == {200}
    r = c.run(*paging, "lsf", f"{c.remote}:{listing_bucket}/a/").check()
    want_keys, want_prefixes = expect("a/", "/")
    assert sorted(r.stdout.splitlines()) == sorted(k[2:] for k in want_keys + want_prefixes)
