"""clients.py - the real S3 clients, run as subprocesses, for the integration tests.

Every wrapper takes an Endpoint (URL with http:// or https://, keys, region, CA file) and
returns Result objects, which are (rc, stdout, stderr) tuples with extras:

    ep = Endpoint("https://127.0.0.1:8443", "AKIDCLIENT", "secretclient", ca="/path/ca.pem")
    rc, out, err = AwsCli(ep, version=1).s3api("list-buckets")
    r = Boto3(ep, python="modern").call("put_object", Bucket="b", Key="k", Body=b"hi")
    r = Curl(ep).request("GET", "/b/k")        # r.status, r.headers, r.body
    make_client("rclone", ep).put_object("b", "k", path)   # uniform ops, see Client

Clients and where they come from (BACKENDS.md §5):
    awscli-v1     `aws` on PATH: the image's pyenv awscli 1.45 / botocore 1.43
    awscli-v2     /usr/bin/aws: Debian's awscli 2.9
    boto3-modern  boto3 1.43 under the pyenv python, through boto_driver.py
    boto3-debian  boto3 1.26 under /usr/bin/python3 (in this process, or through the driver)
    s3cmd         /usr/bin/s3cmd (Debian 2.3)
    rclone        Debian rclone 1.60, provider Ceph, path style
    curl          curl 7.88 --aws-sigv4, with an explicit x-amz-content-sha256

On a bare Debian machine there is no pyenv python: awscli-v1 and boto3-modern then run
Debian's awscli v2 / boto3 1.26 instead and say so (.substitute, and FALLBACKS, which
conftest prints in the summary).

Retries are off by default (max_attempts 1 for the AWS SDKs, 1 low-level retry for rclone)
so that an error of the proxy shows as an error, not as a slow success. s3cmd has no switch
for it: it retries 5xx and connection errors 5 times with a growing pause.
"""

import atexit
import base64
import datetime
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.parse
import xml.etree.ElementTree as ET
from functools import lru_cache
from pathlib import Path

HERE = Path(__file__).resolve().parent
DRIVER = HERE / "boto_driver.py"
DEBIAN_PYTHON = "/usr/bin/python3"
DEBIAN_AWS = "/usr/bin/aws"
DEFAULT_TIMEOUT = 180
S3_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"

FALLBACKS = []  # human-readable notes: a client was replaced by another one

_tmp = None


def _tmpdir():
    """One scratch directory per process for generated client config files."""
    global _tmp
    if _tmp is None:
        _tmp = Path(tempfile.mkdtemp(prefix="s3tee-clients-"))
        atexit.register(shutil.rmtree, _tmp, True)
    return _tmp


def _note_fallback(msg):
    if msg not in FALLBACKS:
        FALLBACKS.append(msg)


# ---------------------------------------------------------------------------------------
# Endpoint and Result

class Endpoint:
    """Where a client talks to and as whom. https iff the URL says so; `ca` verifies it."""

    def __init__(self, url, access_key, secret, region="us-east-1", ca=None):
        self.url = url.rstrip("/")
        self.access_key = access_key
        self.secret = secret
        self.region = region
        self.ca = str(ca) if ca else None
        u = urllib.parse.urlsplit(self.url)
        self.scheme, self.host, self.port = u.scheme, u.hostname, u.port
        if self.scheme not in ("http", "https"):
            raise ValueError(f"endpoint URL must be http:// or https://, not {url!r}")

    @property
    def https(self):
        return self.scheme == "https"

    @property
    def hostport(self):
        return f"{self.host}:{self.port}" if self.port else self.host

    @classmethod
    def of(cls, obj, tls=False, access_key=None, secret=None):
        """Endpoint of a bed object (RgwSite, Moto, Proxy): its http URL, or its https URL
        and CA with tls=True; its own keys unless others are given."""
        url = obj.tls_url if tls else obj.url
        if not url:
            raise ValueError(f"{obj!r} has no {'https' if tls else 'http'} endpoint")
        return cls(url, access_key or obj.access_key, secret or obj.secret,
                   getattr(obj, "region", "us-east-1"), obj.ca if tls else None)

    def with_keys(self, access_key, secret):
        return Endpoint(self.url, access_key, secret, self.region, self.ca)

    def __repr__(self):
        return f"Endpoint({self.url}, {self.access_key})"


class Result(tuple):
    """(rc, stdout, stderr) plus .cmd, and whatever a wrapper adds (.status, .value, ...)."""

    def __new__(cls, rc, stdout, stderr, cmd=None, **extra):
        self = super().__new__(cls, (rc, stdout, stderr))
        self.cmd = cmd
        self.__dict__.update(extra)
        return self

    rc = property(lambda self: self[0])
    stdout = property(lambda self: self[1])
    stderr = property(lambda self: self[2])

    def __repr__(self):
        cmd = " ".join(map(str, self.cmd)) if isinstance(self.cmd, (list, tuple)) else self.cmd
        return (f"Result(rc={self.rc}, cmd={cmd!r}\n--- stdout\n{_clip(self.stdout)}"
                f"\n--- stderr\n{_clip(self.stderr)})")

    @property
    def ok(self):
        return self.rc == 0

    def check(self):
        """Returns self if rc == 0, else raises AssertionError showing the command and output."""
        if self.rc != 0:
            raise AssertionError(f"client failed: {self!r}")
        return self


def _clip(s, n=4000):
    s = s if isinstance(s, str) else repr(s)
    return s if len(s) <= n else s[: n // 2] + f"\n... ({len(s) - n} chars) ...\n" + s[-n // 2:]


def run(argv, env=None, input=None, timeout=DEFAULT_TIMEOUT, cwd=None):
    """Runs argv (text in and out); never raises for a failing or hanging command:
    rc 124 on timeout, 127 if the program is missing."""
    argv = [str(a) for a in argv]
    try:
        p = subprocess.run(argv, env=env, input=input, capture_output=True, timeout=timeout,
                           cwd=cwd, text=True, errors="replace",
                           stdin=None if input is not None else subprocess.DEVNULL)
        return Result(p.returncode, p.stdout, p.stderr, argv)
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        err = e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes) else (e.stderr or "")
        return Result(124, out, err + f"\n(timed out after {timeout}s)", argv)
    except FileNotFoundError as e:
        return Result(127, "", str(e), argv)


def clean_env(extra=None):
    """os.environ without AWS_* (the image sets AWS_CA_BUNDLE) and without proxies."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("AWS_") and k.lower() not in ("http_proxy", "https_proxy", "all_proxy")}
    env["NO_PROXY"] = env["no_proxy"] = "*"
    if extra:
        for k, v in extra.items():
            if v is None:
                env.pop(k, None)
            else:
                env[k] = str(v)
    return env


# ---------------------------------------------------------------------------------------
# What is installed

@lru_cache(maxsize=None)
def _boto3_version(python):
    r = run([python, "-c", "import boto3, botocore, sys; "
             "print(boto3.__version__, botocore.__version__, sys.version.split()[0])"], timeout=60)
    if r.rc != 0:
        return None
    b3, bc, py = r.stdout.split()
    return {"python": python, "boto3": b3, "botocore": bc, "python_version": py}


def _version_tuple(v):
    return tuple(int(x) for x in v.split(".")[:3] if x.isdigit())


@lru_cache(maxsize=None)
def modern_python():
    """The pyenv python with boto3 >= 1.36 (aws-chunked trailers over https), or None.

    $S3TEE_MODERN_PYTHON wins; then `python3` on PATH when it is not Debian's."""
    candidates = [os.environ.get("S3TEE_MODERN_PYTHON")]
    pyenv = shutil.which("pyenv")
    if pyenv:
        r = run([pyenv, "which", "python3"], timeout=30)
        if r.rc == 0:
            candidates.append(r.stdout.strip())
    candidates.append(shutil.which("python3"))
    debian = os.path.realpath(DEBIAN_PYTHON)
    for c in candidates:
        if not c or os.path.realpath(c) == debian:
            continue
        v = _boto3_version(c)
        if v and _version_tuple(v["boto3"]) >= (1, 36):
            return c
    return None


@lru_cache(maxsize=None)
def awscli_v1():
    """Path of an awscli v1 (`aws --version` says aws-cli/1.), or None."""
    candidates = []
    py = modern_python()
    if py:
        candidates.append(str(Path(py).parent / "aws"))
    candidates.append(shutil.which("aws"))
    for c in candidates:
        if c and os.access(c, os.X_OK):
            r = run([c, "--version"], env=clean_env(), timeout=60)
            if r.rc == 0 and (r.stdout + r.stderr).startswith("aws-cli/1."):
                return c
    return None


@lru_cache(maxsize=None)
def inventory():
    """{client name: description} of what this machine has; printed in pytest's header."""
    out = {}
    mp = modern_python()
    v = _boto3_version(mp) if mp else None
    out["boto3-modern"] = (f"boto3 {v['boto3']} / botocore {v['botocore']} on {mp}" if v else
                           "MISSING (no pyenv python): runs Debian's boto3 instead")
    v = _boto3_version(DEBIAN_PYTHON)
    out["boto3-debian"] = f"boto3 {v['boto3']} / botocore {v['botocore']} on {DEBIAN_PYTHON}" if v else "MISSING"
    a1 = awscli_v1()
    out["awscli-v1"] = (_first_line(run([a1, "--version"], env=clean_env())) if a1 else
                        "MISSING (no pyenv awscli): runs /usr/bin/aws (v2) instead")
    out["awscli-v2"] = _first_line(run([DEBIAN_AWS, "--version"], env=clean_env()))
    out["s3cmd"] = _first_line(run(["s3cmd", "--version"]))
    out["rclone"] = _first_line(run(["rclone", "--version"], env=clean_env()))
    out["curl"] = _first_line(run(["curl", "--version"]))
    return out


def _first_line(r):
    text = (r.stdout or r.stderr).strip()
    return text.splitlines()[0] if r.rc == 0 and text else f"MISSING ({r.stderr.strip()[:80]})"


# ---------------------------------------------------------------------------------------
# The uniform operations every client offers (used by the bed tests and smoke tests)

class Client:
    """Base: every client runs these and returns a Result.

    make_bucket(b)  put_object(b, k, path)  get_object(b, k, path)  list_keys(b) -> .keys
    delete_object(b, k)  delete_bucket(b)   upload_file/download_file (transfer managers:
    multipart above the client's threshold; the plain put/get elsewhere)
    """

    name = "client"
    substitute = None  # set when another client stands in for this one (see FALLBACKS)

    def __init__(self, endpoint, env=None, timeout=DEFAULT_TIMEOUT):
        self.ep = endpoint
        self.extra_env = dict(env or {})
        self.timeout = timeout

    def __repr__(self):
        return f"{type(self).__name__}({self.name}, {self.ep.url})"

    def describe(self):
        return self.name + (f" [substitute: {self.substitute}]" if self.substitute else "")

    def upload_file(self, bucket, key, path):
        return self.put_object(bucket, key, path)

    def download_file(self, bucket, key, path):
        return self.get_object(bucket, key, path)


# ---------------------------------------------------------------------------------------
# awscli v1 / v2

class AwsCli(Client):
    """`aws` v1 (pyenv) or v2 (/usr/bin/aws). checksum="when_required" sets
    AWS_REQUEST_CHECKSUM_CALCULATION / AWS_RESPONSE_CHECKSUM_VALIDATION (v1 only knows it),
    which turns off the aws-chunked trailer uploads over https. persistent=True runs the
    commands in one long-lived CLI process per environment (lib/awsserver.py: the same
    requests, without ~0.8 s of start-up each)."""

    def __init__(self, endpoint, version=1, addressing_style="path", max_attempts=1,
                 checksum=None, env=None, timeout=DEFAULT_TIMEOUT, persistent=False):
        super().__init__(endpoint, env, timeout)
        self.persistent = persistent   # True: commands run in a long-lived CLI (awsserver.py)
        self.version = version
        self.name = f"awscli-v{version}"
        if version == 1:
            self.binary = awscli_v1()
            if self.binary is None:
                self.binary = DEBIAN_AWS
                self.substitute = "awscli v2 (/usr/bin/aws): no awscli v1 here"
                _note_fallback(f"awscli-v1 -> {self.substitute}")
        elif version == 2:
            self.binary = DEBIAN_AWS
        else:
            raise ValueError("version must be 1 or 2")
        text = ("[default]\n"
                f"region = {endpoint.region}\n"
                f"max_attempts = {max_attempts}\n"
                "retry_mode = standard\n"
                "s3 =\n"
                f"    addressing_style = {addressing_style}\n")
        self.config_file = _tmpdir() / f"aws-{hashlib.sha1(text.encode()).hexdigest()[:12]}"
        self.config_file.write_text(text)
        self.checksum = checksum

    def env(self):
        e = {
            "AWS_ACCESS_KEY_ID": self.ep.access_key,
            "AWS_SECRET_ACCESS_KEY": self.ep.secret,
            "AWS_DEFAULT_REGION": self.ep.region,
            "AWS_CONFIG_FILE": self.config_file,
            "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_PAGER": "",
        }
        if self.ep.https:
            e["AWS_CA_BUNDLE"] = self.ep.ca
        if self.checksum:
            e["AWS_REQUEST_CHECKSUM_CALCULATION"] = self.checksum
            e["AWS_RESPONSE_CHECKSUM_VALIDATION"] = self.checksum
        e.update(self.extra_env)
        return clean_env(e)

    def run(self, *args, input=None, timeout=None):
        """aws --endpoint-url URL ARGS... (add --debug to see the wire)"""
        argv = [self.binary, "--endpoint-url", self.ep.url]
        if self.ep.https and self.ep.ca:
            argv += ["--ca-bundle", self.ep.ca]
        if self.persistent and input is None and "-" not in args:
            from lib import awsserver
            rc, out, err = awsserver.run(self.binary, self.env(), argv[1:], args,
                                         timeout or self.timeout)
            return Result(rc, out, err, argv + [str(a) for a in args])
        return run(argv + list(args), env=self.env(), input=input, timeout=timeout or self.timeout)

    def s3api(self, *args, **kw):
        return self.run("s3api", *args, **kw)

    def s3(self, *args, **kw):
        return self.run("s3", *args, "--only-show-errors", **kw)

    def s3api_json(self, *args, **kw):
        """s3api ... --output json; Result.value is the parsed output (None if empty)."""
        r = self.s3api(*args, "--output", "json", **kw)
        r.value = json.loads(r.stdout) if r.rc == 0 and r.stdout.strip() else None
        return r

    def make_bucket(self, bucket):
        return self.s3api("create-bucket", "--bucket", bucket)

    def put_object(self, bucket, key, path):
        return self.s3api("put-object", "--bucket", bucket, "--key", key, "--body", path)

    def get_object(self, bucket, key, path):
        return self.s3api("get-object", "--bucket", bucket, "--key", key, path)

    def list_keys(self, bucket):
        r = self.s3api_json("list-objects-v2", "--bucket", bucket)
        r.keys = [c["Key"] for c in (r.value or {}).get("Contents", [])]
        return r

    def delete_object(self, bucket, key):
        return self.s3api("delete-object", "--bucket", bucket, "--key", key)

    def delete_bucket(self, bucket):
        return self.s3api("delete-bucket", "--bucket", bucket)

    def upload_file(self, bucket, key, path):
        return self.s3("cp", path, f"s3://{bucket}/{key}")

    def download_file(self, bucket, key, path):
        return self.s3("cp", f"s3://{bucket}/{key}", path)


# ---------------------------------------------------------------------------------------
# boto3 through boto_driver.py (either interpreter)

def encode_value(v):
    """Python value -> driver JSON: bytes as {"$b64"}, Path as {"$file"}."""
    if isinstance(v, (bytes, bytearray)):
        return {"$b64": base64.b64encode(bytes(v)).decode()}
    if isinstance(v, Path):
        return {"$file": str(v)}
    if isinstance(v, dict):
        return {k: encode_value(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [encode_value(x) for x in v]
    return v


def decode_value(v):
    """Driver JSON -> Python: {"$b64"} to bytes, {"$datetime"} to datetime."""
    if isinstance(v, dict):
        if set(v) == {"$b64"}:
            return base64.b64decode(v["$b64"])
        if set(v) == {"$datetime"}:
            return datetime.datetime.fromisoformat(v["$datetime"])
        return {k: decode_value(x) for k, x in v.items()}
    if isinstance(v, list):
        return [decode_value(x) for x in v]
    return v


class Boto3(Client):
    """boto3 in a subprocess: python="modern" (pyenv boto3 1.43; Debian's if absent, noted),
    "debian" (/usr/bin/python3, boto3 1.26) or a path.

    config: botocore Config options, e.g. {"signature_version": "s3v4",
    "request_checksum_calculation": "when_required"}; s3={"addressing_style": "path"} and
    retries={"max_attempts": 1} are defaults.

    call(op, **params)  one client method; .value is the response (bytes bodies decoded),
                        .error the {"Code", "Message", "Status"} of a failure
    calls([(op, params), ...])   in one process; .value is the list of responses
    exec(code)          run Python with `s3` (the client), `boto3`, `botocore`, `config`
                        bound; whatever it puts in `result` comes back in .value
    Parameters: bytes stay bytes, Path(...) opens that file (Body=Path(p)), and a
    `TransferConfig` dict becomes boto3.s3.transfer.TransferConfig.
    """

    def __init__(self, endpoint, python="modern", config=None, env=None, timeout=DEFAULT_TIMEOUT):
        super().__init__(endpoint, env, timeout)
        if python == "modern":
            self.python = modern_python()
            self.name = "boto3-modern"
            if self.python is None:
                self.python = DEBIAN_PYTHON
                self.substitute = "Debian boto3 1.26 on /usr/bin/python3: no pyenv python here"
                _note_fallback(f"boto3-modern -> {self.substitute}")
        elif python == "debian":
            self.python, self.name = DEBIAN_PYTHON, "boto3-debian-driver"
        else:
            self.python, self.name = python, f"boto3({python})"
        self.config = {"s3": {"addressing_style": "path"}, "retries": {"max_attempts": 1}}
        self.config.update(config or {})

    @property
    def versions(self):
        return _boto3_version(self.python)

    def _request(self, body):
        spec = {
            "endpoint": self.ep.url, "access_key": self.ep.access_key, "secret": self.ep.secret,
            "region": self.ep.region, "ca": self.ep.ca if self.ep.https else None,
            "config": self.config,
        }
        spec.update(body)
        text = json.dumps(encode_value(spec))
        env = clean_env(dict({"AWS_EC2_METADATA_DISABLED": "true",
                              "AWS_CONFIG_FILE": "/dev/null",
                              "AWS_SHARED_CREDENTIALS_FILE": "/dev/null"}, **self.extra_env))
        if len(text) < 100_000:
            r = run([self.python, DRIVER, text], env=env, timeout=self.timeout)
        else:
            r = run([self.python, DRIVER, "-"], env=env, input=text, timeout=self.timeout)
        r.value = r.error = r.meta = None
        try:
            out = json.loads(r.stdout)
        except ValueError:
            return r
        r.meta = out.get("meta")
        r.value = decode_value(out.get("value"))
        r.error = out.get("error")
        return r

    def call(self, op, **params):
        return self._request({"calls": [{"op": op, "params": params}], "single": True})

    def calls(self, ops):
        return self._request({"calls": [{"op": op, "params": p} for op, p in ops]})

    def exec(self, code):
        return self._request({"exec": code})

    def make_bucket(self, bucket):
        return self.call("create_bucket", Bucket=bucket)

    def put_object(self, bucket, key, path):
        return self.call("put_object", Bucket=bucket, Key=key, Body=Path(path))

    def get_object(self, bucket, key, path):
        return self.call("download_file", Bucket=bucket, Key=key, Filename=str(path),
                         TransferConfig={"multipart_threshold": 1 << 40})

    def list_keys(self, bucket):
        r = self.call("list_objects_v2", Bucket=bucket)
        r.keys = [c["Key"] for c in (r.value or {}).get("Contents", [])]
        return r

    def delete_object(self, bucket, key):
        return self.call("delete_object", Bucket=bucket, Key=key)

    def delete_bucket(self, bucket):
        return self.call("delete_bucket", Bucket=bucket)

    def upload_file(self, bucket, key, path):
        return self.call("upload_file", Filename=str(path), Bucket=bucket, Key=key)

    def download_file(self, bucket, key, path):
        return self.call("download_file", Bucket=bucket, Key=key, Filename=str(path))


# ---------------------------------------------------------------------------------------
# boto3 1.26 in this process (pytest runs on Debian's python)

def boto3_client(endpoint, signature_version="s3v4", addressing_style="path", max_attempts=1,
                 **config):
    """A boto3 S3 client of this interpreter for `endpoint` (SigV4, path style, no retries).
    boto3 1.26 would presign with SigV2 without signature_version="s3v4"."""
    import boto3
    import botocore.config
    cfg = botocore.config.Config(signature_version=signature_version,
                                 s3={"addressing_style": addressing_style},
                                 retries={"max_attempts": max_attempts}, **config)
    return boto3.session.Session().client(
        "s3", endpoint_url=endpoint.url, region_name=endpoint.region,
        aws_access_key_id=endpoint.access_key, aws_secret_access_key=endpoint.secret,
        verify=(endpoint.ca or True) if endpoint.https else None, config=cfg)


class Boto3InProcess(Client):
    """The uniform ops on boto3_client(); a botocore error becomes rc 1 with the message."""

    name = "boto3-debian"

    def __init__(self, endpoint, **config):
        super().__init__(endpoint)
        self.s3 = boto3_client(endpoint, **config)

    def _do(self, what, fn):
        try:
            value = fn()
        except Exception as e:  # ClientError, EndpointConnectionError, SSLError, ...
            return Result(1, "", f"{type(e).__name__}: {e}", what, value=None, error=e)
        return Result(0, "", "", what, value=value, error=None)

    def make_bucket(self, bucket):
        return self._do("create_bucket", lambda: self.s3.create_bucket(Bucket=bucket))

    def put_object(self, bucket, key, path):
        def put():
            with open(path, "rb") as f:
                return self.s3.put_object(Bucket=bucket, Key=key, Body=f)
        return self._do("put_object", put)

    def get_object(self, bucket, key, path):
        def get():
            resp = self.s3.get_object(Bucket=bucket, Key=key)
            with open(path, "wb") as f:
                for chunk in resp["Body"].iter_chunks(1 << 20):
                    f.write(chunk)
            return resp
        return self._do("get_object", get)

    def list_keys(self, bucket):
        r = self._do("list_objects_v2", lambda: self.s3.list_objects_v2(Bucket=bucket))
        r.keys = [c["Key"] for c in (r.value or {}).get("Contents", [])]
        return r

    def delete_object(self, bucket, key):
        return self._do("delete_object", lambda: self.s3.delete_object(Bucket=bucket, Key=key))

    def delete_bucket(self, bucket):
        return self._do("delete_bucket", lambda: self.s3.delete_bucket(Bucket=bucket))

    def upload_file(self, bucket, key, path):
        return self._do("upload_file", lambda: self.s3.upload_file(str(path), bucket, key))

    def download_file(self, bucket, key, path):
        return self._do("download_file", lambda: self.s3.download_file(bucket, key, str(path)))


# ---------------------------------------------------------------------------------------
# s3cmd

class S3cmd(Client):
    """/usr/bin/s3cmd with everything on the command line (-c /dev/null), path style."""

    name = "s3cmd"

    def run(self, *args, timeout=None):
        argv = ["/usr/bin/s3cmd", "-c", "/dev/null", f"--access_key={self.ep.access_key}",
                f"--secret_key={self.ep.secret}", f"--host={self.ep.hostport}",
                f"--host-bucket={self.ep.hostport}", f"--region={self.ep.region}",
                "--no-progress"]
        if self.ep.https:
            argv += ["--ssl", "--check-certificate", "--check-hostname"]
            if self.ep.ca:
                argv.append(f"--ca-certs={self.ep.ca}")
        else:
            argv.append("--no-ssl")
        return run(argv + list(args), env=clean_env(self.extra_env), timeout=timeout or self.timeout)

    def make_bucket(self, bucket):
        return self.run("mb", f"s3://{bucket}")

    def put_object(self, bucket, key, path):
        return self.run("put", path, f"s3://{bucket}/{key}")

    def get_object(self, bucket, key, path):
        return self.run("get", "--force", f"s3://{bucket}/{key}", path)

    def list_keys(self, bucket):
        r = self.run("ls", "--recursive", f"s3://{bucket}")
        prefix = f"s3://{bucket}/"
        keys = []
        for line in r.stdout.splitlines():   # DATE TIME SIZE s3://bucket/key
            parts = line.split(None, 3)
            if len(parts) == 4 and parts[3].startswith(prefix):
                keys.append(parts[3][len(prefix):])
        r.keys = keys
        return r

    def delete_object(self, bucket, key):
        return self.run("del", f"s3://{bucket}/{key}")

    def delete_bucket(self, bucket):
        return self.run("rb", f"s3://{bucket}")


# ---------------------------------------------------------------------------------------
# rclone

class Rclone(Client):
    """rclone with an environment-defined remote "site:" (provider Ceph, path style).
    AWS_CA_BUNDLE must not reach it (rclone 1.60 then fails even for http); https gets
    --ca-cert."""

    name = "rclone"
    remote = "site"

    def env(self):
        r = f"RCLONE_CONFIG_{self.remote.upper()}_"
        e = {r + "TYPE": "s3", r + "PROVIDER": "Ceph", r + "ENV_AUTH": "false",
             r + "ENDPOINT": self.ep.url, r + "ACCESS_KEY_ID": self.ep.access_key,
             r + "SECRET_ACCESS_KEY": self.ep.secret, r + "REGION": self.ep.region,
             r + "FORCE_PATH_STYLE": "true"}
        e.update(self.extra_env)
        return clean_env(e)

    def run(self, *args, timeout=None):
        argv = ["rclone", "--config", "/dev/null", "--retries", "1", "--low-level-retries", "1"]
        if self.ep.https and self.ep.ca:
            argv += ["--ca-cert", self.ep.ca]
        return run(argv + list(args), env=self.env(), timeout=timeout or self.timeout)

    def make_bucket(self, bucket):
        return self.run("mkdir", f"{self.remote}:{bucket}")

    def put_object(self, bucket, key, path):
        return self.run("copyto", path, f"{self.remote}:{bucket}/{key}")

    def get_object(self, bucket, key, path):
        return self.run("copyto", f"{self.remote}:{bucket}/{key}", path)

    def list_keys(self, bucket):
        r = self.run("lsf", "-R", "--files-only", f"{self.remote}:{bucket}")
        r.keys = [line for line in r.stdout.splitlines() if line]
        return r

    def delete_object(self, bucket, key):
        return self.run("deletefile", f"{self.remote}:{bucket}/{key}")

    def delete_bucket(self, bucket):
        return self.run("rmdir", f"{self.remote}:{bucket}")


# ---------------------------------------------------------------------------------------
# curl

def quote_key(key):
    return urllib.parse.quote(key, safe="/~")


class Curl(Client):
    """curl 7.88 with --aws-sigv4. curl does not send x-amz-content-sha256 itself, and
    RGW refuses the signature without it, so request() always adds one: the sha256 of
    the body, or payload_hash= (e.g. "UNSIGNED-PAYLOAD")."""

    name = "curl"

    def request(self, method, path, query=None, headers=None, data=None, out=None, sign=True,
                payload_hash=None, extra=(), timeout=None):
        """method, path ("/bucket/key", already URL-encoded; see quote_key), query (str or
        dict/list of pairs), headers (dict), data (bytes, str or Path), out (file for the
        body; else .body holds it), payload_hash (None: sha256 of the body; a string is sent
        as is; False sends none). Returns Result: stdout = body as text, .status (int),
        .headers (dict, lower-case names), .body (bytes, unless out), .http_version ("1.1",
        "2": what curl spoke, from the status line)."""
        with tempfile.TemporaryDirectory(prefix="curl-") as tmp:
            tmp = Path(tmp)
            url = self.ep.url + path
            if query:
                q = query if isinstance(query, str) else urllib.parse.urlencode(
                    query, quote_via=urllib.parse.quote, safe="~")
                url += "?" + q
            hfile, bfile = tmp / "headers", Path(out) if out else tmp / "body"
            argv = ["curl", "-sS", "--globoff", "-X", method, "-D", hfile, "-o", bfile,
                    "-w", "%{http_code}"]
            if self.ep.https and self.ep.ca:
                argv += ["--cacert", self.ep.ca]
            headers = dict(headers or {})
            body_hash = hashlib.sha256(b"")
            if data is not None:
                if isinstance(data, Path):
                    dfile = data
                    body_hash = _sha256_file(data)
                else:
                    raw = data.encode() if isinstance(data, str) else bytes(data)
                    dfile = tmp / "data"
                    dfile.write_bytes(raw)
                    body_hash = hashlib.sha256(raw)
                argv += ["--data-binary", f"@{dfile}"]
                if not any(k.lower() == "content-type" for k in headers):
                    headers["Content-Type"] = "application/octet-stream"
            if sign:
                argv += ["--aws-sigv4", f"aws:amz:{self.ep.region}:s3",
                         "--user", f"{self.ep.access_key}:{self.ep.secret}"]
                if payload_hash is not False and not any(
                        k.lower() == "x-amz-content-sha256" for k in headers):
                    headers["x-amz-content-sha256"] = payload_hash or body_hash.hexdigest()
            for k, v in headers.items():
                argv += ["-H", f"{k}: {v}" if v != "" else f"{k};"]
            argv += list(extra) + [url]
            r = run(argv, env=clean_env(self.extra_env), timeout=timeout or self.timeout)
            status = int(r.stdout) if r.stdout.strip().isdigit() else 0
            resp_headers = _parse_headers(hfile)
            body = None if out else (bfile.read_bytes() if bfile.exists() else b"")
            text = "" if out else body.decode("utf-8", "replace")
            return Result(r.rc, text, r.stderr, r.cmd, status=status, headers=resp_headers, body=body,
                          http_version=_http_version(hfile))

    def make_bucket(self, bucket):
        return _http_ok(self.request("PUT", f"/{bucket}"))

    def put_object(self, bucket, key, path):
        return _http_ok(self.request("PUT", f"/{bucket}/{quote_key(key)}", data=Path(path)))

    def get_object(self, bucket, key, path):
        return _http_ok(self.request("GET", f"/{bucket}/{quote_key(key)}", out=path))

    def list_keys(self, bucket):
        r = _http_ok(self.request("GET", f"/{bucket}", query={"list-type": "2"}))
        r.keys = []
        if r.rc == 0:
            r.keys = [e.text for e in ET.fromstring(r.body).iter(S3_NS + "Key")]
        return r

    def delete_object(self, bucket, key):
        return _http_ok(self.request("DELETE", f"/{bucket}/{quote_key(key)}"))

    def delete_bucket(self, bucket):
        return _http_ok(self.request("DELETE", f"/{bucket}"))


def _http_ok(r):
    """A curl Result with an HTTP error status turned into rc 22 (as curl --fail would)."""
    if r.rc == 0 and not 200 <= r.status < 300:
        return Result(22, r.stdout, r.stderr + f"\nHTTP status {r.status}", r.cmd,
                      **{k: v for k, v in r.__dict__.items() if k != "cmd"})
    return r


def _sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h


def _http_version(path):
    """"1.1", "2", ... from the status line of the last response in a curl -D file."""
    try:
        lines = Path(path).read_text(errors="replace").replace("\r\n", "\n").split("\n")
    except OSError:
        return None
    status = [line for line in lines if line.startswith("HTTP/")]
    return status[-1].split()[0][len("HTTP/"):] if status else None


def _parse_headers(path):
    """Headers of the last response in a curl -D file (after any 100 Continue)."""
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return {}
    blocks = [b for b in text.replace("\r\n", "\n").split("\n\n") if b.strip()]
    headers = {}
    for line in (blocks[-1].splitlines()[1:] if blocks else []):
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    return headers


# ---------------------------------------------------------------------------------------

CLIENT_NAMES = ("awscli-v1", "awscli-v2", "boto3-modern", "boto3-debian", "boto3-debian-driver",
                "s3cmd", "rclone", "curl")


def make_client(name, endpoint, **kw):
    """The wrapper for one of CLIENT_NAMES."""
    if name == "awscli-v1":
        return AwsCli(endpoint, version=1, **kw)
    if name == "awscli-v2":
        return AwsCli(endpoint, version=2, **kw)
    if name == "boto3-modern":
        return Boto3(endpoint, python="modern", **kw)
    if name == "boto3-debian-driver":
        return Boto3(endpoint, python="debian", **kw)
    if name == "boto3-debian":
        return Boto3InProcess(endpoint, **kw)
    if name == "s3cmd":
        return S3cmd(endpoint, **kw)
    if name == "rclone":
        return Rclone(endpoint, **kw)
    if name == "curl":
        return Curl(endpoint, **kw)
    raise ValueError(f"unknown client {name!r}; one of {', '.join(CLIENT_NAMES)}")


if __name__ == "__main__":
    for k, v in inventory().items():
        print(f"{k:14} {v}")
    sys.exit(0)
