"""ops.py - one set of S3 operations over every client wrapper of clients.py, for the
client-matrix tests (test_10_*.py and after).

    o = ops.for_client(make_client("s3cmd", ep))
    o.create_bucket(b); o.put(b, "k", path, meta={"color": "blue"})
    h = o.head(b, "k")          # Head(status=200, size=3, etag="...", meta={"color": "blue"})
    st = o.get_range(b, "k", "bytes=-10", out)   # 206 / 416, body in `out`

What a client cannot do raises Unsupported (tests parametrize around it: s3cmd has no
ranged GET). Every method checks the client's exit status itself: a failing client fails
the test with the command and its output, except where a status is the answer (head,
get_range), which return the HTTP status the client reports (or its nearest code).

AccessLog reads what the proxy logged since a mark: the status the proxy answered with,
whatever the client made of it.
"""

import hashlib
import json
import re
import time
from pathlib import Path

from lib import clients


class Unsupported(Exception):
    """This client has no way to do that operation."""


class Head:
    def __init__(self, status, size=None, etag=None, meta=None, raw=None):
        self.status, self.size, self.etag = status, size, etag
        self.meta = meta or {}
        self.raw = raw

    def __repr__(self):
        return f"Head({self.status}, size={self.size}, etag={self.etag}, meta={self.meta})"


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def md5_file(path):
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


_AWS_ERR = re.compile(r"An error occurred \(([^)]*)\)")
_CODE_STATUS = {"404": 404, "NoSuchKey": 404, "Not Found": 404, "NoSuchBucket": 404,
                "InvalidRange": 416, "RequestedRangeNotSatisfiable": 416, "416": 416,
                "304": 304, "Not Modified": 304, "NotModified": 304,
                "412": 412, "PreconditionFailed": 412, "403": 403, "AccessDenied": 403}


def status_of_code(code):
    return _CODE_STATUS.get(str(code), 0)


# ---------------------------------------------------------------------------------------

class Ops:
    name = "?"

    def __init__(self, client):
        self.c = client
        self.name = client.name

    def __repr__(self):
        return f"Ops({self.c!r})"

    # defaults on the uniform Client operations
    def create_bucket(self, b):
        self.c.make_bucket(b).check()

    def delete_bucket(self, b):
        self.c.delete_bucket(b).check()

    def put(self, b, k, path, meta=None):
        if meta:
            raise Unsupported(f"{self.name}: metadata on put")
        self.c.put_object(b, k, path).check()

    def get(self, b, k, path):
        self.c.get_object(b, k, path).check()

    def delete(self, b, k):
        self.c.delete_object(b, k).check()

    def list(self, b, prefix=""):
        keys = self.c.list_keys(b).check().keys
        return sorted(k for k in keys if k.startswith(prefix))

    def list_buckets(self):
        raise Unsupported(f"{self.name}: list buckets")

    def head(self, b, k):
        raise Unsupported(f"{self.name}: head")

    def get_range(self, b, k, rng, path):
        raise Unsupported(f"{self.name}: ranged GET")

    def delete_many(self, b, keys):
        """DeleteObjects; returns the keys the answer lists as deleted."""
        raise Unsupported(f"{self.name}: DeleteObjects")

    def copy(self, sb, sk, db, dk, meta=None):
        """CopyObject; meta None copies the source's metadata, a dict replaces it."""
        raise Unsupported(f"{self.name}: CopyObject")

    def put_tags(self, b, k, tags):
        raise Unsupported(f"{self.name}: tagging")

    def get_tags(self, b, k):
        raise Unsupported(f"{self.name}: tagging")

    def delete_tags(self, b, k):
        raise Unsupported(f"{self.name}: tagging")

    def get_if(self, b, k, path, if_match=None, if_none_match=None):
        """Conditional GET; returns the status (200, 304, 412)."""
        raise Unsupported(f"{self.name}: conditional GET")


class AwsOps(Ops):
    def list_buckets(self):
        r = self.c.s3api_json("list-buckets").check()
        return [x["Name"] for x in r.value.get("Buckets", [])]

    def put(self, b, k, path, meta=None):
        args = ["put-object", "--bucket", b, "--key", k, "--body", str(path)]
        if meta:
            args += ["--metadata", json.dumps(meta)]
        self.c.s3api(*args).check()

    def head(self, b, k):
        r = self.c.s3api_json("head-object", "--bucket", b, "--key", k)
        if r.rc != 0:
            return Head(self._status(r), raw=r)
        v = r.value
        return Head(200, v["ContentLength"], v["ETag"].strip('"'), v.get("Metadata", {}), r)

    def get_range(self, b, k, rng, path):
        r = self.c.s3api_json("get-object", "--bucket", b, "--key", k, "--range", rng, str(path))
        if r.rc != 0:
            return self._status(r)
        return 206 if r.value.get("ContentRange") else 200

    def delete_many(self, b, keys):
        spec = json.dumps({"Objects": [{"Key": k} for k in keys]})
        r = self.c.s3api_json("delete-objects", "--bucket", b, "--delete", spec).check()
        assert not r.value.get("Errors"), r.value
        return [d["Key"] for d in r.value.get("Deleted", [])]

    def copy(self, sb, sk, db, dk, meta=None):
        from urllib.parse import quote
        args = ["copy-object", "--copy-source", f"{sb}/{quote(sk, safe='/~')}", "--bucket", db,
                "--key", dk]
        if meta is not None:
            args += ["--metadata-directive", "REPLACE", "--metadata", json.dumps(meta)]
        self.c.s3api(*args).check()

    def put_tags(self, b, k, tags):
        spec = json.dumps({"TagSet": [{"Key": n, "Value": v} for n, v in tags.items()]})
        self.c.s3api("put-object-tagging", "--bucket", b, "--key", k, "--tagging", spec).check()

    def get_tags(self, b, k):
        r = self.c.s3api_json("get-object-tagging", "--bucket", b, "--key", k).check()
        return {t["Key"]: t["Value"] for t in r.value.get("TagSet", [])}

    def delete_tags(self, b, k):
        self.c.s3api("delete-object-tagging", "--bucket", b, "--key", k).check()

    def get_if(self, b, k, path, if_match=None, if_none_match=None):
        args = ["get-object", "--bucket", b, "--key", k]
        if if_match:
            args += ["--if-match", if_match]
        if if_none_match:
            args += ["--if-none-match", if_none_match]
        r = self.c.s3api_json(*args, str(path))
        return 200 if r.rc == 0 else self._status(r)

    @staticmethod
    def _status(r):
        """The status an awscli error names; 0 when it names none (awscli crashed)."""
        m = _AWS_ERR.search(r.stderr)
        if not m:
            return 0
        return status_of_code(m.group(1)) or m.group(1)


class BotoOps(Ops):
    """boto3 1.43 through the driver, or 1.26 in this process: call() gives
    (value, error) either way; error = {"Code", "Status", ...} or None."""

    def call(self, op, **params):
        if isinstance(self.c, clients.Boto3InProcess):
            from botocore.exceptions import ClientError
            files = []
            for name, v in list(params.items()):
                if isinstance(v, Path):
                    params[name] = open(v, "rb")
                    files.append(params[name])
            try:
                v = getattr(self.c.s3, op)(**params)
                if isinstance(v, dict) and hasattr(v.get("Body"), "read"):
                    v["Body"] = v["Body"].read()
                return v, None
            except ClientError as e:
                return None, {"Code": e.response["Error"].get("Code"),
                              "Message": e.response["Error"].get("Message"),
                              "Status": e.response["ResponseMetadata"].get("HTTPStatusCode")}
            finally:
                for f in files:
                    f.close()
        r = self.c.call(op, **params)
        if r.error is None and r.rc != 0:
            raise AssertionError(f"driver failed: {r!r}")
        return r.value, r.error

    def ok(self, op, **params):
        v, err = self.call(op, **params)
        if err is not None:
            raise AssertionError(f"{self.name} {op} failed: {err}")
        return v

    def list_buckets(self):
        return [x["Name"] for x in self.ok("list_buckets").get("Buckets", [])]

    def put(self, b, k, path, meta=None):
        kw = {"Metadata": meta} if meta else {}
        self.ok("put_object", Bucket=b, Key=k, Body=Path(path), **kw)

    def head(self, b, k):
        v, err = self.call("head_object", Bucket=b, Key=k)
        if err is not None:
            return Head(err["Status"], raw=err)
        return Head(200, v["ContentLength"], v["ETag"].strip('"'), v.get("Metadata", {}), v)

    def get_range(self, b, k, rng, path):
        v, err = self.call("get_object", Bucket=b, Key=k, Range=rng)
        if err is not None:
            return err["Status"]
        Path(path).write_bytes(v["Body"])
        return v["ResponseMetadata"]["HTTPStatusCode"]

    def delete_many(self, b, keys):
        v = self.ok("delete_objects", Bucket=b, Delete={"Objects": [{"Key": k} for k in keys]})
        assert not v.get("Errors"), v
        return [d["Key"] for d in v.get("Deleted", [])]

    def copy(self, sb, sk, db, dk, meta=None):
        kw = {"MetadataDirective": "REPLACE", "Metadata": meta} if meta is not None else {}
        self.ok("copy_object", CopySource={"Bucket": sb, "Key": sk}, Bucket=db, Key=dk, **kw)

    def put_tags(self, b, k, tags):
        self.ok("put_object_tagging", Bucket=b, Key=k,
                Tagging={"TagSet": [{"Key": n, "Value": v} for n, v in tags.items()]})

    def get_tags(self, b, k):
        v = self.ok("get_object_tagging", Bucket=b, Key=k)
        return {t["Key"]: t["Value"] for t in v.get("TagSet", [])}

    def delete_tags(self, b, k):
        self.ok("delete_object_tagging", Bucket=b, Key=k)

    def get_if(self, b, k, path, if_match=None, if_none_match=None):
        kw = {}
        if if_match:
            kw["IfMatch"] = if_match
        if if_none_match:
            kw["IfNoneMatch"] = if_none_match
        v, err = self.call("get_object", Bucket=b, Key=k, **kw)
        if err is not None:
            return err["Status"]
        Path(path).write_bytes(v["Body"])
        return v["ResponseMetadata"]["HTTPStatusCode"]


class S3cmdOps(Ops):
    def list_buckets(self):
        r = self.c.run("ls").check()
        return [line.split("s3://", 1)[1].rstrip("/") for line in r.stdout.splitlines()
                if "s3://" in line]

    def put(self, b, k, path, meta=None):
        extra = [f"--add-header=x-amz-meta-{n}:{v}" for n, v in (meta or {}).items()]
        self.c.run("put", *extra, str(path), f"s3://{b}/{k}").check()

    def list(self, b, prefix=""):
        r = self.c.run("ls", "--recursive", f"s3://{b}/{prefix}").check()
        out = []
        for line in r.stdout.splitlines():   # DATE TIME SIZE s3://bucket/key
            parts = line.split(None, 3)
            if len(parts) == 4 and parts[3].startswith(f"s3://{b}/"):
                out.append(parts[3][len(f"s3://{b}/"):])
        return sorted(out)

    def head(self, b, k):
        r = self.c.run("info", f"s3://{b}/{k}")
        if r.rc != 0:
            m = re.search(r"S3 error: (\d{3})", r.stderr)
            return Head(int(m.group(1)) if m else r.rc, raw=r)
        size = etag = None
        meta = {}
        for line in r.stdout.splitlines():
            line = line.strip()
            if line.startswith("File size:"):
                size = int(line.split(":", 1)[1])
            elif line.startswith("MD5 sum:"):
                etag = line.split(":", 1)[1].strip()
            elif line.startswith("x-amz-meta-"):
                n, v = line[len("x-amz-meta-"):].split(":", 1)
                meta[n] = v.strip()
        meta.pop("s3cmd-attrs", None)   # s3cmd's own (mtime, mode, md5 of the file)
        return Head(200, size, etag, meta, r)

    def delete_prefix(self, b, prefix):
        """s3cmd sends DeleteObjects for `del --recursive` (several URIs go one by one)."""
        r = self.c.run("del", "--recursive", f"s3://{b}/{prefix}").check()
        return [line.split("s3://", 1)[1].split("/", 1)[1].rstrip("'")
                for line in r.stdout.splitlines() if line.startswith("delete: ")]

    def copy(self, sb, sk, db, dk, meta=None):
        if meta is None:
            self.c.run("cp", f"s3://{sb}/{sk}", f"s3://{db}/{dk}").check()
            return
        # s3cmd cp copies the metadata; modify then replaces it (CopyObject onto itself,
        # directive REPLACE, with the object's old metadata sent again next to the new)
        self.c.run("cp", f"s3://{sb}/{sk}", f"s3://{db}/{dk}").check()
        extra = [f"--add-header=x-amz-meta-{n}:{v}" for n, v in meta.items()]
        self.c.run("modify", *extra, f"s3://{db}/{dk}").check()


class RcloneOps(Ops):
    def list_buckets(self):
        r = self.c.run("lsf", "--dirs-only", f"{self.c.remote}:").check()
        return [line.rstrip("/") for line in r.stdout.splitlines() if line]

    def put(self, b, k, path, meta=None):
        extra = []
        if meta:
            extra = ["-M"] + [a for n, v in meta.items() for a in ("--metadata-set", f"{n}={v}")]
        self.c.run("copyto", *extra, str(path), f"{self.c.remote}:{b}/{k}").check()

    def list(self, b, prefix=""):
        r = self.c.run("lsf", "-R", "--files-only", f"{self.c.remote}:{b}").check()
        return sorted(k for k in r.stdout.splitlines() if k and k.startswith(prefix))

    def head(self, b, k):
        r = self.c.run("lsjson", "--stat", "-M", "--hash", f"{self.c.remote}:{b}/{k}")
        if r.rc != 0:
            return Head(404 if "not found" in r.stderr else r.rc, raw=r)
        v = json.loads(r.stdout)
        if v.get("IsDir"):    # rclone's answer for a missing object: maybe a directory
            return Head(404, raw=r)
        meta = {n: x for n, x in (v.get("Metadata") or {}).items()
                if n not in ("atime", "btime", "mtime", "gid", "uid", "mode", "content-type")}
        return Head(200, v["Size"], (v.get("Hashes") or {}).get("md5"), meta, r)

    def copy(self, sb, sk, db, dk, meta=None):
        if meta is not None:   # 1.60 copies server-side with directive COPY, whatever -M says
            raise Unsupported("rclone: CopyObject with new metadata")
        self.c.run("copyto", f"{self.c.remote}:{sb}/{sk}", f"{self.c.remote}:{db}/{dk}").check()

    def get_range(self, b, k, rng, path):
        m = re.fullmatch(r"bytes=(\d*)-(\d*)", rng)
        first, last = m.group(1), m.group(2)
        if first == "":
            args = ["--tail", last]
        elif last == "":
            args = ["--offset", first]
        else:
            args = ["--offset", first, "--count", str(int(last) - int(first) + 1)]
        rc, out, err = _rclone_bytes(self.c, "cat", *args, f"{self.c.remote}:{b}/{k}")
        if rc != 0:
            m = re.search(r"status code: (\d{3})", err)
            return int(m.group(1)) if m else rc
        Path(path).write_bytes(out)
        return 206


def _rclone_bytes(c, *args):
    """rclone as Rclone.run() runs it, but stdout as bytes (rclone cat of binary data)."""
    import subprocess
    argv = ["rclone", "--config", "/dev/null", "--retries", "1", "--low-level-retries", "1"]
    if c.ep.https and c.ep.ca:
        argv += ["--ca-cert", c.ep.ca]
    p = subprocess.run(argv + list(args), env=c.env(), capture_output=True, timeout=c.timeout)
    return p.returncode, p.stdout, p.stderr.decode(errors="replace")


class CurlOps(Ops):
    def req(self, method, b, k="", **kw):
        path = f"/{b}" + (f"/{clients.quote_key(k)}" if k else "")
        return self.c.request(method, path, **kw)

    def list_buckets(self):
        r = self.c.request("GET", "/")
        assert r.status == 200, r
        import xml.etree.ElementTree as ET
        return [e.text for e in ET.fromstring(r.body).iter(clients.S3_NS + "Name")]

    def put(self, b, k, path, meta=None):
        headers = {f"x-amz-meta-{n}": v for n, v in (meta or {}).items()}
        r = self.req("PUT", b, k, data=Path(path), headers=headers)
        assert r.rc == 0 and r.status == 200, r

    def head(self, b, k):
        r = self.req("HEAD", b, k, extra=["-I"])
        if r.status != 200:
            return Head(r.status, raw=r)
        meta = {n[len("x-amz-meta-"):]: v for n, v in r.headers.items()
                if n.startswith("x-amz-meta-")}
        return Head(200, int(r.headers["content-length"]), r.headers["etag"].strip('"'), meta, r)

    def get_range(self, b, k, rng, path):
        r = self.req("GET", b, k, headers={"Range": rng}, out=path)
        return r.status

    def delete_many(self, b, keys):
        import base64
        from xml.sax.saxutils import escape
        body = ("<Delete>" + "".join(f"<Object><Key>{escape(k)}</Key></Object>" for k in keys)
                + "</Delete>").encode()
        md5 = base64.b64encode(hashlib.md5(body).digest()).decode()
        # "delete=": curl 7.88 signs a bare "?delete" without the "=" SigV4 wants, which RGW
        # refuses as well (SignatureDoesNotMatch); S3 reads both spellings alike
        r = self.c.request("POST", f"/{b}", query="delete=", data=body,
                           headers={"Content-MD5": md5, "Content-Type": "application/xml"})
        assert r.status == 200, r
        import xml.etree.ElementTree as ET
        root = ET.fromstring(r.body)
        assert root.find(clients.S3_NS + "Error") is None, r.stdout
        return [d.find(clients.S3_NS + "Key").text for d in root.iter(clients.S3_NS + "Deleted")]

    def copy(self, sb, sk, db, dk, meta=None):
        headers = {"x-amz-copy-source": f"/{sb}/{clients.quote_key(sk)}"}
        if meta is not None:
            headers["x-amz-metadata-directive"] = "REPLACE"
            headers.update({f"x-amz-meta-{n}": v for n, v in meta.items()})
        r = self.req("PUT", db, dk, headers=headers)
        assert r.status == 200 and b"<CopyObjectResult" in r.body, r

    def put_tags(self, b, k, tags):
        from xml.sax.saxutils import escape
        body = ("<Tagging><TagSet>" + "".join(
            f"<Tag><Key>{escape(n)}</Key><Value>{escape(v)}</Value></Tag>" for n, v in tags.items())
            + "</TagSet></Tagging>").encode()
        r = self.req("PUT", b, k, query="tagging=", data=body,
                     headers={"Content-Type": "application/xml"})
        assert r.status == 200, r

    def get_tags(self, b, k):
        r = self.req("GET", b, k, query="tagging=")
        assert r.status == 200, r
        import xml.etree.ElementTree as ET
        ns = clients.S3_NS
        return {t.find(ns + "Key").text: t.find(ns + "Value").text or ""
                for t in ET.fromstring(r.body).iter(ns + "Tag")}

    def delete_tags(self, b, k):
        r = self.req("DELETE", b, k, query="tagging=")
        assert r.status in (200, 204), r

    def get_if(self, b, k, path, if_match=None, if_none_match=None):
        headers = {}
        if if_match:
            headers["If-Match"] = if_match
        if if_none_match:
            headers["If-None-Match"] = if_none_match
        return self.req("GET", b, k, headers=headers, out=path).status


def make(make_client, name, endpoint, **kw):
    """make_client(name, endpoint, **kw), awscli with persistent=True (lib/awsserver.py:
    the same CLI and requests, without its ~0.8 s start-up per command)."""
    if name.startswith("awscli"):
        kw.setdefault("persistent", True)
    return make_client(name, endpoint, **kw)


def for_client(client):
    if isinstance(client, clients.AwsCli):
        return AwsOps(client)
    if isinstance(client, (clients.Boto3, clients.Boto3InProcess)):
        return BotoOps(client)
    if isinstance(client, clients.S3cmd):
        return S3cmdOps(client)
    if isinstance(client, clients.Rclone):
        return RcloneOps(client)
    if isinstance(client, clients.Curl):
        return CurlOps(client)
    raise ValueError(f"no ops for {client!r}")


# ---------------------------------------------------------------------------------------

class AccessLog:
    """The proxy's access log from a mark on: mark() then entries(...) of what came since.
    The proxy writes a line as a request completes, which may be a moment after the client
    saw its answer, hence wait_for()."""

    def __init__(self, proxy):
        self.path = Path(proxy.access_log)
        self.offset = 0
        self.mark()

    def mark(self):
        try:
            self.offset = self.path.stat().st_size
        except OSError:
            self.offset = 0
        return self

    def entries(self, **match):
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except OSError:
            return []
        out = []
        for line in data.decode("utf-8", "replace").splitlines():
            try:
                e = json.loads(line)
            except ValueError:
                continue
            if all(e.get(k) == v for k, v in match.items()):
                out.append(e)
        return out

    def wait_for(self, timeout=5.0, minimum=1, **match):
        """The entries matching `match` once there are `minimum` of them (else what there
        is at the timeout). A line is written once its answer has gone out, so a client
        can see its answer before the line is there."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.entries(**match)
            if len(found) >= minimum or time.monotonic() > deadline:
                return found
            time.sleep(0.05)
